"""A local OpenAI-compatible server that answers every request after a fixed delay.

    python -m benchmarks.delay_server --port 8765 --delay-ms 100

It stands in for a teacher behind vLLM or TGI when what is measured is the client: answers
to both `/v1/chat/completions` and `/v1/completions`, one short sentence each, after
`--delay-ms` (the time a real server would spend generating). One asyncio process, so
hundreds of requests can wait at once.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web


def build_app(delay_s: float) -> web.Application:
    async def complete(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(delay_s)
        text = "A fine pick, given what you watched."
        if "messages" in body:
            choice: dict[str, object] = {"message": {"role": "assistant", "content": text}}
        else:
            choice = {"text": " " + text}
        return web.json_response({"id": "x", "object": "completion", "choices": [choice]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    app.router.add_post("/v1/completions", complete)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--delay-ms", type=float, default=100.0)
    args = parser.parse_args(argv)
    web.run_app(
        build_app(args.delay_ms / 1000),
        host="127.0.0.1",
        port=args.port,
        backlog=4096,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
