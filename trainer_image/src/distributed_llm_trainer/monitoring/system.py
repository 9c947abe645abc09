"""System metrics at the logging interval: CPU, RAM, process RSS, disk I/O (psutil); GPU utilization, power and
temperature (NVML, when a GPU and its driver are present; otherwise skipped silently).

Nothing runs per step except an integer comparison. A row costs about a millisecond (psutil reads /proc and
/sys), so rows are also at least ``min_period_s`` apart: with a fast model and a short interval they would
otherwise cost more than 1% of the step time, and these values change slowly anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import lightning as L
import psutil

from .metrics import is_log_step


class _Nvml:
    """One NVML handle for this rank's GPU; every query is optional (not all GPUs report power, for example)."""

    def __init__(self, handle: Any, pynvml: Any) -> None:
        self.handle = handle
        self.nvml = pynvml

    @classmethod
    def open(cls, device: Any) -> _Nvml | None:
        if getattr(device, "type", None) != "cuda":
            return None
        try:
            import pynvml
            import torch

            pynvml.nvmlInit()
            try:  # NVML numbers GPUs physically; map through CUDA_VISIBLE_DEVICES like torch does
                index = torch.cuda._get_nvml_device_index(device)
            except Exception:
                index = device.index or 0
            return cls(pynvml.nvmlDeviceGetHandleByIndex(index), pynvml)
        except Exception:  # no driver/library, or a GPU NVML cannot see (some containers)
            return None

    def read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        n, h = self.nvml, self.handle
        queries: list[tuple[str, Callable[[], float]]] = [
            ("gpu/utilization_percent", lambda: n.nvmlDeviceGetUtilizationRates(h).gpu),
            ("gpu/memory_used_bytes", lambda: n.nvmlDeviceGetMemoryInfo(h).used),
            ("gpu/power_w", lambda: n.nvmlDeviceGetPowerUsage(h) / 1000.0),  # milliwatts
            ("gpu/temperature_c", lambda: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)),
        ]
        for key, query in queries:
            try:
                out[key] = float(query())
            except Exception:  # not supported on this GPU / transient driver error: skip the value
                pass
        return out

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:
            pass


class SystemMetrics(L.Callback):
    """Logs ``system/*`` (and ``gpu/*`` on NVIDIA GPUs) every ``interval`` optimizer steps on global rank 0,
    at most once per ``min_period_s`` seconds."""

    def __init__(self, interval: int, min_period_s: float = 2.0, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.interval = interval
        self.min_period_s = min_period_s
        self.clock = clock
        self._last_row_at: float | None = None
        self.history: list[dict[str, float]] = []
        self._nvml: _Nvml | None = None
        self._proc = psutil.Process()
        self._last_step = -1
        self._disk: tuple[float, Any] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self._nvml = _Nvml.open(pl_module.device)
        self._last_step = trainer.global_step
        # cpu_percent measures since the previous call: prime both counters so the first row is meaningful
        psutil.cpu_percent(interval=None)
        self._proc.cpu_percent(interval=None)
        self._disk = self._disk_counters()

    def _disk_counters(self) -> tuple[float, Any] | None:
        try:
            counters = psutil.disk_io_counters()
        except Exception:  # some containers expose no block devices
            return None
        return None if counters is None else (self.clock(), counters)

    def collect(self) -> dict[str, float]:
        """One row of system metrics now (also usable outside a Trainer)."""
        row: dict[str, float] = {}
        try:
            row["system/cpu_percent"] = psutil.cpu_percent(interval=None)
            row["system/process_cpu_percent"] = self._proc.cpu_percent(interval=None)
            vm = psutil.virtual_memory()
            row["system/ram_used_bytes"] = float(vm.total - vm.available)
            row["system/ram_percent"] = vm.percent
            row["system/process_rss_bytes"] = float(self._proc.memory_info().rss)
        except Exception:  # psutil can fail in odd sandboxes; metrics are never worth a crash
            pass
        now = self._disk_counters()
        if now is not None and self._disk is not None:
            dt = max(now[0] - self._disk[0], 1e-9)
            row["system/disk_read_bytes_per_s"] = (now[1].read_bytes - self._disk[1].read_bytes) / dt
            row["system/disk_write_bytes_per_s"] = (now[1].write_bytes - self._disk[1].write_bytes) / dt
        self._disk = now
        if self._nvml is not None:
            row.update(self._nvml.read())
        return row

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step == self._last_step:  # inside gradient accumulation: no optimizer step yet
            return
        self._last_step = step
        if not trainer.is_global_zero or not is_log_step(step, self.interval, trainer.max_steps):
            return
        now = self.clock()
        if self._last_row_at is not None and now - self._last_row_at < self.min_period_s:
            return
        self._last_row_at = now
        row = self.collect()
        if not row:
            return
        self.history.append({**row, "step": float(step)})
        for logger in trainer.loggers:
            logger.log_metrics(row, step=step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._nvml is not None:
            self._nvml.close()
            self._nvml = None
