"""The pod's one Prometheus endpoint, served by ``llmtj-worker`` (the agent above torchrun) on ``LLMTJ_METRICS_PORT``.

At each scrape it merges what the pod's ranks wrote (prometheus-client multiprocess files, prometheus.py) and reads
every GPU the pod sees through NVML. The agent outlives its ranks (restarts, re-formed worlds), so the endpoint stays
up for the whole pod; files of ranks that exited are folded (counters, histograms) or dropped (gauges) first.

    GET :PORT/metrics   text exposition format
"""

from __future__ import annotations

import glob
import os
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .prometheus import PREFIX, identity

GPU_LABELS = ("job", "namespace", "pod", "gpu", "uuid")
_PID = re.compile(r"_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RankFiles:
    """The ranks' multiprocess files, with the gauges of exited processes dropped before each read."""

    def __init__(self, path: Path) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self.path = path
        self._collector = MultiProcessCollector(None, path=str(path))

    def collect(self) -> Iterator[Any]:
        from prometheus_client import multiprocess

        for f in glob.glob(str(self.path / "gauge_live*.db")):
            match = _PID.search(f)
            if match and not _alive(int(match.group(1))):
                multiprocess.mark_process_dead(int(match.group(1)), str(self.path))
        yield from self._collector.collect()


class GpuCollector:
    """NVML, read at scrape time: per GPU utilization, memory, power, temperature, SM clock and ECC errors. Nothing
    without a GPU or driver; a query a GPU does not support is left out rather than reported as 0."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self._nvml: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
        except Exception:  # no driver or library: a CPU pod
            self._nvml = None
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Any]:
        if self._nvml is None:
            return
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        n = self._nvml
        specs: list[tuple[str, str, bool, Any]] = [
            ("gpu_utilization_ratio", "Share of the last sample period a kernel ran on the GPU, 0-1.", False,
             lambda h: n.nvmlDeviceGetUtilizationRates(h).gpu / 100.0),
            ("gpu_memory_used_bytes", "GPU memory in use.", False, lambda h: n.nvmlDeviceGetMemoryInfo(h).used),
            ("gpu_memory_total_bytes", "GPU memory installed.", False, lambda h: n.nvmlDeviceGetMemoryInfo(h).total),
            ("gpu_power_watts", "Power draw.", False, lambda h: n.nvmlDeviceGetPowerUsage(h) / 1000.0),
            ("gpu_temperature_celsius", "GPU core temperature.", False,
             lambda h: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)),
            ("gpu_sm_clock_hertz", "Streaming multiprocessor clock.", False,
             lambda h: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM) * 1e6),
            ("gpu_ecc_errors", "Uncorrected ECC errors since the driver loaded (volatile).", True,
             lambda h: n.nvmlDeviceGetTotalEccErrors(h, n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, n.NVML_VOLATILE_ECC)),
        ]
        with self._lock:
            handles = []
            for i in range(n.nvmlDeviceGetCount()):
                h = n.nvmlDeviceGetHandleByIndex(i)
                uuid = n.nvmlDeviceGetUUID(h)
                handles.append((h, [*self.labels.values(), str(i), uuid.decode() if isinstance(uuid, bytes) else uuid]))
            for name, doc, counter, read in specs:
                family = (CounterMetricFamily if counter else GaugeMetricFamily)(PREFIX + name, doc,
                                                                                 labels=GPU_LABELS)
                for h, values in handles:
                    try:
                        family.add_metric(values, float(read(h)))
                    except Exception:  # not supported on this GPU (e.g. ECC on consumer cards)
                        continue
                if family.samples:
                    yield family


def serve(host: str, port: int, rank_dir: Path, env: Mapping[str, str]) -> Any:
    """Start the endpoint in a daemon thread; returns the HTTP server. ``rank_dir``: the ranks' files (made here)."""
    from prometheus_client import CollectorRegistry, start_http_server

    rank_dir.mkdir(exist_ok=True)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RankFiles(rank_dir))
    who = identity(env)
    registry.register(GpuCollector({"job": who["job"], "namespace": who["namespace"], "pod": who["pod"]}))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
