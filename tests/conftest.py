"""Session fixtures: a tiny real model, published to a temporary store, and a live server.

The model is a real user-aware BART (random weights, see `training.tiny`), exported to ONNX
with the parity check, so every integration test runs the real store, the real ORT
sessions and the real decode loop.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = "prism-tiny"


@dataclass(frozen=True)
class PublishedModel:
    store_dir: Path
    name: str
    version: str
    known_users: tuple[str, ...]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model", num_users=8)


@pytest.fixture(scope="session")
def tiny_store(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> PublishedModel:
    """The tiny model published (export + parity + promotion to production)."""
    from model_store.store import ModelStore
    from training.publishing import publish_model

    root = tmp_path_factory.mktemp("store")
    source = tmp_path_factory.mktemp("publish-src") / "model"
    shutil.copytree(tiny_model_dir, source)
    version, report = publish_model(
        ModelStore(root), TINY_MODEL, source, eval_metrics={}, aliases=("production",)
    )
    assert report.passed, report
    users = tuple(f"user-{k}" for k in range(1, 9))
    return PublishedModel(root, TINY_MODEL, version.version, users)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    store: PublishedModel,
    log_dir: Path,
    *,
    env: dict[str, str] | None = None,
    ready_timeout: float = 60,
) -> LiveServer:
    """`uvicorn --factory service.main:create_app` on 127.0.0.1, waited on until /readyz is 200."""
    port = free_port()
    environment = {
        **os.environ,
        "PRISM_STORE_DIR": str(store.store_dir),
        "PRISM_MODEL_NAME": store.name,
        "PRISM_MODEL_REF": "production",
        "PRISM_PROVIDER": "cpu",
        "PRISM_INTRA_OP_THREADS": "1",
        # The tiny model is below `auto`'s width: the live servers exercise the running
        # decode (iteration-level batching) explicitly.
        "PRISM_CONTINUOUS_BATCHING": "on",
        **(env or {}),
    }
    log_path = log_dir / f"uvicorn-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "service.main:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=REPO,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            if httpx.get(f"{server.base_url}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"server not ready after {ready_timeout}s:\n{server.log()}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def live_server(
    tiny_store: PublishedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    server = start_server(tiny_store, tmp_path_factory.mktemp("server-logs"))
    yield server
    stop_server(server)
