"""Hot swap under load: swaps and a refused corrupt version, while clients keep calling.

    python -m benchmarks.hot_swap --store store --name prism-movies [--swaps 3] [--seconds 4]

Works on a copy of the store (the original is never touched). It starts the real server
(uvicorn, as `make run` does), keeps `--clients` clients sending explanation requests, and
meanwhile: republishes the production version under new version names, promotes each one and
calls `POST /admin/reload` (`--swaps` swaps, the last one a rollback to the original version
with `prism-store promote`); then promotes a version whose files are tampered with after
publishing, whose reload must be refused while the old version keeps serving. It prints a
table and, last, one line:

    hotswap: 1234 requests, 0 failed; 3 swaps, 1 refused; versions served 2026-12-02.1, ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from benchmarks.server import start_server, wait_ready
from model_store.store import ModelStore
from model_store.version import ModelVersion

STORE_OWNED = ("schema_version", "name", "version", "created", "files")


def republish(store: ModelStore, name: str, ref: str) -> ModelVersion:
    """The version `ref` names, published again under a new version name (same files)."""
    source = store.resolve(name, ref)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "version"
        shutil.copytree(source.path, copy)
        (copy / "manifest.json").unlink()
        fields = {k: v for k, v in source.manifest.to_dict().items() if k not in STORE_OWNED}
        return store.publish(name, copy, manifest_fields=fields)


def tamper(version: ModelVersion) -> str:
    """Change one byte of the version's largest file; returns its path in the version."""
    relpath = max(version.manifest.files, key=lambda p: (version.path / p).stat().st_size)
    path = version.path / relpath
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return relpath


def request_body(k: int) -> dict[str, Any]:
    return {
        "user_id": f"s{k % 50 + 1:04d}" if k % 2 else f"swap-client-{k}",
        "history": ["Alien (1979)", {"title": "Heat (1995)", "attributes": {"genres": ["Crime"]}}],
        "recommended_item": {"title": "Aliens (1986)", "attributes": {"genres": ["Action"]}},
        "options": {"max_new_tokens": 16},
    }


async def clients(url: str, count: int, stop: asyncio.Event, seen: Counter[str]) -> Counter[int]:
    statuses: Counter[int] = Counter()

    async def one(k: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            n = 0
            while not stop.is_set():
                try:
                    r = await client.post("/v1/explanations", json=request_body(k + n))
                except httpx.HTTPError:
                    statuses[0] += 1  # a connection error
                    continue
                statuses[r.status_code] += 1
                if r.status_code == 200:
                    seen[r.json()["model"]["version"]] += 1
                n += 1

    await asyncio.gather(*(one(k) for k in range(count)))
    return statuses


async def exercise(
    url: str, store: ModelStore, name: str, *, swaps: int, seconds: float, client_count: int
) -> dict[str, Any]:
    original = store.resolve(name, "production").version
    fresh = [republish(store, name, "production").version for _ in range(max(swaps - 1, 0))]
    stop, seen = asyncio.Event(), Counter[str]()
    load = asyncio.ensure_future(clients(url, client_count, stop, seen))
    reloads: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as admin:

        async def swap_to(version: str) -> None:
            store.set_alias(name, "production", version)
            response = await admin.post("/admin/reload")
            reloads.append({"to": version, "http": response.status_code, "result": response.json()})
            await asyncio.sleep(seconds)

        await asyncio.sleep(seconds)
        for version in fresh:
            await swap_to(version)
        if swaps:
            await swap_to(original)  # the rollback: promote the old version, reload
        bad = republish(store, name, "production")
        store.set_alias(name, "production", bad.version)
        tampered = tamper(bad)
        refused = await admin.post("/admin/reload")
        await asyncio.sleep(seconds)
        models = (await admin.get("/v1/models")).json()
        stop.set()
        statuses = await load
    return {
        "original": original,
        "reloads": reloads,
        "refused": {"status": refused.status_code, "body": refused.json(), "tampered": tampered},
        "served_after": models["models"][0]["version"],
        "last_reload": models["last_reload"],
        "statuses": dict(statuses),
        "versions_seen": dict(seen),
    }


def summary(result: dict[str, Any]) -> str:
    statuses: dict[int, int] = result["statuses"]
    total = sum(statuses.values())
    failed = total - statuses.get(200, 0)
    swapped = sum(
        1 for r in result["reloads"] if r["http"] == 200 and r["result"]["status"] == "swapped"
    )
    refused = int(result["refused"]["status"] == 409)
    versions = ", ".join(sorted(result["versions_seen"]))
    return (
        f"hotswap: {total} requests, {failed} failed; {swapped} swaps, {refused} refused; "
        f"versions served {versions}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="store")
    parser.add_argument("--name", default="prism-movies")
    parser.add_argument("--swaps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="load between the steps")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--port", type=int, default=8097)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        store_dir = Path(tmp) / "store"
        shutil.copytree(Path(args.store) / args.name, store_dir / args.name)
        url = f"http://127.0.0.1:{args.port}"
        log = Path(tmp) / "server.log"
        server = start_server(store_dir, args.name, args.port, log=log)
        try:
            wait_ready(url, server)
            result = asyncio.run(
                exercise(
                    url,
                    ModelStore(store_dir),
                    args.name,
                    swaps=args.swaps,
                    seconds=args.seconds,
                    client_count=args.clients,
                )
            )
        finally:
            server.terminate()
            server.wait(30)
    lines = [
        "| step | to | HTTP | status | served after |",
        "|---|---|---:|---|---|",
        *(
            f"| reload | {r['to']} | {r['http']} | {r['result'].get('status')} "
            f"| {r['result'].get('served')} |"
            for r in result["reloads"]
        ),
        f"| corrupt ({result['refused']['tampered']}) | - | {result['refused']['status']} "
        f"| refused | {result['served_after']} |",
    ]
    print("\n".join(lines))
    print("requests by status:", json.dumps(result["statuses"]))
    print("answers by version:", json.dumps(result["versions_seen"]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hot_swap.json").write_text(json.dumps(result, indent=2))
    print(summary(result))
    failed = sum(result["statuses"].values()) - result["statuses"].get(200, 0)
    return 0 if failed == 0 and result["refused"]["status"] == 409 else 1


if __name__ == "__main__":
    raise SystemExit(main())
