"""Start the real server for a benchmark, as the run command does, and wait until it is ready."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def start_server(
    store_dir: Path,
    name: str,
    port: int,
    flags: Sequence[str] = (),
    log: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    app: str = "service.main:create_app",
) -> subprocess.Popen[bytes]:
    """`uvicorn --factory {app}` on 127.0.0.1:`port`, on the CPU (`app`: the service's own
    factory, or `benchmarks.ungated_app:create_app` where a benchmark waives a gate)."""
    env = {
        **os.environ,
        "PRISM_STORE_DIR": str(store_dir),
        "PRISM_MODEL_NAME": name,
        "PRISM_PROVIDER": "cpu",
        **(extra_env or {}),
    }
    command = [
        sys.executable, "-m", "uvicorn", "--factory", app,
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


@dataclass(frozen=True)
class RunningServer:
    base_url: str
    process: subprocess.Popen[bytes]

    def peak_rss_mb(self) -> float:
        """The server process's peak resident memory so far (Linux `VmHWM`)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc: peak RSS needs Linux")


@contextmanager
def running_server(
    store_dir: Path,
    name: str,
    extra_env: Mapping[str, str],
    log: Path | None = None,
    app: str = "service.main:create_app",
) -> Iterator[RunningServer]:
    """A server on a free loopback port, ready, stopped (SIGTERM) on exit."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    process = start_server(store_dir, name, port, log=log, extra_env=extra_env, app=app)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        yield RunningServer(url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
