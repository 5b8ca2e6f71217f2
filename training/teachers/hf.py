"""A local Hugging Face model as the Oracle (FLAN-T5-XXL in the paper).

Seq2seq and causal models are both supported, chosen from the config's
`is_encoder_decoder`. A causal model is padded on the left, so every prompt in a batch ends
at the same position and the generated continuation is everything after it.

Prompts are never cut by the tokenizer (that would cut the recommended item and the task at
the end): the teacher's `prompt_budget` tells distillation how many tokens a prompt may
hold, and distillation shortens the history, oldest first, to fit. Within a call, prompts
are batched by length (longest first), so a batch pads to similar lengths.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
)

from training.prompt_budget import PromptBudget
from training.teachers.base import TeacherFailure, TeacherRequest, TeacherResult

logger = logging.getLogger(__name__)

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """bf16 on CUDA (fp16 on GPUs without bf16), fp32 on CPU, unless asked otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}: use auto or one of {sorted(_DTYPES)}") from None


class HFTeacher:
    """Greedy decoding by default; `generate_kwargs` (e.g. `num_beams`) go to `generate`.

    `max_input_tokens`: the prompt budget (None: the tokenizer's own limit when it states a
    sane one, else none). `dtype="auto"` is bf16 on a GPU that has it, fp16 on one that does
    not, fp32 on a CPU.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        device: str = "auto",
        dtype: str | torch.dtype = "auto",
        batch_size: int = 8,
        max_new_tokens: int = 64,
        max_input_tokens: int | None = None,
        generate_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        source = str(model)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.generate_kwargs = {"do_sample": False, "num_beams": 1, **(generate_kwargs or {})}
        config = AutoConfig.from_pretrained(source)
        self.is_encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        if not self.is_encoder_decoder:
            self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:  # GPT-style tokenizers ship without one
            self.tokenizer.pad_token = self.tokenizer.eos_token
        limit = getattr(self.tokenizer, "model_max_length", None)
        self.max_input_tokens = max_input_tokens or (
            limit if isinstance(limit, int) and limit < 1_000_000 else None
        )
        auto = AutoModelForSeq2SeqLM if self.is_encoder_decoder else AutoModelForCausalLM
        # transformers' stubs type `.to` on the class, not the instance: keep it untyped.
        loaded: Any = auto.from_pretrained(source, dtype=self.dtype)
        self.model = loaded.to(self.device).eval()
        self._name = f"hf:{source.rstrip('/')}"
        logger.info("teacher %s on %s (%s)", self._name, self.device, self.dtype)

    @property
    def name(self) -> str:
        return self._name

    @property
    def prompt_budget(self) -> PromptBudget | None:
        """Tokens a prompt may hold, counted by this teacher's own tokenizer."""
        if self.max_input_tokens is None:
            return None

        def count(text: str) -> int:
            return len(self.tokenizer(text)["input_ids"])

        return PromptBudget(count, self.max_input_tokens)

    def explain(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        # Longest first: a batch of similar lengths pads little, and an out-of-memory split
        # happens early, on the batches most likely to need it.
        order = sorted(range(len(requests)), key=lambda k: -len(requests[k].prompt))
        results: list[TeacherResult] = [TeacherFailure("not generated")] * len(requests)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            generated = self._generate_or_split([requests[k].prompt for k in chosen])
            for k, result in zip(chosen, generated, strict=True):
                results[k] = result
        return results

    def _generate_or_split(self, prompts: list[str]) -> list[TeacherResult]:
        try:
            return list(self._generate(prompts))
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if len(prompts) == 1:
                return [TeacherFailure("out of GPU memory on a single prompt")]
            # A batch of long prompts may not fit where half of it does.
            half = len(prompts) // 2
            return self._generate_or_split(prompts[:half]) + self._generate_or_split(prompts[half:])
        except Exception as exc:  # one broken batch must not end the whole run
            logger.warning("teacher batch of %d failed: %r", len(prompts), exc)
            return [TeacherFailure(f"generation failed: {exc!r}") for _ in prompts]

    def _generate(self, prompts: list[str]) -> list[str]:
        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.device)
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=encoded["input_ids"],
                attention_mask=encoded["attention_mask"],
                max_new_tokens=self.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                **self.generate_kwargs,
            )
        if not self.is_encoder_decoder:
            # Left padding: every prompt ends at the same column, the rest is generated.
            output = output[:, encoded["input_ids"].shape[1] :]
        texts = self.tokenizer.batch_decode(output, skip_special_tokens=True)
        return [str(t).strip() for t in texts]
