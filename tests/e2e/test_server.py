"""The real server process (uvicorn on 127.0.0.1) and the real model, called like a ranker would."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import unicodedata

import httpx
import pytest

from tests.conftest import start_server, stop_server

pytestmark = pytest.mark.e2e

ET = "E.T. the Extra-Terrestrial (1982)"
STAR_WARS = {
    "item_id": "260",
    "title": "Star Wars (1977)",
    "attributes": {"genres": ["Action", "Sci-Fi"]},
}
BTTF = {
    "item_id": "2011",
    "title": "Back to the Future (1985)",
    "attributes": {"genres": ["Comedy", "Sci-Fi"], "year": 1985},
}


def body(user_id="user-1", history=(ET, STAR_WARS), item=BTTF, **options):
    payload = {"user_id": user_id, "history": list(history), "recommended_item": item}
    if options:
        payload["options"] = options
    return payload


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.compile(rf"^{re.escape(name)}{re.escape(labels)}\s+([0-9.e+-]+)$", re.MULTILINE)
    match = pattern.search(text)
    return float(match.group(1)) if match else 0.0


def test_health_and_readiness(live_server):
    assert httpx.get(f"{live_server.base_url}/healthz").status_code == 200
    ready = httpx.get(f"{live_server.base_url}/readyz")
    assert ready.status_code == 200 and ready.json()["provider"] == "cpu"


def test_known_user_gets_an_explanation_with_usage_timing_and_server_timing(
    live_server, tiny_store
):
    r = httpx.post(
        f"{live_server.base_url}/v1/explanations", json=body(max_new_tokens=12), timeout=30
    )
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["user_known"] is True and data["explanation"]
    assert data["model"] == {"name": tiny_store.name, "version": tiny_store.version}
    assert 0 < data["usage"]["output_tokens"] <= 12 and data["usage"]["input_tokens"] > 10
    assert data["timing"]["total_ms"] >= data["timing"]["inference_ms"] > 0
    assert "inference;dur=" in r.headers["server-timing"]


def test_unknown_user_falls_back_to_the_zero_vector_and_is_counted(live_server):
    before = metric(
        httpx.get(f"{live_server.base_url}/metrics").text, "prism_unknown_user_requests_total"
    )
    r = httpx.post(
        f"{live_server.base_url}/v1/explanations",
        json=body(user_id=987654, max_new_tokens=8),
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["user_known"] is False and r.json()["explanation"]
    after = metric(
        httpx.get(f"{live_server.base_url}/metrics").text, "prism_unknown_user_requests_total"
    )
    assert after == before + 1


def test_slate_returns_results_in_order(live_server):
    slate = {
        "requests": [
            body(user_id="user-2", max_new_tokens=6),
            body(user_id="nobody", history=(), max_new_tokens=6, num_beams=2),
            body(num_beams=99),  # invalid: its own error, the others are still explained
        ]
    }
    r = httpx.post(f"{live_server.base_url}/v1/explanations/batch", json=slate, timeout=30)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["explanation"]["user_known"] for x in results[:2]] == [True, False]
    assert all(x["error"] is None for x in results[:2])
    assert results[2]["explanation"] is None
    assert results[2]["error"]["param"] == "options.num_beams"


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        (body(item={"title": "   "}), "recommended_item.title"),
        (body(history=[ET] * 51), "history"),
        (body(max_new_tokens=8, temperature=0.7), "options.temperature"),
        (body(num_beams=99), "options.num_beams"),
        (body(user_id=["a"]), "user_id"),
    ],
)
def test_bad_input_gets_422_naming_the_field(live_server, payload, param):
    r = httpx.post(f"{live_server.base_url}/v1/explanations", json=payload)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["param"] == param and error["type"] and error["message"]


def test_oversized_payload_gets_413_and_the_service_stays_ready(live_server):
    huge = body(history=[{"title": "x" * 250, "attributes": {"note": "y" * 250}}] * 50)
    huge["padding"] = "z" * 400_000
    r = httpx.post(f"{live_server.base_url}/v1/explanations", json=huge)
    assert r.status_code == 413 and r.json()["error"]["type"]
    assert httpx.get(f"{live_server.base_url}/readyz").status_code == 200


def test_concurrent_requests_are_batched(live_server):
    async def burst():
        async with httpx.AsyncClient(base_url=live_server.base_url, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/v1/explanations",
                        json=body(user_id=f"user-{k % 8 + 1}", max_new_tokens=24),
                    )
                    for k in range(24)
                )
            )

    before = httpx.get(f"{live_server.base_url}/metrics").text
    responses = asyncio.run(burst())
    assert all(r.status_code == 200 for r in responses)
    after = httpx.get(f"{live_server.base_url}/metrics").text
    batches = metric(after, "prism_batch_size_count") - metric(before, "prism_batch_size_count")
    requests = metric(after, "prism_batch_size_sum") - metric(before, "prism_batch_size_sum")
    second = sum(
        metric(after, "prism_second_pass_total", f'{{outcome="{o}"}}')
        - metric(before, "prism_second_pass_total", f'{{outcome="{o}"}}')
        for o in ("served", "fallback", "skipped")
    )
    # Every request ran once, plus once more where its first answer was refused (the random
    # tiny model's often are); some shared a batch.
    assert requests == 24 + second and batches < requests


def test_metrics_exposition_passes_promtool(live_server):
    text = httpx.get(f"{live_server.base_url}/metrics").text
    assert (
        "prism_http_request_duration_seconds_bucket" in text
        and "prism_inference_duration_seconds" in text
    )
    assert "user_id" not in text
    check = subprocess.run(
        ["promtool", "check", "metrics"], check=False, input=text, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.fixture
def constrained_server(tiny_store, tmp_path, request):
    server = start_server(tiny_store, tmp_path, env=request.param)
    yield server
    stop_server(server)


@pytest.mark.parametrize(
    "constrained_server",
    [{"PRISM_MAX_QUEUE": "1", "PRISM_MAX_BATCH_SIZE": "1", "PRISM_MAX_WAIT_MS": "0"}],
    indirect=True,
)
def test_full_queue_answers_503_with_retry_after(constrained_server):
    async def flood():
        async with httpx.AsyncClient(base_url=constrained_server.base_url, timeout=60) as client:
            return await asyncio.gather(
                *(client.post("/v1/explanations", json=body(max_new_tokens=96)) for _ in range(30))
            )

    responses = asyncio.run(flood())
    codes = [r.status_code for r in responses]
    assert 200 in codes and 503 in codes and set(codes) <= {200, 503}
    rejected = next(r for r in responses if r.status_code == 503)
    assert int(rejected.headers["retry-after"]) >= 1 and rejected.json()["error"]["type"]
    assert httpx.get(f"{constrained_server.base_url}/readyz").status_code == 200


@pytest.mark.parametrize("constrained_server", [{"PRISM_REQUEST_TIMEOUT_MS": "1"}], indirect=True)
def test_a_deadline_no_request_can_meet_is_refused_up_front(constrained_server):
    # Admission sees that the expected wait exceeds the deadline: 503 + Retry-After at once,
    # instead of computing an answer nobody will get (a 504 once running is a unit test).
    r = httpx.post(
        f"{constrained_server.base_url}/v1/explanations", json=body(max_new_tokens=96), timeout=30
    )
    assert r.status_code == 503 and r.json()["error"]["type"] == "overloaded"
    assert int(r.headers["retry-after"]) >= 1
    text = httpx.get(f"{constrained_server.base_url}/metrics").text
    assert metric(text, "prism_rejected_requests_total", '{reason="expected_wait"}') >= 1


def explain_ok(server, payload) -> dict:
    r = httpx.post(f"{server.base_url}/v1/explanations", json=payload, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


CLAIMS = {"shared_genre", "era", "similar_title", "history_reference", "novelty", "item_fact"}


def test_catalogue_titles_are_never_served_inverted_and_claims_carry_evidence(live_server):
    """Titles as real catalogues write them, through the real server: whatever the (random)
    tiny model writes, the served sentence names no catalogue form and every claim it makes
    comes with the request facts behind it."""
    history = [
        {"title": "Shawshank Redemption, The (1994)", "attributes": {"genres": ["Drama"]}},
        {"title": "Return of Martin Guerre, The (Retour de Martin Guerre, Le) (1982)",
         "attributes": {"genres": ["Drama"]}},
        "Seven Samurai (Shichinin no samurai) (1954)",
        {"title": "Godfather, The (1972)", "attributes": {"genres": ["Crime", "Drama"]}},
    ]  # fmt: skip
    item = {"title": "Misérables, Les (1998)", "attributes": {"genres": ["Drama"]}}
    for user in ("user-1", "user-2", "stranger", 7):
        result = explain_ok(live_server, body(user_id=user, history=history, item=item))
        text = result["explanation"]
        for raw in ("Shawshank Redemption, The", "Godfather, The", "Misérables, Les", "(Retour"):
            assert raw not in text, text
        assert 1 <= result["usage"]["candidates"] <= 9
        for entry in result["evidence"]:
            assert entry["claim"] in CLAIMS, entry
        if result["fallback"]:
            # The evidence sentence here: "Les Misérables shares drama with The Godfather..."
            assert result["fallback_reason"] and result["evidence"], result


def test_a_rewatch_is_no_evidence_for_itself_and_control_characters_never_reach_the_text(
    live_server,
):
    """The recommended film's own earlier watches (by id, or by title and year) leave the
    history it is explained by, and a NUL, a terminal escape or a zero-width space in a
    catalogue title never reaches the served sentence or its evidence."""
    history = [
        {"title": "Heat\x00 (1995)", "attributes": {"genres": ["Crime"]}},
        {"title": "Ali\x1b[31men (1979)", "attributes": {"genres": ["Horror", "Crime"]}},
        {"item_id": "9", "title": "Heat: Director's Cut", "attributes": {"genres": ["Crime"]}},
    ]
    item = {"item_id": "9", "title": "Heat\u200b (1995)", "attributes": {"genres": ["Crime"]}}
    for user in ("user-1", "stranger"):
        result = explain_ok(live_server, body(user_id=user, history=history, item=item))
        assert result["usage"]["history_used"] == 1
        served = json.dumps(result, ensure_ascii=False)
        assert not [ch for ch in served if unicodedata.category(ch) in ("Cc", "Cf")], served
        named = [
            title["title"] if isinstance(title, dict) else title
            for entry in result["evidence"]
            for key in ("history", "titles")
            for title in entry.get(key, [])
        ]
        assert "Heat" not in named and all(t == "Ali [31men" for t in named), named
        assert all(entry["claim"] != "novelty" for entry in result["evidence"]), result
