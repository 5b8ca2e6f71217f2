from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.logs import JsonLineFormatter
from service.main import create_app
from service.settings import Settings
from service.telemetry import REQUEST_ID

pytestmark = pytest.mark.anyio

SERVER_TIMING = re.compile(r"^queue;dur=\d+\.\d+, inference;dur=\d+\.\d+, total;dur=\d+\.\d+$")


def histogram(text: str, name: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == f"{name}_bucket":
                values[s.labels["le"]] = s.value
            elif s.name in (f"{name}_count", f"{name}_sum"):
                values[s.name.rsplit("_", 1)[1]] = s.value
    return values


async def until(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_explain_returns_the_documented_shape(
    serve_app: Any, example: dict[str, Any]
) -> None:
    async with serve_app() as (_, client):
        response = await client.post("/v1/explanations", json=example | {"user_id": 4217})
    assert response.status_code == 200
    body = response.json()
    assert (
        body["explanation"]
        == "Because you liked Star Wars (1977), try Back to the Future (1985). [4217]"
    )
    assert body["user_known"] is True
    assert body["model"] == {"name": "prism-test", "version": "2026-01-01.1"}
    assert body["usage"] == {
        "input_tokens": 20,
        "output_tokens": 7,
        "history_used": 2,
        "candidates": 1,
    }
    assert body["evidence"] == [] and body["fallback"] is False
    assert set(body["timing"]) == {"queue_ms", "inference_ms", "total_ms"}
    assert body["timing"]["total_ms"] >= body["timing"]["inference_ms"]
    assert SERVER_TIMING.match(response.headers["server-timing"])
    assert response.headers["x-request-id"]


async def test_concurrent_requests_are_batched(
    serve_app: Any, make_engine: Any, example: dict[str, Any]
) -> None:
    engine = make_engine(delay_s=0.02)
    async with serve_app(engine, max_batch_size=16, max_wait_ms=10) as (_, client):
        requests = [
            client.post("/v1/explanations", json=example | {"user_id": f"u{i}"}) for i in range(48)
        ]
        responses = await asyncio.gather(*requests)
        text = (await client.get("/metrics")).text
    assert [r.status_code for r in responses] == [200] * 48
    # Every response is its own request's answer.
    assert [r.json()["explanation"].endswith(f"[u{i}]") for i, r in enumerate(responses)] == [
        True
    ] * 48
    batches = histogram(text, "prism_batch_size")
    assert batches["count"] < 48 and batches["sum"] == 48
    assert batches["1.0"] < batches["count"]  # some batch held more than one request
    assert max(engine.batch_sizes) > 1


async def test_slate_keeps_order_and_per_item_errors(
    serve_app: Any, make_engine: Any, example: dict[str, Any]
) -> None:
    engine = make_engine(fail_users=["boom"])
    slate = [
        example | {"user_id": "a"},
        example | {"user_id": "boom", "options": {"num_beams": 2}},  # its own engine call
        example | {"user_id": "c"},
    ]
    async with serve_app(engine) as (_, client):
        response = await client.post("/v1/explanations/batch", json={"requests": slate})
        too_many = await client.post("/v1/explanations/batch", json={"requests": [example] * 33})
        empty = await client.post("/v1/explanations/batch", json={"requests": []})
        bad_items = await client.post(
            "/v1/explanations/batch",
            json={"requests": [example, example | {"history": [""]}, "not an object", example]},
        )
        not_a_list = await client.post("/v1/explanations/batch", json={"requests": example})
    assert response.status_code == 200
    results = response.json()["results"]
    assert results[0]["explanation"]["explanation"].endswith("[a]") and results[0]["error"] is None
    assert results[1]["explanation"] is None
    assert results[1]["error"]["type"] == "batch_failed"
    assert results[2]["explanation"]["explanation"].endswith("[c]")
    # a and c together, boom alone; then the two valid entries of the slate with bad ones.
    assert sorted(engine.batch_sizes) == [1, 2, 2]
    assert SERVER_TIMING.match(response.headers["server-timing"])
    assert too_many.status_code == 422 and too_many.json()["error"]["param"] == "requests"
    assert empty.status_code == 422 and empty.json()["error"]["param"] == "requests"
    assert not_a_list.status_code == 422 and not_a_list.json()["error"]["param"] == "requests"
    # Invalid entries get their own errors; the valid ones are still explained.
    assert bad_items.status_code == 200
    items = bad_items.json()["results"]
    assert [r["error"] is None for r in items] == [True, False, False, True]
    assert items[1]["error"]["type"] == "invalid_request"
    assert items[1]["error"]["param"] == "history.0.title"
    assert items[2]["error"]["type"] == "invalid_request" and items[2]["explanation"] is None
    assert items[3]["explanation"]["explanation"]


async def test_full_queue_is_503_with_retry_after(
    serve_app: Any, make_engine: Any, example: dict[str, Any]
) -> None:
    engine = make_engine()
    engine.gate.clear()
    async with serve_app(engine, max_queue=2, max_batch_size=1) as (_, client):
        running = asyncio.ensure_future(client.post("/v1/explanations", json=example))
        await until(lambda: len(engine.batches) == 1)
        waiting = [
            asyncio.ensure_future(client.post("/v1/explanations", json=example)) for _ in range(2)
        ]
        await until(lambda: engine.batches and _depth(client) == 2)
        rejected = await client.post("/v1/explanations", json=example)
        metrics = (await client.get("/metrics")).text
        engine.gate.set()
        done = await asyncio.gather(running, *waiting)
    assert rejected.status_code == 503
    assert rejected.json()["error"]["type"] == "overloaded"
    assert int(rejected.headers["retry-after"]) >= 1
    assert [r.status_code for r in done] == [200, 200, 200]
    assert 'prism_rejected_requests_total{reason="queue_full"} 1.0' in metrics


def _depth(client: httpx.AsyncClient) -> int:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    batcher = transport.app.state.prism.batcher  # type: ignore[attr-defined]
    return int(batcher.depth)


async def test_deadline_is_504(serve_app: Any, make_engine: Any, example: dict[str, Any]) -> None:
    engine = make_engine()
    engine.gate.clear()
    async with serve_app(engine, request_timeout_ms=100) as (_, client):
        started = time.monotonic()
        response = await client.post("/v1/explanations", json=example)
        elapsed = time.monotonic() - started
        engine.gate.set()
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "deadline_exceeded"
    assert elapsed < 2.0
    assert "prism_deadline_exceeded_total 1.0" in metrics


async def test_failing_batch_is_500_and_the_next_one_succeeds(
    serve_app: Any, make_engine: Any, example: dict[str, Any]
) -> None:
    engine = make_engine(fail_batches=[1])
    async with serve_app(engine) as (_, client):
        failed = await client.post("/v1/explanations", json=example)
        succeeded = await client.post("/v1/explanations", json=example)
    assert failed.status_code == 500
    assert failed.json()["error"] == {
        "type": "batch_failed",
        "message": "the batch this request ran in failed",
        "param": None,
    }
    assert "scripted failure" not in failed.text
    assert succeeded.status_code == 200


async def test_readyz_waits_for_warmup(
    serve_app: Any, make_engine: Any, example: dict[str, Any]
) -> None:
    gate = threading.Event()
    engine = make_engine(warmup_gate=gate)
    async with serve_app(engine, ready=False) as (_, client):
        health = await client.get("/healthz")
        before = await client.get("/readyz")
        explain = await client.post("/v1/explanations", json=example)
        models = await client.get("/v1/models")
        metrics_before = (await client.get("/metrics")).text
        gate.set()
        await until(lambda: engine.warmed)
        for _ in range(200):
            after = await client.get("/readyz")
            if after.status_code == 200:
                break
            await asyncio.sleep(0.01)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert before.status_code == 503 and before.json()["error"]["type"] == "not_ready"
    assert before.json()["error"]["message"] == "the model is loading"
    assert explain.status_code == 503 and models.status_code == 503
    assert "prism_ready 0.0" in metrics_before
    assert after.status_code == 200
    assert after.json() == {
        "status": "ready",
        "model": {"name": "prism-test", "version": "2026-01-01.1"},
        "provider": "cpu",
    }


async def test_readyz_turns_503_when_the_runtime_keeps_failing(
    serve_app: Any, make_engine: Any, example: dict[str, Any]
) -> None:
    engine = make_engine(fail_users=["bad"])
    async with serve_app(engine) as (_, client):
        for _ in range(3):
            assert (
                await client.post("/v1/explanations", json=example | {"user_id": "bad"})
            ).status_code == 500
        unready = await client.get("/readyz")
        recovered = await client.post("/v1/explanations", json=example)
        ready = await client.get("/readyz")
    assert unready.status_code == 503 and "runtime is failing" in unready.json()["error"]["message"]
    assert recovered.status_code == 200 and ready.status_code == 200


async def test_with_exit_off_a_failed_load_keeps_liveness_and_stays_unready(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The default exits the process (tested on a real server in tests/e2e); off, it waits.
    settings = Settings(
        store_dir=tmp_path / "empty-store", model_name="prism-movies", exit_on_load_failure=False
    )
    app = create_app(settings)
    with caplog.at_level(logging.ERROR, logger="service.lifespan"):
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://prism") as client:
                await until(lambda: app.state.prism.phase == "failed")
                health = await client.get("/healthz")
                ready = await client.get("/readyz")
    assert health.status_code == 200
    assert ready.status_code == 503
    assert "failed to load" in ready.json()["error"]["message"]
    assert any(
        "cannot load model prism-movies@production" in r.getMessage() for r in caplog.records
    )


async def test_event_loop_stays_responsive_during_inference(
    serve_app: Any, make_engine: Any, example: dict[str, Any]
) -> None:
    engine = make_engine()
    async with serve_app(engine) as (_, client):
        engine.gate.clear()
        busy = asyncio.ensure_future(client.post("/v1/explanations", json=example))
        await until(lambda: len(engine.batches) == 1)
        started = time.monotonic()
        health = await client.get("/healthz")
        elapsed = time.monotonic() - started
        engine.gate.set()
        assert (await busy).status_code == 200
    assert health.status_code == 200 and elapsed < 0.5


async def test_models_lists_the_served_model(serve_app: Any) -> None:
    async with serve_app() as (_, client):
        response = await client.get("/v1/models")
        docs = await client.get("/docs")
        openapi = (await client.get("/openapi.json")).json()
    assert response.json()["models"] == [
        {
            "name": "prism-test",
            "version": "2026-01-01.1",
            "provider": "cpu",
            "variant": "fp32",
            "variants": {},
            "lanes": 1,
            "input_format": "prism-input/1",
            "num_users": 2,
            "d_model": 16,
            "created": None,
            "metrics": {},
        }
    ]
    assert docs.status_code == 200
    assert {
        "/v1/explanations",
        "/v1/explanations/batch",
        "/v1/models",
        "/healthz",
        "/readyz",
    } <= set(openapi["paths"])
    body = openapi["paths"]["/v1/explanations"]["post"]["requestBody"]["content"][
        "application/json"
    ]
    assert body["schema"]["$ref"].endswith("/ExplainRequest")


async def test_injected_engine_is_warmed_up(serve_app: Any, make_engine: Any) -> None:
    engine = make_engine()
    async with serve_app(engine):
        pass
    assert engine.warmed


def test_json_log_lines_carry_the_request_id_and_extras() -> None:
    record = logging.makeLogRecord(
        {
            "name": "service.x",
            "levelname": "INFO",
            "msg": "model %s",
            "args": ("ready",),
            "provider": "cpu",
        }
    )
    token = REQUEST_ID.set("req-1")
    try:
        line = JsonLineFormatter().format(record)
    finally:
        REQUEST_ID.reset(token)
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["msg"] == "model ready" and entry["level"] == "info"
    assert entry["request_id"] == "req-1" and entry["provider"] == "cpu"


def test_importing_the_service_leaves_torch_out() -> None:
    code = (
        "import service.main, sys; "
        "heavy = [m for m in ('torch', 'transformers', 'training') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    repo = Path(__file__).resolve().parents[3]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
