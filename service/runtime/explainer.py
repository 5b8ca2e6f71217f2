"""The ONNX explanation engine: request -> student input -> generate -> filled explanation."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from model_store.items import Item
from model_store.prompt import InputConfig, StudentInput, build_input
from model_store.slots import render
from model_store.tokenizer import PrismTokenizer
from model_store.users import UserTable
from service.runtime.engine import BatchOutput, BatchTimings, ExplainJob, Explanation, ModelInfo
from service.runtime.generator import Seq2SeqGenerator


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


class OnnxExplainer:
    """Implements `ExplanationEngine` on ONNX Runtime. Not thread-safe: one worker calls it."""

    def __init__(
        self,
        generator: Seq2SeqGenerator,
        tokenizer: PrismTokenizer,
        users: UserTable,
        input_config: InputConfig,
        info: ModelInfo,
        *,
        min_new_tokens: int = 0,
        max_new_tokens_cap: int | None = None,
    ) -> None:
        self._generator = generator
        self._tokenizer = tokenizer
        self._users = users
        self._config = input_config
        self._info = info
        self._min_new_tokens = min_new_tokens
        # The decoder has learnt positions for this many steps and no more.
        self._max_new_cap = max_new_tokens_cap or 1 << 30
        self._special = {tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id}

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def generator(self) -> Seq2SeqGenerator:
        return self._generator

    @property
    def input_config(self) -> InputConfig:
        return self._config

    def prepare(self, job: ExplainJob) -> StudentInput:
        return build_input(list(job.history), job.item, self._tokenizer, self._config)

    def explain_batch(self, jobs: Sequence[ExplainJob]) -> BatchOutput:
        start = time.perf_counter()
        built = [self.prepare(job) for job in jobs]
        vectors, known = self._users.lookup([job.user_id for job in jobs])
        prepared = time.perf_counter()
        groups: dict[int, list[int]] = defaultdict(list)
        for index, job in enumerate(jobs):
            groups[job.num_beams].append(index)
        results: list[Explanation | None] = [None] * len(jobs)
        encode_s = decode_s = 0.0
        for num_beams, members in groups.items():
            ids, mask = pad_batch([built[i].input_ids for i in members], self._tokenizer.pad_id)
            out = self._generator.generate(
                ids,
                mask,
                vectors[members],
                max_new_tokens=[min(jobs[i].max_new_tokens, self._max_new_cap) for i in members],
                num_beams=num_beams,
                banned=[self._tokenizer.banned_slot_ids(built[i].slot_values) for i in members],
                min_new_tokens=self._min_new_tokens,
            )
            encode_s += out.encode_s
            decode_s += out.decode_s
            for index, tokens in zip(members, out.tokens, strict=True):
                filled = render(self._tokenizer.decode(tokens), built[index].slot_values)
                results[index] = Explanation(
                    text=filled.text,
                    user_known=known[index],
                    input_tokens=len(built[index].input_ids),
                    output_tokens=sum(1 for t in tokens if t not in self._special),
                    history_used=built[index].history_used,
                    token_ids=tuple(tokens),
                    fallback_reason=filled.defect,
                )
        total = time.perf_counter() - start
        timings = BatchTimings(prepared - start, encode_s, decode_s, total)
        return BatchOutput([r for r in results if r is not None], timings)

    def warmup(self) -> None:
        """Run the graphs once per shape family so the first real request pays no setup cost."""
        history = (Item("Alien (1979)", None, {"genres": ["Horror", "Sci-Fi"]}),)
        item = Item("Aliens (1986)", None, {"genres": ["Action", "Sci-Fi"]})
        for beams in (1, 2):
            self.explain_batch([ExplainJob("__warmup__", history, item, 8, beams)] * 2)

    def close(self) -> None:
        """Sessions are released with the object; nothing is held outside it."""
