"""GPU memory series read from NVML (nvidia-ml-py) at scrape time.

Without NVML (no driver, no library, a CPU node) the series are simply absent: the
collector logs that once at info level and yields nothing. A device that fails mid-scrape
is skipped; the scrape itself never fails.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)


def _import_nvml() -> Any:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


class NvmlCollector(Collector):
    """`prism_gpu_memory_used_bytes`, `prism_gpu_memory_total_bytes` and
    `prism_process_gpu_memory_bytes` per GPU index.

    The process series is there only for GPUs on which NVML lists this process (matched by
    pid) with a known usage; inside a PID namespace NVML may report host pids, and then it
    is absent rather than a misleading zero.
    """

    def __init__(self, nvml: Any | None = None, *, pid: int | None = None) -> None:
        # pynvml is untyped; tests pass a stand-in module.
        self._nvml: Any = nvml if nvml is not None else _import_nvml()
        self._pid = os.getpid() if pid is None else pid
        self._lock = threading.Lock()
        self._initialised = False
        self._unavailable = self._nvml is None
        if self._unavailable:
            logger.info("nvidia-ml-py is not installed; GPU metrics are off")

    def describe(self) -> list[Metric]:
        # No fixed set of series: avoid the registry calling collect() (and NVML) on register.
        return []

    def collect(self) -> Iterator[Metric]:
        if not self._ensure_init():
            return
        nvml = self._nvml
        used = GaugeMetricFamily(
            "prism_gpu_memory_used_bytes", "Memory in use on the GPU.", labels=["gpu"]
        )
        total = GaugeMetricFamily(
            "prism_gpu_memory_total_bytes", "Total memory of the GPU.", labels=["gpu"]
        )
        mine = GaugeMetricFamily(
            "prism_process_gpu_memory_bytes", "GPU memory this process uses.", labels=["gpu"]
        )
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:
            logger.debug("NVML device count failed: %s", exc)
            return
        for index in range(count):
            label = [str(index)]
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            except Exception as exc:
                logger.debug("NVML memory info for GPU %d failed: %s", index, exc)
                continue
            used.add_metric(label, float(memory.used))
            total.add_metric(label, float(memory.total))
            process_bytes = self._process_bytes(handle)
            if process_bytes is not None:
                mine.add_metric(label, float(process_bytes))
        for family in (used, total, mine):
            if family.samples:
                yield family

    def close(self) -> None:
        with self._lock:
            if self._initialised:
                self._initialised = False
                try:
                    self._nvml.nvmlShutdown()
                except Exception as exc:
                    logger.debug("NVML shutdown failed: %s", exc)

    def _ensure_init(self) -> bool:
        with self._lock:
            if self._initialised:
                return True
            if self._unavailable:
                return False
            try:
                self._nvml.nvmlInit()
            except Exception as exc:
                self._unavailable = True
                logger.info("NVML is not available (%s); GPU metrics are off", exc)
                return False
            self._initialised = True
            return True

    def _process_bytes(self, handle: Any) -> int | None:
        try:
            processes = self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except Exception as exc:
            logger.debug("NVML process list failed: %s", exc)
            return None
        found = [p.usedGpuMemory for p in processes if p.pid == self._pid]
        known = [int(b) for b in found if b is not None]
        return sum(known) if known else None
