"""Start the real server for a benchmark, as the run command does, and wait until it is ready."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx


def start_server(
    store_dir: Path,
    name: str,
    port: int,
    flags: Sequence[str] = (),
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    """`uvicorn --factory service.main:create_app` on 127.0.0.1:`port`, on the CPU."""
    env = {
        **os.environ,
        "PRISM_STORE_DIR": str(store_dir),
        "PRISM_MODEL_NAME": name,
        "PRISM_PROVIDER": "cpu",
    }
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "service.main:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *flags,
    ]  # fmt: skip
    if log is None:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_ready(url: str, process: subprocess.Popen[bytes] | None, timeout_s: float = 180) -> None:
    until = time.monotonic() + timeout_s
    while time.monotonic() < until:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server was not ready within {timeout_s:.0f} s")
