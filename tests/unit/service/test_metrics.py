from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from explain.types import Explanation
from service.gpu import NvmlCollector
from service.metrics import Metrics
from service.telemetry import route_template

pytestmark = pytest.mark.anyio

DESIGN_FAMILIES = {
    "prism_http_requests",
    "prism_http_request_duration_seconds",
    "prism_queue_wait_seconds",
    "prism_inference_duration_seconds",
    "prism_batch_size",
    "prism_generated_tokens",
    "prism_queue_depth",
    "prism_unknown_user_requests",
    "prism_model_info",
    "prism_ready",
    "prism_deadline_exceeded",
    "prism_rejected_requests",
}
GPU_PREFIXES = ("prism_gpu_", "prism_process_gpu_")


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise KeyError(f"{name}{labels}")


async def traffic(client: Any, example: dict[str, Any]) -> None:
    users = ["4217", "u-9f8e7d-unknown", 7, "another-stranger"]
    await asyncio.gather(
        *(client.post("/v1/explanations", json=example | {"user_id": u}) for u in users)
    )
    await client.post(
        "/v1/explanations/batch", json={"requests": [example, example | {"user_id": "x"}]}
    )
    await client.post("/v1/explanations", json={"bad": True})
    await client.get("/no/such/path/12345")


async def test_exposition_has_the_design_table_and_passes_promtool(
    serve_app: Any, example: dict[str, Any]
) -> None:
    async with serve_app() as (_, client):
        await traffic(client, example)
        response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    found = families(response.text)
    assert set(found) >= DESIGN_FAMILIES
    model = found["prism_model_info"].samples[0]
    assert model.labels == {"name": "prism-test", "version": "2026-01-01.1", "provider": "cpu"}
    stages = {s.labels["stage"] for s in found["prism_inference_duration_seconds"].samples}
    assert stages == {"prepare", "encode", "decode", "step", "finish", "total"}
    assert sample(response.text, "prism_ready") == 1.0
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=response.text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_labels_are_route_templates_never_users(
    serve_app: Any, example: dict[str, Any]
) -> None:
    async with serve_app() as (_, client):
        await traffic(client, example)
        text = (await client.get("/metrics")).text
    assert "user_id" not in text
    assert "u-9f8e7d-unknown" not in text and "another-stranger" not in text
    assert "/no/such/path" not in text
    assert sample(text, "prism_http_requests_total", route="unmatched", status="404") == 1
    assert sample(text, "prism_http_requests_total", route="/v1/explanations", status="200") == 4
    assert sample(text, "prism_http_requests_total", route="/v1/explanations", status="422") == 1
    assert (
        sample(text, "prism_http_requests_total", route="/v1/explanations/batch", status="200") == 1
    )
    assert sample(text, "prism_http_request_duration_seconds_count", route="/v1/explanations") == 5
    # Unknown users: two single requests and one in the slate.
    assert sample(text, "prism_unknown_user_requests_total") == 3
    assert sample(text, "prism_generated_tokens_count") == 6


async def test_gpu_series_absent_without_nvml(
    serve_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_library() -> None:
        raise RuntimeError("NVML Shared Library Not Found")

    failing = SimpleNamespace(nvmlInit=no_library)
    collector = NvmlCollector(failing)
    metrics = Metrics(gpu_collector=collector)
    text = metrics.render()[0].decode()
    assert not any(prefix in text for prefix in GPU_PREFIXES)
    assert "prism_batch_size" in text  # the rest of the exposition is still there

    monkeypatch.setattr("service.gpu._import_nvml", lambda: None)  # nvidia-ml-py not installed
    assert list(NvmlCollector().collect()) == []


class FakeNvml:
    """Two GPUs; this process runs on GPU 0; GPU 2 fails to report."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.shutdowns = 0

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        pass

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return 3

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        return index

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:  # noqa: N802
        if handle == 2:
            raise RuntimeError("GPU is lost")
        return SimpleNamespace(used=(handle + 1) * 1000, total=80_000, free=0)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:  # noqa: N802
        if handle == 0:
            return [
                SimpleNamespace(pid=self.pid, usedGpuMemory=600),
                SimpleNamespace(pid=self.pid + 1, usedGpuMemory=300),
            ]
        return [SimpleNamespace(pid=self.pid + 2, usedGpuMemory=900)]


def test_gpu_collector_reads_nvml_per_device_and_process() -> None:
    nvml = FakeNvml(os.getpid())
    collector = NvmlCollector(nvml)
    text = Metrics(gpu_collector=collector).render()[0].decode()
    assert sample(text, "prism_gpu_memory_used_bytes", gpu="0") == 1000
    assert sample(text, "prism_gpu_memory_used_bytes", gpu="1") == 2000
    assert sample(text, "prism_gpu_memory_total_bytes", gpu="1") == 80_000
    assert sample(text, "prism_process_gpu_memory_bytes", gpu="0") == 600
    with pytest.raises(KeyError):
        sample(text, "prism_process_gpu_memory_bytes", gpu="1")  # not our process there
    with pytest.raises(KeyError):
        sample(text, "prism_gpu_memory_used_bytes", gpu="2")  # the lost GPU is skipped
    collector.close()
    assert nvml.shutdowns == 1


def test_metric_updates_never_raise(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = Metrics()

    def broken(*_: Any) -> None:
        raise ValueError("broken histogram")

    monkeypatch.setattr(metrics.generated_tokens, "observe", broken)
    with caplog.at_level(logging.WARNING, logger="service.metrics"):
        metrics.explained(Explanation("x", False, 3, 4, 0))
    assert "explained" in caplog.text
    assert metrics.unknown_users._value.get() == 0  # the update stopped at the broken metric


def test_fallbacks_are_counted_by_defect_and_every_defect_is_exported() -> None:
    metrics = Metrics()
    metrics.explained(Explanation("x", True, 3, 4, 1, fallback_reason="stutter"))
    metrics.explained(Explanation("y", True, 3, 4, 1))
    text = metrics.render()[0].decode()
    assert sample(text, "prism_fallback_explanations_total", reason="stutter") == 1
    for reason in ("no_words", "dangling_slot", "looping"):  # present before the first one
        assert sample(text, "prism_fallback_explanations_total", reason=reason) == 0


def test_route_template_falls_back_to_unmatched() -> None:
    assert route_template({"type": "http"}) == "unmatched"
    assert route_template({"route": SimpleNamespace(path="/v1/models")}) == "/v1/models"
