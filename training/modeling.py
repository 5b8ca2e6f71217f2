"""The Prism student: BART plus a learned per-user vector added to every encoder token embedding.

    ê_i = embed_tokens(x_i) + v_u        (embed_tokens already applies embed_scale)

The sum is taken before the positional embeddings and `layernorm_embedding`; the decoder is
untouched. Row 0 of the user table is the unknown user: zero, never trained (it is the
embedding's padding row, so it gets no gradient), so unknown users get stock BART.

BART itself is saved by `save_pretrained` (safetensors + config.json) under `model/`; the
user table goes to `users/` (see `explain.users`) and the tokenizer to `tokenizer/`, the
same layout the model store publishes and the service reads (`explain.artifacts`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import BartConfig, BartForConditionalGeneration

from explain.artifacts import META_FILE, MODEL_DIR, TOKENIZER_DIR, USERS_DIR
from explain.tokenizer import PrismTokenizer
from explain.users import IDS_FILE, UserTable, save_user_table


@dataclass
class PrismMeta:
    """What a model directory says about itself; becomes part of the manifest."""

    base_model: str
    input_format: dict[str, Any]
    generation: dict[str, Any]
    d_model: int
    num_users: int
    use_users: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, directory: Path) -> None:
        (directory / META_FILE).write_text(json.dumps(asdict(self), indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> PrismMeta:
        return cls(**json.loads((directory / META_FILE).read_text()))


def generation_ids(tokenizer: PrismTokenizer) -> dict[str, int]:
    """BART's decoding convention: start from EOS, then BOS is forced, stop at EOS."""
    return {
        "decoder_start_token_id": tokenizer.eos_id,
        "forced_bos_token_id": tokenizer.bos_id,
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": tokenizer.eos_id,
        "pad_token_id": tokenizer.pad_id,
    }


class UserAwareBart(nn.Module):
    def __init__(
        self, bart: BartForConditionalGeneration, num_users: int, *, use_users: bool = True
    ) -> None:
        super().__init__()
        self.bart = bart
        self.use_users = use_users
        d_model = int(bart.config.d_model or 0)
        self.user_embeddings = nn.Embedding(num_users + 1, d_model, padding_idx=0)
        nn.init.normal_(self.user_embeddings.weight, std=float(bart.config.init_std or 0.02))
        with torch.no_grad():
            self.user_embeddings.weight[0].zero_()
        if not use_users:  # the "Prism w/o User" ablation: the table exists but is never used
            self.user_embeddings.weight.requires_grad_(False)

    @property
    def config(self) -> BartConfig:
        return self.bart.config

    @property
    def num_users(self) -> int:
        return int(self.user_embeddings.num_embeddings) - 1

    def user_vectors(self, user_rows: torch.Tensor) -> torch.Tensor:
        vectors = self.user_embeddings(user_rows)
        return vectors if self.use_users else torch.zeros_like(vectors)

    def embed(self, input_ids: torch.Tensor, user_rows: torch.Tensor) -> torch.Tensor:
        """Encoder input embeddings with the user vector added to every token."""
        tokens: torch.Tensor = self.bart.model.encoder.embed_tokens(input_ids)
        return tokens + self.user_vectors(user_rows)[:, None, :]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        user_rows: torch.Tensor,
        labels: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
    ) -> Any:
        return self.bart(
            inputs_embeds=self.embed(input_ids, user_rows),
            attention_mask=attention_mask,
            labels=labels,
            decoder_input_ids=decoder_input_ids,
        )

    def save(
        self,
        directory: Path,
        *,
        user_rows: Mapping[str, int],
        tokenizer: PrismTokenizer,
        meta: PrismMeta,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.bart.save_pretrained(directory / MODEL_DIR)
        (directory / TOKENIZER_DIR).mkdir(exist_ok=True)
        tokenizer.backend.save(str(directory / TOKENIZER_DIR / "tokenizer.json"))
        vectors = self.user_embeddings.weight.detach().cpu().float().numpy().copy()
        if not self.use_users:
            vectors[:] = 0.0
        vectors[0] = 0.0
        save_user_table(directory / USERS_DIR, user_rows, vectors)
        meta.save(directory)

    @classmethod
    def load(cls, directory: Path, *, device: str | torch.device = "cpu") -> UserAwareBart:
        meta = PrismMeta.load(directory)
        bart = BartForConditionalGeneration.from_pretrained(directory / MODEL_DIR)
        table = UserTable.load(directory / USERS_DIR, mmap=False)
        model = cls(bart, table.num_users, use_users=meta.use_users)
        with torch.no_grad():
            model.user_embeddings.weight.copy_(
                torch.from_numpy(np.asarray(table.vectors, dtype=np.float32))
            )
        return model.to(device).eval()


def load_user_rows(directory: Path) -> dict[str, int]:
    raw = json.loads((directory / USERS_DIR / IDS_FILE).read_text())
    return {str(k): int(v) for k, v in raw["rows"].items()}
