"""Holding real traffic: validation that covers inference, per-request isolation, readiness
that heals, the watchdog, admission control and deadlines (with the scripted engine, which
produces the faults and delays a real model cannot produce on demand)."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest

pytestmark = pytest.mark.anyio

POISON_ATTRIBUTES = [
    {"year": math.nan},
    {"year": math.inf},
    {"year": "9" * 5000},
    {"year": "²"},
    {"year": 10**30},
    {"director": "\ud800"},
    {"genres": ["Comedy", "\ud800"]},
    {"rating": math.nan},
    {"rating": -math.inf},
    {"rating": 1e300},
    {"tags": ["x"] * 500},
]


def poison(example: dict[str, Any], attributes: dict[str, Any]) -> dict[str, Any]:
    return example | {
        "recommended_item": {"title": "Heat", "attributes": attributes},
    }


async def sample(client: Any, name: str, **labels: str) -> float:
    text = (await client.get("/metrics")).text
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def until(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("attributes", POISON_ATTRIBUTES)
async def test_values_inference_cannot_use_are_422_naming_the_field(
    serve_app: Any, make_engine: Any, example: dict[str, Any], attributes: dict[str, Any]
) -> None:
    engine = make_engine()
    async with serve_app(engine) as (_, client):
        # httpx cannot send NaN or a lone surrogate as JSON: write the body by hand, as a
        # careless client's serializer does.
        body = _json(poison(example, attributes))
        response = await client.post(
            "/v1/explanations", content=body, headers={"content-type": "application/json"}
        )
        ready = await client.get("/readyz")
    assert response.status_code == 422, response.text
    key = next(iter(attributes))
    assert response.json()["error"]["param"].startswith(f"recommended_item.attributes.{key}")
    assert ready.status_code == 200
    assert engine.batches == []  # never reached inference


def _json(value: Any) -> bytes:
    import json

    # allow_nan keeps NaN/Infinity as Python's json writes them; surrogates become \\ud800.
    return json.dumps(value, allow_nan=True).encode()


async def test_a_request_failing_in_its_own_stages_fails_alone_among_batch_mates(
    serve_app: Any, make_engine: Any, example: dict[str, Any]
) -> None:
    engine = make_engine(fail_prepare_users=["bad-prep"], fail_finish_users=["bad-finish"])
    async with serve_app(engine, max_wait_ms=50.0) as (_, client):
        before = await sample(client, "prism_batch_size_count")
        users = ["bad-prep", "bad-finish", *(f"good-{k}" for k in range(6))]
        responses = await asyncio.gather(
            *(client.post("/v1/explanations", json=example | {"user_id": u}) for u in users)
        )
        after = await sample(client, "prism_batch_size_count")
        ready = await client.get("/readyz")
    by_user = dict(zip(users, responses, strict=True))
    assert by_user["bad-prep"].status_code == 500
    assert by_user["bad-finish"].status_code == 500
    assert by_user["bad-finish"].json()["error"]["type"] == "internal_error"
    assert all(by_user[f"good-{k}"].status_code == 200 for k in range(6))
    # The finish-poisoned request really shared a batch with good ones.
    shared = [b for b in engine.batches if any(j.user_id == "bad-finish" for j in b)]
    assert shared and len(shared[0]) > 1
    assert after - before < len(users) - 1  # fewer batches than requests: they were batched
    assert ready.status_code == 200  # request-level errors never count against readiness


async def test_a_slate_with_a_poisoned_entry_explains_the_rest(
    serve_app: Any, make_engine: Any, example: dict[str, Any]
) -> None:
    slate = [example, poison(example, {"year": math.nan}), example | {"user_id": "7"}]
    async with serve_app(make_engine()) as (_, client):
        response = await client.post(
            "/v1/explanations/batch",
            content=_json({"requests": slate}),
            headers={"content-type": "application/json"},
        )
    results = response.json()["results"]
    assert response.status_code == 200
    assert results[0]["explanation"] and results[2]["explanation"]
    assert results[1]["error"]["param"] == "recommended_item.attributes.year"


async def test_readiness_returns_by_itself_after_the_runtime_recovers(
    serve_app: Any, make_engine: Any, example: dict[str, Any]
) -> None:
    engine = make_engine(fail_batches=[1, 2, 3, 4])  # three requests, then the first probe
    async with serve_app(engine) as (_, client):
        for _ in range(3):
            assert (await client.post("/v1/explanations", json=example)).status_code == 500
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200  # not (yet) a restart case

        async def ready_again() -> bool:
            return (await client.get("/readyz")).status_code == 200

        # No request comes (the orchestrator sends none to an unready pod): the service
        # probes itself, the first probe fails (batch 4), a later one succeeds.
        await until(ready_again)
        probes_ok = await sample(client, "prism_runtime_probes_total", result="success")
        probes_failed = await sample(client, "prism_runtime_probes_total", result="failure")
    assert probes_ok == 1 and probes_failed == 1


async def test_a_hung_inference_call_trips_the_watchdog(
    serve_app: Any, make_engine: Any, example: dict[str, Any]
) -> None:
    engine = make_engine()
    async with serve_app(engine, inference_watchdog_s=0.2) as (_, client):
        engine.gate.clear()
        stuck = asyncio.ensure_future(client.post("/v1/explanations", json=example))

        async def dead() -> bool:
            return (await client.get("/healthz")).status_code == 503

        await until(dead)
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
        engine.gate.set()
        await stuck
        after = await client.get("/healthz")
    assert "inference call has run" in health.json()["error"]["message"]
    assert health.headers["retry-after"] == "1"
    assert ready.status_code == 503 and after.status_code == 200


async def test_expired_requests_are_dropped_unrun_and_counted(
    serve_app: Any, make_engine: Any, example: dict[str, Any]
) -> None:
    engine = make_engine()
    async with serve_app(engine, max_queue_wait_ms=60_000) as (_, client):
        engine.gate.clear()
        first = asyncio.ensure_future(client.post("/v1/explanations", json=example))
        await until(lambda: _true(len(engine.batches) == 1))
        late = await client.post(
            "/v1/explanations",
            json=example | {"user_id": "expires"},
            headers={"X-Request-Timeout-Ms": "100"},
        )
        engine.gate.set()
        await first
        await client.post("/v1/explanations", json=example | {"user_id": "next"})
        expired = await sample(client, "prism_expired_requests_total")
    assert late.status_code == 504
    assert [j.user_id for b in engine.batches for j in b] == ["4217", "next"]
    assert expired == 1


async def _true(value: bool) -> bool:
    return value


async def test_the_client_deadline_header_is_validated_and_bounded(
    serve_app: Any, make_engine: Any, example: dict[str, Any]
) -> None:
    async with serve_app(make_engine(), request_timeout_ms=5_000) as (_, client):
        bad = await client.post(
            "/v1/explanations", json=example, headers={"X-Request-Timeout-Ms": "soon"}
        )
        negative = await client.post(
            "/v1/explanations", json=example, headers={"X-Request-Timeout-Ms": "-5"}
        )
        too_short = await client.post(
            "/v1/explanations", json=example, headers={"X-Request-Timeout-Ms": "10"}
        )
        fine = await client.post(
            "/v1/explanations", json=example, headers={"X-Request-Timeout-Ms": "999999"}
        )
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "X-Request-Timeout-Ms"
    assert negative.status_code == 422 and too_short.status_code == 422
    assert fine.status_code == 200  # longer than the server allows: cut to its maximum


async def test_overload_is_refused_before_the_body_is_read_with_retry_after(
    serve_app: Any, make_engine: Any, example: dict[str, Any]
) -> None:
    engine = make_engine()
    async with serve_app(engine, max_concurrent_requests=2) as (app, client):
        engine.gate.clear()
        held = [
            asyncio.ensure_future(client.post("/v1/explanations", json=example)) for _ in range(2)
        ]
        await until(lambda: _true(app.state.prism.in_flight == 2))
        # Not even JSON: a 503 (not a 422) proves the body was never parsed.
        refused = await client.post(
            "/v1/explanations", content=b"{not json", headers={"content-type": "application/json"}
        )
        health = await client.get("/healthz")
        engine.gate.set()
        await asyncio.gather(*held)
        rejected = await sample(client, "prism_rejected_requests_total", reason="concurrency")
    assert refused.status_code == 503
    assert refused.json()["error"]["type"] == "overloaded"
    assert int(refused.headers["retry-after"]) >= 1
    assert health.status_code == 200 and rejected == 1


async def _one_behind_a_queue(
    client: Any, engine: Any, batcher: Any, example: dict[str, Any], queued: int
) -> tuple[Any, list[Any]]:
    """With the engine held, `queued` requests in, and more than 100 ms before a new one
    could start: that one's response, then the queued ones' once the engine runs again."""
    engine.gate.clear()
    held = [
        asyncio.ensure_future(client.post("/v1/explanations", json=example)) for _ in range(queued)
    ]
    await until(lambda: _true(batcher.expected_start_s() > 0.1))
    refused = await client.post("/v1/explanations", json=example)
    engine.gate.set()
    return refused, list(await asyncio.gather(*held))


async def test_a_request_that_would_wait_too_long_is_refused_early(
    serve_app: Any, make_engine: Any, example: dict[str, Any]
) -> None:
    engine = make_engine(delay_s=0.05)
    async with serve_app(engine, max_queue_wait_ms=100, max_batch_size=1) as (app, client):
        batcher = app.state.prism.batcher
        # Teach it the service rate (50 ms a request), then queue more than 100 ms of work.
        for _ in range(4):
            assert (await client.post("/v1/explanations", json=example)).status_code == 200
        refused, served = await _one_behind_a_queue(client, engine, batcher, example, 3)
        reason = await sample(client, "prism_rejected_requests_total", reason="expected_wait")
    assert refused.status_code == 503 and refused.headers["retry-after"]
    assert "expected wait" in refused.json()["error"]["message"]
    assert all(r.status_code == 200 for r in served)  # what was admitted finished in time
    assert reason == 1


async def test_a_request_longer_than_the_queue_wait_budget_is_still_served_when_it_can_start(
    serve_app: Any, make_engine: Any, example: dict[str, Any]
) -> None:
    # One request takes 200 ms, the queue-wait budget is 100 ms: a request that can start at
    # once is admitted (its finish is held to the deadline, 10 s), one behind a busy batch
    # and a queue is not.
    engine = make_engine(delay_s=0.2)
    async with serve_app(engine, max_queue_wait_ms=100, max_batch_size=1) as (app, client):
        batcher = app.state.prism.batcher
        for _ in range(3):  # teach it the service rate
            assert (await client.post("/v1/explanations", json=example)).status_code == 200
        assert batcher.expected_wait_s() > 0.1 >= batcher.expected_start_s()
        assert (await client.post("/v1/explanations", json=example)).status_code == 200
        refused, served = await _one_behind_a_queue(client, engine, batcher, example, 2)
    assert refused.status_code == 503 and "to start" in refused.json()["error"]["message"]
    assert all(r.status_code == 200 for r in served)


async def test_503s_while_loading_carry_retry_after(
    serve_app: Any, make_engine: Any, example: dict[str, Any]
) -> None:
    import threading

    gate = threading.Event()
    async with serve_app(make_engine(warmup_gate=gate), ready=False) as (_, client):
        ready = await client.get("/readyz")
        explain = await client.post("/v1/explanations", json=example)
        gate.set()
    for response in (ready, explain):
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
    assert explain.json()["error"]["type"] == "not_ready"


async def test_integral_floats_are_integers_as_json_schema_says(
    serve_app: Any, make_engine: Any, example: dict[str, Any]
) -> None:
    engine = make_engine()
    async with serve_app(engine) as (_, client):
        ok = await client.post(
            "/v1/explanations",
            json=example | {"options": {"num_beams": 1.0, "max_new_tokens": 9.0}},
        )
        half = await client.post("/v1/explanations", json=example | {"options": {"num_beams": 1.5}})
        text = await client.post("/v1/explanations", json=example | {"options": {"num_beams": "1"}})
    assert ok.status_code == 200
    assert (engine.batches[0][0].num_beams, engine.batches[0][0].max_new_tokens) == (1, 9)
    assert half.status_code == 422 and text.status_code == 422


async def test_openapi_documents_every_error_status_and_the_slate_entries(
    serve_app: Any, make_engine: Any
) -> None:
    async with serve_app(make_engine()) as (_, client):
        spec = (await client.get("/openapi.json")).json()
    for path in ("/v1/explanations", "/v1/explanations/batch"):
        responses = spec["paths"][path]["post"]["responses"]
        assert {"400", "401", "413", "422", "503", "504"} <= set(responses)
        for status in ("400", "413", "422", "503", "504"):
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema["$ref"].endswith("/ErrorResponse")
        assert "Retry-After" in responses["503"]["headers"]
        parameters = {p["name"] for p in spec["paths"][path]["post"]["parameters"]}
        assert "X-Request-Timeout-Ms" in parameters
    slate = spec["components"]["schemas"]["BatchExplainRequest"]["properties"]["requests"]
    entry = slate["items"]["anyOf"][0]  # an ExplainRequest, inline or by reference
    assert entry.get("$ref", "").endswith("/ExplainRequest") or "user_id" in entry["properties"]
    assert "its own `error`" in slate["items"]["anyOf"][1]["description"]


async def test_an_answer_failing_the_verifier_gets_a_second_pass(
    serve_app: Any, make_engine: Any, example: dict[str, Any]
) -> None:
    engine = make_engine(retry_users=["picky"])
    async with serve_app(engine) as (_, client):
        response = await client.post("/v1/explanations", json=example | {"user_id": "picky"})
        served = await sample(client, "prism_second_pass_total", outcome="served")
        fallbacks = await sample(
            client, "prism_fallback_explanations_total", reason="unknown_sentence"
        )
    body = response.json()
    assert response.status_code == 200 and body["fallback"] is False
    assert body["explanation"].endswith("[picky]")
    assert body["usage"]["candidates"] == 5  # the greedy one, then a beam's 4 best
    assert [[j.user_id for j in b] for b in engine.batches] == [["picky"], ["picky"]]
    assert served == 1 and fallbacks == 0


async def test_a_second_pass_that_cannot_run_serves_the_checked_fallback(
    serve_app: Any, make_engine: Any, example: dict[str, Any]
) -> None:
    engine = make_engine(retry_users=["picky"], fail_batches=[2])
    async with serve_app(engine) as (_, client):
        response = await client.post("/v1/explanations", json=example | {"user_id": "picky"})
        skipped = await sample(client, "prism_second_pass_total", outcome="skipped")
        fallbacks = await sample(
            client, "prism_fallback_explanations_total", reason="unknown_sentence"
        )
    body = response.json()
    assert response.status_code == 200
    assert body["fallback"] is True and body["fallback_reason"] == "unknown_sentence"
    assert skipped == 1 and fallbacks == 1
