from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from service.errors import (
    DeadlineExceededError,
    OverloadedError,
    UnauthorizedError,
    validation_error_body,
)

pytestmark = pytest.mark.anyio

ERROR_KEYS = {"type", "message", "param"}


def assert_error_body(body: dict[str, Any], kind: str) -> dict[str, Any]:
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_KEYS
    assert body["error"]["type"] == kind
    return dict(body["error"])


async def test_not_found_and_method_not_allowed(serve_app: Any) -> None:
    async with serve_app() as (_, client):
        missing = await client.get("/v1/nothing-here")
        wrong_method = await client.get("/v1/explanations")
    assert missing.status_code == 404
    assert_error_body(missing.json(), "not_found")
    assert wrong_method.status_code == 405
    assert_error_body(wrong_method.json(), "method_not_allowed")
    assert wrong_method.headers["allow"] == "POST"


async def test_unhandled_exception_is_a_bare_500_logged_once(
    serve_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve_app() as (app, client):

        async def explode() -> None:
            raise RuntimeError("secret internals: /etc/prism/key")

        app.add_api_route("/explode", explode)
        with caplog.at_level(logging.ERROR):
            response = await client.get("/explode", headers={"X-Request-ID": "req-500"})
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 500
    error = assert_error_body(response.json(), "internal_error")
    assert "secret" not in response.text and "Traceback" not in response.text
    assert error["message"] == "internal server error"
    assert response.headers["x-request-id"] == "req-500"
    logged = [r for r in caplog.records if r.exc_info]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert "secret internals" in str(logged[0].exc_info[1])
    assert 'prism_http_requests_total{route="/explode",status="500"} 1.0' in metrics


async def test_malformed_json_is_422(serve_app: Any) -> None:
    async with serve_app() as (_, client):
        response = await client.post(
            "/v1/explanations",
            content=b'{"user_id": ',
            headers={"content-type": "application/json"},
        )
        not_json = await client.post(
            "/v1/explanations", content=b"hello", headers={"content-type": "text/plain"}
        )
        empty = await client.post("/v1/explanations")
    assert response.status_code == 422
    assert assert_error_body(response.json(), "invalid_request")["message"].startswith(
        "the body is not valid JSON"
    )
    assert not_json.status_code == 422 and not_json.json()["error"]["type"] == "invalid_request"
    assert (
        empty.status_code == 422
        and empty.json()["error"]["message"] == "a JSON request body is required"
    )


async def test_oversized_body_by_content_length_is_413(
    serve_app: Any, example: dict[str, Any]
) -> None:
    async with serve_app(max_body_bytes=2048) as (_, client):
        big = example | {"history": ["A movie with a long title " * 5] * 20}
        response = await client.post("/v1/explanations", json=big)
        small = await client.post("/v1/explanations", json=example)
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 413
    assert_error_body(response.json(), "payload_too_large")
    assert small.status_code == 200
    assert 'prism_http_requests_total{route="/v1/explanations",status="413"} 1.0' in metrics


async def test_oversized_chunked_body_is_413(serve_app: Any, example: dict[str, Any]) -> None:
    import json

    async def chunks(payload: bytes, size: int) -> AsyncIterator[bytes]:
        for start in range(0, len(payload), size):
            yield payload[start : start + size]

    big = json.dumps(example | {"history": ["A movie with a long title " * 5] * 20}).encode()
    small = json.dumps(example).encode()
    async with serve_app(max_body_bytes=2048) as (_, client):
        headers = {"content-type": "application/json"}
        response = await client.post("/v1/explanations", content=chunks(big, 500), headers=headers)
        ok = await client.post("/v1/explanations", content=chunks(small, 100), headers=headers)
    assert "content-length" not in response.request.headers  # really streamed, no declared size
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413
    assert_error_body(response.json(), "payload_too_large")
    assert ok.status_code == 200


async def test_api_key(serve_app: Any, example: dict[str, Any]) -> None:
    async with serve_app(api_key="s3cret") as (_, client):
        none = await client.post("/v1/explanations", json=example)
        wrong = await client.post(
            "/v1/explanations", json=example, headers={"Authorization": "Bearer nope"}
        )
        bearer = await client.post(
            "/v1/explanations", json=example, headers={"Authorization": "Bearer s3cret"}
        )
        header = await client.get("/v1/models", headers={"X-API-Key": "s3cret"})
        models_without = await client.get("/v1/models")
        open_routes = [await client.get(p) for p in ("/healthz", "/readyz", "/metrics")]
    for response in (none, wrong, models_without):
        assert response.status_code == 401
        assert_error_body(response.json(), "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"
    assert bearer.status_code == 200 and header.status_code == 200
    assert [r.status_code for r in open_routes] == [200, 200, 200]


async def test_request_id_is_echoed_or_generated(serve_app: Any) -> None:
    async with serve_app() as (_, client):
        echoed = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
        generated = await client.get("/healthz")
        replaced = await client.get("/healthz", headers={"X-Request-ID": "has space"})
    assert echoed.headers["x-request-id"] == "abc-123"
    assert len(generated.headers["x-request-id"]) == 32
    assert replaced.headers["x-request-id"] != "has space"


def test_error_classes_carry_status_type_and_headers() -> None:
    overloaded = OverloadedError("full", retry_after_s=0.2)
    assert (overloaded.status_code, overloaded.error_type) == (503, "overloaded")
    assert overloaded.headers == {"Retry-After": "1"}
    assert OverloadedError("full", retry_after_s=3.2).headers["Retry-After"] == "4"
    assert DeadlineExceededError("late").status_code == 504
    assert UnauthorizedError().status_code == 401


def test_validation_error_body_paths() -> None:
    errors: list[dict[str, Any]] = [
        {"type": "string_too_short", "loc": ("body", "history", 3, "title"), "msg": "too short"},
        {"type": "missing", "loc": ("body", "user_id"), "msg": "Field required"},
    ]
    body = validation_error_body(errors)
    assert body.param == "history.3.title"
    assert body.message == "history.3.title: too short (and 1 more problem)"
    assert (
        validation_error_body([{"type": "json_invalid", "loc": ("body", 7), "msg": "x"}]).param
        is None
    )
