"""A minimal HTTP/1.1 client on asyncio streams, for load generation on a shared machine.

No HTTP library in the hot path: a request is a few bytes written and a status line and
headers read back, so the client costs the cores it shares with the server as little as
possible. `Pool` keeps connections alive and retries once on a fresh one when the server has
closed a kept-alive connection, as any HTTP client does.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One keep-alive HTTP/1.1 connection: send a request, read one response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.open = True

    @classmethod
    async def connect(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer)

    async def request(self, method: str, path: str, body: bytes = b"", **headers: str) -> Reply:
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
        if body:
            head.append("Content-Type: application/json")
        head += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        fields: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            fields[name.strip().lower()] = value.strip()
        payload = await self.reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            self.close()
        return Reply(status, fields, payload)

    def close(self) -> None:
        self.open = False
        self.writer.close()


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    retry_after: Counter[bool] = field(default_factory=Counter)  # among 503s
    latencies_ok: list[float] = field(default_factory=list)
    connection_errors: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)


class Pool:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[Connection] = []

    async def call(self, body: bytes, tally: Tally) -> None:
        started = time.perf_counter()
        reused = self.idle.pop() if self.idle else None
        try:
            try:
                connection = reused or await Connection.connect(self.host, self.port)
                reply = await connection.request("POST", "/v1/explanations", body)
            except (OSError, ConnectionError, asyncio.IncompleteReadError):
                if reused is None:
                    raise
                # A kept-alive connection the server has since closed (its keep-alive
                # timeout): like any HTTP client, retry once on a fresh one.
                reused.close()
                connection = await Connection.connect(self.host, self.port)
                reply = await connection.request("POST", "/v1/explanations", body)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            tally.connection_errors += 1
            tally.error_kinds[type(exc).__name__] += 1
            return
        tally.statuses[reply.status] += 1
        if reply.status == 200:
            tally.latencies_ok.append(time.perf_counter() - started)
        if reply.status == 503:
            tally.retry_after["retry-after" in reply.headers] += 1
        if connection.open:
            self.idle.append(connection)

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()
