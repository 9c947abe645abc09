"""Per-optimizer-step timing for benchmarks, without a host sync per step.

``StepClock.mark()`` is called at every optimizer-step boundary: on CUDA it records an event (read back once, at
the end), elsewhere it reads ``perf_counter``. ``summarize`` turns the step times into the benchmark figures.
"""

from __future__ import annotations

import statistics
import time
import warnings
from typing import Any

import torch


class StepClock:
    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[Any] = []
        self.data_wait: list[float] = []  # host seconds spent fetching batches, per interval between marks
        self.excluded: set[int] = set()  # interval indices that also ran something else (validation)
        self._wait = 0.0

    def add_wait(self, seconds: float) -> None:
        self._wait += seconds

    def exclude_next(self) -> None:
        """The interval that ends at the next mark ran more than training (e.g. a validation pass)."""
        self.excluded.add(len(self.marks) - 1)

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())
        if len(self.marks) > 1:
            self.data_wait.append(self._wait)
        self._wait = 0.0

    def durations(self) -> list[float]:
        """Seconds between consecutive marks (one host sync on CUDA)."""
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) / 1000.0 for a, b in zip(self.marks, self.marks[1:])]
        return [b - a for a, b in zip(self.marks, self.marks[1:])]

    def excluded_count(self, skip: int) -> int:
        """Intervals after the first ``skip`` that were left out of the timing."""
        return len([i for i in self.excluded if skip <= i < len(self.marks) - 1])

    def timed(self, skip: int) -> tuple[list[float], list[float]]:
        """(step times, data waits) of the intervals after the first ``skip`` (warm-up), less excluded ones."""
        pairs = [(d, w) for i, (d, w) in enumerate(zip(self.durations(), self.data_wait))
                 if i >= skip and i not in self.excluded]
        return [d for d, _ in pairs], [w for _, w in pairs]


class SyncCounter:
    """Host syncs per interval between marks, from CUDA's sync debug mode (a warning per synchronizing call)."""

    def __init__(self) -> None:
        self.counts: list[int] = []
        self._ctx: Any = None
        self._log: list[Any] | None = None

    def start(self) -> None:
        if not torch.cuda.is_available():
            return
        self._ctx = warnings.catch_warnings(record=True)
        self._log = self._ctx.__enter__()
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")

    def mark(self, first: bool) -> None:
        if self._log is None:
            return
        if not first:
            self.counts.append(sum(1 for w in self._log if "synchroniz" in str(w.message)))
        self._log.clear()

    def stop(self) -> None:
        if self._ctx is not None:
            torch.cuda.set_sync_debug_mode(0)
            self._ctx.__exit__(None, None, None)
            self._ctx = self._log = None


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in [0, 100]) of a non-empty list."""
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(variant: str, times: list[float], waits: list[float], tokens_per_step: int, flops_per_token: float,
              peak_flops: float | None, world_size: int, peak_memory: int | None, **extra: Any) -> dict[str, Any]:
    """The benchmark line of one variant (tokens/s and MFU from the mean step time over the timed steps)."""
    if not times:
        raise ValueError(f"{variant}: no timed steps; raise --steps")
    total = sum(times)
    tokens_per_s = tokens_per_step * len(times) / total
    return {
        "variant": variant,
        "steps": len(times),
        "tokens_per_step": tokens_per_step,
        "tokens_per_s": tokens_per_s,
        "step_time_median_s": statistics.median(times),
        "step_time_p90_s": percentile(times, 90),
        "step_time_mean_s": total / len(times),
        "mfu": flops_per_token * tokens_per_s / (peak_flops * world_size) if peak_flops else None,
        "peak_memory_bytes": peak_memory,
        "data_wait_share": min(1.0, sum(waits) / total),
        **extra,
    }
