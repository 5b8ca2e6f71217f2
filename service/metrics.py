"""Prometheus metrics on the app's own registry (`service.telemetry` records each request).

One `Metrics` per app keeps tests isolated. Every update goes through `_never_raises`, so a
broken metric is logged and never fails a request. Labels stay low-cardinality: `route` is
the route template (never the raw path) and `user_id` is never a label.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.registry import Collector

from explain.explainer import BatchTimings
from explain.types import Explanation, ModelInfo
from explain.verifier import PROBLEMS

logger = logging.getLogger(__name__)

P = ParamSpec("P")

# 1 ms to 30 s: health checks at the bottom, long beam-search generations at the top.
LATENCY_BUCKETS = (
    *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75),
    *(1.0, 1.5, 2.5, 5.0, 10.0, 30.0),
)
QUEUE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
TOKEN_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256)
# prepare and finish are per request; encode, decode and total per static batch; step per
# decode step of the running batch (iteration-level batching).
SECOND_PASS_OUTCOMES = ("served", "fallback", "skipped")
STAGES = ("prepare", "encode", "decode", "step", "finish", "total")
REJECT_REASONS = ("queue_full", "not_ready", "concurrency", "expected_wait")
UNMATCHED_ROUTE = "unmatched"


def _never_raises(method: Callable[P, None]) -> Callable[P, None]:
    @functools.wraps(method)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(*args, **kwargs)
        except Exception:
            logger.warning("updating metrics in %s failed", method.__name__, exc_info=True)

    return guarded


class Metrics:
    """The DESIGN.md metric table, plus readiness, deadlines and rejections."""

    def __init__(self, *, gpu_collector: Collector | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "prism_http_requests_total", "HTTP requests served.", ["route", "status"], registry=r
        )
        self.http_duration = Histogram(
            "prism_http_request_duration_seconds",
            "HTTP request latency.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait_seconds = Histogram(
            "prism_queue_wait_seconds",
            "Time requests spent waiting in the batcher's queue.",
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.inference_duration = Histogram(
            "prism_inference_duration_seconds",
            "Inference time per stage: prepare and finish per request, encode, decode and "
            "total per static batch; with iteration-level batching encode per joining group, "
            "step per decode step and decode per request (its time in the running batch).",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "prism_batch_size",
            "Requests per engine batch (static), or per group joining the running decode.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.step_rows = Histogram(
            "prism_decode_step_rows",
            "Rows decoded together in each step of the running batch (iteration-level batching).",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.logit_reruns = Counter(
            "prism_decode_logit_reruns_total",
            "Greedy decoder steps run a second time for their logits: the graph's 16 best "
            "candidates could not settle a row (all banned, a tie at the edge, not finite).",
            registry=r,
        )
        self.generated_tokens = Histogram(
            "prism_generated_tokens",
            "Tokens generated per request.",
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.queue_depth_gauge = Gauge(
            "prism_queue_depth", "Requests waiting in the batcher's queue now.", registry=r
        )
        self.unknown_users = Counter(
            "prism_unknown_user_requests_total",
            "Requests for unknown users (zero-vector fallback).",
            registry=r,
        )
        self.deadlines = Counter(
            "prism_deadline_exceeded_total", "Requests that missed their deadline.", registry=r
        )
        self.fallbacks = Counter(
            "prism_fallback_explanations_total",
            "Explanations replaced by the evidence sentence because no candidate passed the "
            "verifier, by why the first candidate was refused.",
            ["reason"],
            registry=r,
        )
        for reason in PROBLEMS:
            self.fallbacks.labels(reason=reason)
        self.second_passes = Counter(
            "prism_second_pass_total",
            "Second decoding passes (beam n-best) for answers whose greedy candidate failed the "
            "verifier, by outcome: served (a candidate passed), fallback (none did), skipped "
            "(no time or capacity left: answered with the evidence sentence).",
            ["outcome"],
            registry=r,
        )
        for outcome in SECOND_PASS_OUTCOMES:
            self.second_passes.labels(outcome=outcome)
        self.rejections = Counter(
            "prism_rejected_requests_total",
            "Requests the batcher refused.",
            ["reason"],
            registry=r,
        )
        self.expired = Counter(
            "prism_expired_requests_total",
            "Queued requests dropped unrun because they could no longer finish by their deadline.",
            registry=r,
        )
        self.abandoned = Counter(
            "prism_abandoned_rows_total",
            "Rows removed from the running decode before they ended because their caller gave "
            "up (deadline or disconnect): not computed any further.",
            registry=r,
        )
        self.probes = Counter(
            "prism_runtime_probes_total",
            "Self-probes of a failing runtime, by result.",
            ["result"],
            registry=r,
        )
        self.swaps = Counter(
            "prism_model_swaps_total",
            "Hot swaps to a new model version, by result (a refused version keeps the old).",
            ["result"],
            registry=r,
        )
        for result in ("success", "failure"):
            self.probes.labels(result=result)
            self.swaps.labels(result=result)
        self.ready = Gauge(
            "prism_ready", "1 when the model is loaded, warm and healthy.", registry=r
        )
        self.model_info = Info("prism_model", "The model being served.", registry=r)
        for stage in STAGES:
            self.inference_duration.labels(stage=stage)
        for reason in REJECT_REASONS:
            self.rejections.labels(reason=reason)
        if gpu_collector is not None:
            r.register(gpu_collector)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    @_never_raises
    def track_readiness(self, probe: Callable[[], bool]) -> None:
        self.ready.set_function(lambda: 1.0 if probe() else 0.0)

    @_never_raises
    def set_model(self, info: ModelInfo) -> None:
        self.model_info.info(
            {"name": info.name, "version": info.version, "provider": info.provider}
        )

    @_never_raises
    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(route=route, status=str(status)).inc()
        self.http_duration.labels(route=route).observe(seconds)

    @_never_raises
    def explained(self, explanation: Explanation) -> None:
        self.generated_tokens.observe(explanation.output_tokens)
        if not explanation.user_known:
            self.unknown_users.inc()
        if explanation.fallback_reason is not None:
            self.fallbacks.labels(reason=explanation.fallback_reason).inc()

    # --- service.batching.BatchObserver ----------------------------------------------

    @_never_raises
    def queue_depth(self, depth: int) -> None:
        self.queue_depth_gauge.set(depth)

    @_never_raises
    def queue_wait(self, seconds: float) -> None:
        self.queue_wait_seconds.observe(seconds)

    @_never_raises
    def batch(self, size: int, timings: BatchTimings) -> None:
        self.batch_size.observe(size)
        stage = self.inference_duration
        stage.labels(stage="encode").observe(timings.encode_s)
        stage.labels(stage="decode").observe(timings.decode_s)
        stage.labels(stage="total").observe(timings.total_s)

    @_never_raises
    def joined(self, size: int, encode_s: float) -> None:
        self.batch_size.observe(size)
        self.inference_duration.labels(stage="encode").observe(encode_s)

    @_never_raises
    def step(self, rows: int, seconds: float) -> None:
        self.step_rows.observe(rows)
        self.inference_duration.labels(stage="step").observe(seconds)

    @_never_raises
    def reran(self, steps: int) -> None:
        self.logit_reruns.inc(steps)

    @_never_raises
    def rows_abandoned(self, rows: int) -> None:
        self.abandoned.inc(rows)

    @_never_raises
    def row_ended(self, seconds: float) -> None:
        self.inference_duration.labels(stage="decode").observe(seconds)

    @_never_raises
    def request_stage(self, stage: str, seconds: float) -> None:
        """A per-request stage (`prepare`, `finish`)."""
        self.inference_duration.labels(stage=stage).observe(seconds)

    @_never_raises
    def second_pass(self, outcome: str) -> None:
        self.second_passes.labels(outcome=outcome).inc()

    @_never_raises
    def deadline_exceeded(self) -> None:
        self.deadlines.inc()

    @_never_raises
    def rejected(self, reason: str) -> None:
        self.rejections.labels(reason=reason).inc()

    @_never_raises
    def expired_unrun(self) -> None:
        self.expired.inc()

    @_never_raises
    def probe(self, ok: bool) -> None:
        self.probes.labels(result="success" if ok else "failure").inc()

    @_never_raises
    def swapped(self, *, ok: bool) -> None:
        self.swaps.labels(result="success" if ok else "failure").inc()
