"""An OpenAI-compatible endpoint as the Oracle: vLLM, TGI, llama.cpp server or a hosted API.

Requests of a batch go out concurrently (a thread pool of `concurrency` workers sharing one
`httpx.Client`). Each request is retried on what is likely transient: timeouts, connection
errors, 5xx and 408, with exponential backoff and jitter; a 429 waits the server's
`Retry-After` when it sends one. Any other 4xx is final: sending the same request again
would fail the same way.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from training.teachers.base import TeacherFailure, TeacherRequest, TeacherResult

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 500, 502, 503, 504})


class _RetryableError(Exception):
    def __init__(self, reason: str, wait_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait_s = wait_s  # the server's Retry-After, when it gave one


class _FinalError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: delta-seconds ("2", leniently "0.5") or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class OpenAICompatibleTeacher:
    """`POST {base_url}/v1/chat/completions` (or `/v1/completions` with `use_chat=False`).

    `base_url` may or may not end in `/v1`. `max_retries` counts retries after the first
    attempt; a Retry-After longer than `max_wait_s` is capped there. `extra_body` is merged
    into every request body (e.g. `{"stop": ["\\n\\n"]}`).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 30.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_wait_s: float = 60.0,
        use_chat: bool = True,
        max_tokens: int = 64,
        temperature: float = 0.0,
        extra_body: Mapping[str, Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        root = base_url.rstrip("/").removesuffix("/v1")
        path = "/v1/chat/completions" if use_chat else "/v1/completions"
        self.url = root + path
        self.model = model
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self.use_chat = use_chat
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.extra_body = dict(extra_body or {})
        self._sleep = sleep
        self._rng = random.Random()
        self._rng_lock = threading.Lock()
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout_s), limits=limits
        )
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="teacher")

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    def __enter__(self) -> OpenAICompatibleTeacher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def explain(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        # map() keeps the input order whatever order the answers arrive in.
        return list(self._pool.map(lambda r: self._complete(r.prompt), requests))

    def _body(self, prompt: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        if self.use_chat:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        return {**body, **self.extra_body}

    def _complete(self, prompt: str) -> TeacherResult:
        body = self._body(prompt)
        last = "no attempt made"
        for attempt in range(self.max_retries + 1):
            try:
                return self._attempt(body)
            except _RetryableError as exc:
                last = exc.reason
                if attempt == self.max_retries:
                    break
                wait = exc.wait_s if exc.wait_s is not None else self._backoff(attempt)
                self._sleep(min(wait, self.max_wait_s))
            except _FinalError as exc:
                return TeacherFailure(exc.reason)
        return TeacherFailure(f"gave up after {self.max_retries + 1} attempts: {last}")

    def _backoff(self, attempt: int) -> float:
        with self._rng_lock:  # random.Random is not documented as thread-safe
            jitter = self._rng.uniform(0.5, 1.5)
        return min(self.backoff_s * 2.0**attempt * jitter, self.max_wait_s)

    def _attempt(self, body: dict[str, Any]) -> str:
        try:
            response = self._client.post(self.url, json=body)
        except httpx.TimeoutException as exc:
            raise _RetryableError(f"timeout: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise _RetryableError(f"connection error: {exc!r}") from exc
        status = response.status_code
        if status == 429:
            wait = retry_after_seconds(response.headers.get("retry-after"))
            raise _RetryableError("rate limited (429)", wait)
        if status in RETRYABLE_STATUS or status >= 500:
            raise _RetryableError(f"server error {status}")
        if status >= 400:
            raise _FinalError(f"HTTP {status}: {response.text[:200]}")
        return self._parse(response)

    def _parse(self, response: httpx.Response) -> str:
        try:
            choice = response.json()["choices"][0]
            text = choice["message"]["content"] if self.use_chat else choice["text"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _FinalError(f"malformed completion response: {exc!r}") from exc
        if not isinstance(text, str):
            raise _FinalError("completion text is not a string")
        return text.strip()
