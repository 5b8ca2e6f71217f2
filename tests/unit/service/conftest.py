"""Test doubles and helpers for the service's unit tests.

The engines here exist for faults and delays a real engine cannot produce on demand (a
batch that raises, sleeps or returns the wrong number of outputs); the integration suite
runs the real ONNX engine.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import os
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from explain.evidence import compute_evidence
from explain.explainer import BatchGeneration, BatchTimings, Generation, Prepared
from explain.input_format import StudentInput
from explain.types import ExplainJob, Explanation, ModelInfo
from service.main import create_app
from service.settings import Settings

KNOWN_USERS = frozenset({"4217", "7"})
TIMINGS = BatchTimings(encode_s=0.002, decode_s=0.003, total_s=0.006)
INFO = ModelInfo(
    name="prism-test",
    version="2026-01-01.1",
    provider="cpu",
    input_format="prism-input/1",
    num_users=2,
    d_model=16,
)


def prepared_for(job: ExplainJob) -> Prepared:
    """A `Prepared` as the real explainer would make it, minus the real input format."""
    ids = [0, *range(5, 13 + 5 * len(job.history)), 2]  # 10 + 5 per history item
    student = StudentInput(
        text=f"item: {job.item.title}",
        input_ids=ids,
        slot_values={"<item>": job.item.title},
        evidence=compute_evidence(tuple(reversed(job.history)), job.item),
        history_used=len(job.history),
        history_given=len(job.history),
    )
    return Prepared(
        job=job,
        student=student,
        user_vector=np.zeros(4, dtype=np.float32),
        user_known=job.user_id in KNOWN_USERS,
        max_new_tokens=job.max_new_tokens or 16,
        num_beams=job.num_beams or 1,
        banned=(),
    )


class ScriptedEngine:
    """An `Engine` whose behaviour the test sets: a delay per batch, a gate that holds
    batches until opened (`gate.clear()` / `gate.set()`), batches that raise (by number or by
    user), a wrong number of outputs, requests whose own `prepare` or `finish` raises, a
    warm-up that waits for a signal. It records the jobs of every batch it was given."""

    def __init__(
        self,
        *,
        delay_s: float = 0.0,
        fail_batches: Sequence[int] = (),
        fail_users: Sequence[str] = (),
        drop_one_output: bool = False,
        warmup_gate: threading.Event | None = None,
        fail_prepare_users: Sequence[str] = (),
        fail_finish_users: Sequence[str] = (),
        retry_users: Sequence[str] = (),
    ) -> None:
        self.delay_s = delay_s
        self.fail_batches = set(fail_batches)  # 1-based batch numbers that raise
        self.fail_users = set(fail_users)  # a batch with any of these users raises
        self.drop_one_output = drop_one_output
        self.warmup_gate = warmup_gate
        self.fail_prepare_users = set(fail_prepare_users)
        self.fail_finish_users = set(fail_finish_users)
        self.retry_users = set(retry_users)  # their first answer fails the verifier
        self.gate = threading.Event()
        self.gate.set()
        self.batches: list[list[ExplainJob]] = []
        self.warmed = False
        self._lock = threading.Lock()

    @property
    def info(self) -> ModelInfo:
        return INFO

    @property
    def batch_sizes(self) -> list[int]:
        return [len(b) for b in self.batches]

    def warmup(self) -> None:
        if self.warmup_gate is not None:
            self.warmup_gate.wait(30)
        self.warmed = True

    def prepare(self, job: ExplainJob) -> Prepared:
        if job.user_id in self.fail_prepare_users:
            raise RuntimeError(f"scripted failure preparing {job.user_id}")
        return prepared_for(job)

    def generate(self, batch: Sequence[Prepared]) -> BatchGeneration:
        jobs = [p.job for p in batch]
        with self._lock:
            self.batches.append(jobs)
            number = len(self.batches)
        self.gate.wait(30)
        if self.delay_s:
            time.sleep(self.delay_s)
        if number in self.fail_batches or any(j.user_id in self.fail_users for j in jobs):
            raise RuntimeError(f"scripted failure of batch {number}")
        # Each request's tokens spell its user id, so tests can see who got which result.
        generations = [Generation([[0, *map(ord, p.job.user_id), 2]]) for p in batch]
        if self.drop_one_output:
            generations = generations[:-1]
        return BatchGeneration(generations, TIMINGS, [len(batch)])

    def finish(
        self, prepared: Prepared, generation: Generation, *, last: bool = False
    ) -> Explanation:
        job = prepared.job
        if job.user_id in self.fail_finish_users:
            raise RuntimeError(f"scripted failure finishing {job.user_id}")
        liked = job.history[-1].title if job.history else "what you watch"
        failed = job.user_id in self.retry_users and not prepared.final
        if failed and not last:
            return Explanation("", prepared.user_known, 1, 1, 0, retry=True,
                               fallback_reason="unknown_sentence")  # fmt: skip
        return Explanation(
            text=f"Because you liked {liked}, try {job.item.title}. [{job.user_id}]",
            user_known=prepared.user_known,
            input_tokens=len(prepared.student.input_ids),
            output_tokens=min(7, prepared.max_new_tokens),
            history_used=len(job.history),
            fallback_reason="unknown_sentence" if failed else None,
            candidates_tried=1 + prepared.num_return if prepared.final else 1,
        )

    def widen(self, prepared: Prepared) -> Prepared:
        return dataclasses.replace(prepared, num_beams=4, num_return=4, final=True)


EXAMPLE: dict[str, Any] = {
    "user_id": "4217",
    "history": [
        "E.T. the Extra-Terrestrial (1982)",
        {"item_id": "260", "title": "Star Wars (1977)", "attributes": {"genres": ["Sci-Fi"]}},
    ],
    "recommended_item": {
        "item_id": "2011",
        "title": "Back to the Future (1985)",
        "attributes": {"genres": ["Comedy", "Sci-Fi"], "year": 1985},
    },
}


@pytest.fixture(autouse=True)
def _no_prism_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings read PRISM_* variables; a developer's shell must not change the tests.
    for name in list(os.environ):
        if name.startswith("PRISM_"):
            monkeypatch.delenv(name)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def wait_ready(client: httpx.AsyncClient, timeout_s: float = 10.0) -> None:
    until = time.monotonic() + timeout_s
    while time.monotonic() < until:
        if (await client.get("/readyz")).status_code == 200:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the app did not become ready")


@asynccontextmanager
async def serve(
    engine: Any | None = None, *, ready: bool = True, **overrides: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """Run the app (lifespan included) with `engine` (a fresh `ScriptedEngine` if None) and
    yield it with a client on its ASGI transport."""
    app = create_app(Settings(**overrides), engine=engine or ScriptedEngine())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://prism") as client:
            if ready:
                await wait_ready(client)
            yield app, client


# The suite runs with --import-mode=importlib, so test modules reach these through fixtures.


@pytest.fixture
def make_engine() -> type[ScriptedEngine]:
    return ScriptedEngine


@pytest.fixture
def prepare() -> Any:
    return prepared_for


@pytest.fixture
def serve_app() -> Any:
    return serve


@pytest.fixture
def example() -> dict[str, Any]:
    return copy.deepcopy(EXAMPLE)


@pytest.fixture
def ready() -> Any:
    return wait_ready
