"""An OpenAI-compatible endpoint as the Oracle: vLLM, TGI, llama.cpp server or a hosted API.

The client is asynchronous (aiohttp on its own event loop thread): `stream` keeps up to
`concurrency` requests in flight and hands each answer back as soon as it arrives, so a slow
answer never holds the others back (no batch barrier). `explain` is the same in input order.

Two modes, as servers speak them: `chat` posts `messages` to `/v1/chat/completions` (vLLM,
hosted APIs; the server applies the model's chat template) and `completions` posts the raw
`prompt` to `/v1/completions` (TGI's OpenAI route for an encoder-decoder such as FLAN-T5,
llama.cpp, a base model).

Each request is retried on what is likely transient: timeouts, connection errors, 5xx and
408, with exponential backoff and jitter; a 429 waits the server's `Retry-After` when it
sends one. Any other 4xx is final: sending the same request again would fail the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import aiohttp

from training.teachers.base import TeacherFailure, TeacherRequest, TeacherResult

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 500, 502, 503, 504})
TeacherMode = Literal["chat", "completions"]
MODES: tuple[TeacherMode, ...] = ("chat", "completions")
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_CONCURRENCY = 64


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


@dataclass
class _Pump:
    """What the consumer thread shares with the event loop of one `stream` call."""

    out: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    ready: threading.Event = field(default_factory=threading.Event)
    loop: asyncio.AbstractEventLoop | None = None
    credits: asyncio.Semaphore | None = None
    task: asyncio.Task[None] | None = None

    def call(self, callback: Callable[[], object]) -> None:
        """Run `callback` on the loop, unless the loop has already finished."""
        if self.loop is None:
            return
        # RuntimeError "Event loop is closed": everything was answered already.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(callback)


_DONE = object()


class OpenAICompatibleTeacher:
    """`POST {base_url}/v1/chat/completions` (`mode="chat"`) or `/v1/completions`.

    `base_url` may or may not end in `/v1`. The key is `api_key` when given, else the value
    of the environment variable `api_key_env` (none: no Authorization header).
    `max_retries` counts retries after the first attempt; a Retry-After longer than
    `max_wait_s` is capped there. `extra_body` is merged into every request body (e.g.
    `{"stop": ["\\n\\n"]}`).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        concurrency: int = DEFAULT_CONCURRENCY,
        mode: TeacherMode = "chat",
        timeout_s: float = 60.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_wait_s: float = 60.0,
        max_tokens: int = 64,
        temperature: float = 0.0,
        extra_body: Mapping[str, Any] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if mode not in MODES:
            raise ValueError(f"unknown teacher mode {mode!r}: use one of {', '.join(MODES)}")
        root = base_url.rstrip("/").removesuffix("/v1")
        self.mode = mode
        self.url = root + ("/v1/chat/completions" if mode == "chat" else "/v1/completions")
        self.model = model
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.extra_body = dict(extra_body or {})
        self._sleep = sleep
        self._rng = random.Random()
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    def close(self) -> None:
        """Nothing to release: each `stream` owns its session and loop and closes them."""

    def __enter__(self) -> OpenAICompatibleTeacher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def explain(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        """One result per request, in the order given."""
        position = {id(r): k for k, r in enumerate(requests)}
        results: list[TeacherResult] = [TeacherFailure("not answered")] * len(requests)
        for request, result in self.stream(requests):
            results[position[id(request)]] = result
        return results

    def stream(
        self, requests: Iterable[TeacherRequest]
    ) -> Iterator[tuple[TeacherRequest, TeacherResult]]:
        """(request, result) pairs in the order the answers arrive.

        `requests` is read lazily, on the client's event-loop thread, as slots free up: at
        most `concurrency` requests are in flight and at most as many answers wait for the
        caller. Leaving the loop early cancels what is in flight.
        """
        pump = _Pump()
        worker = threading.Thread(
            target=self._run_loop, args=(iter(requests), pump), name="teacher-loop", daemon=True
        )
        worker.start()
        pump.ready.wait()
        try:
            while True:
                item = pump.out.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                if pump.credits is not None:
                    pump.call(pump.credits.release)
                yield item
        finally:
            if pump.task is not None:
                pump.call(pump.task.cancel)
            worker.join()

    def _run_loop(self, requests: Iterator[TeacherRequest], pump: _Pump) -> None:
        try:
            asyncio.run(self._main(requests, pump))
        except asyncio.CancelledError:
            pass  # the consumer left early
        except BaseException as exc:  # the input iterator raised: the consumer re-raises it
            pump.out.put(exc)
        finally:
            pump.ready.set()  # in case the loop never got to start
            pump.out.put(_DONE)

    async def _main(self, requests: Iterator[TeacherRequest], pump: _Pump) -> None:
        pump.loop = asyncio.get_running_loop()
        # Credits bound in-flight requests plus answers the caller has not taken yet.
        pump.credits = credits = asyncio.Semaphore(2 * self.concurrency)
        pump.task = asyncio.current_task()
        pump.ready.set()
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=self.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        exhausted = False

        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=self._headers
        ) as session:

            async def work() -> None:
                nonlocal exhausted
                while not exhausted:
                    await credits.acquire()
                    try:
                        request = next(requests)
                    except StopIteration:
                        exhausted = True
                        return
                    result = await self._complete(session, request.prompt)
                    pump.out.put((request, result))

            await asyncio.gather(*(work() for _ in range(self.concurrency)))

    def _body(self, prompt: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        if self.mode == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        return {**body, **self.extra_body}

    async def _complete(self, session: aiohttp.ClientSession, prompt: str) -> TeacherResult:
        body = self._body(prompt)
        last = "no attempt made"
        for attempt in range(self.max_retries + 1):
            try:
                return await self._attempt(session, body)
            except _RetryableError as exc:
                last = exc.reason
                if attempt == self.max_retries:
                    break
                wait = exc.wait_s if exc.wait_s is not None else self._backoff(attempt)
                await self._sleep(min(wait, self.max_wait_s))
            except _FinalError as exc:
                return TeacherFailure(exc.reason)
        return TeacherFailure(f"gave up after {self.max_retries + 1} attempts: {last}")

    def _backoff(self, attempt: int) -> float:
        jitter = self._rng.uniform(0.5, 1.5)  # only ever called on the loop thread
        return min(self.backoff_s * 2.0**attempt * jitter, self.max_wait_s)

    async def _attempt(self, session: aiohttp.ClientSession, body: dict[str, Any]) -> str:
        try:
            async with session.post(self.url, json=body) as response:
                status = response.status
                if status == 429:
                    wait = retry_after_seconds(response.headers.get("Retry-After"))
                    raise _RetryableError("rate limited (429)", wait)
                if status in RETRYABLE_STATUS or status >= 500:
                    raise _RetryableError(f"server error {status}")
                if status >= 400:
                    raise _FinalError(f"HTTP {status}: {(await response.text())[:200]}")
                try:
                    payload = await response.json(content_type=None)
                except ValueError as exc:
                    raise _FinalError(f"malformed completion response: {exc!r}") from exc
        except TimeoutError as exc:
            raise _RetryableError(f"timeout: {exc!r}") from exc
        except aiohttp.ClientError as exc:
            raise _RetryableError(f"connection error: {exc!r}") from exc
        return self._parse(payload)

    def _parse(self, payload: Any) -> str:
        try:
            choice = payload["choices"][0]
            text = choice["message"]["content"] if self.mode == "chat" else choice["text"]
        except (KeyError, IndexError, TypeError) as exc:
            raise _FinalError(f"malformed completion response: {exc!r}") from exc
        if not isinstance(text, str):
            raise _FinalError("completion text is not a string")
        return text.strip()
