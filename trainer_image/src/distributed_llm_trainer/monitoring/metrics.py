"""Training metrics at the logging interval: loss, LR, grad norm, tokens, throughput, MFU, data wait, memory.

Everything per step is a cheap clock read; device values are read once per interval (one host sync), so the
callback costs far below 1% of a step (tests/monitoring/test_overhead.py measures it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from .hardware import device_memory, peak_flops_per_device


def is_log_step(step: int, interval: int, max_steps: int | None) -> bool:
    """Log every ``interval`` optimizer steps and at the last step of the run."""
    return step % interval == 0 or (max_steps is not None and max_steps > 0 and step >= max_steps)


def mfu(flops_per_token: float, tokens_per_s: float, peak_flops_per_device: float, world_size: int) -> float:
    """Model FLOPs utilization: achieved training FLOP/s over the peak of all devices."""
    return flops_per_token * tokens_per_s / (peak_flops_per_device * world_size)


class TrainMetrics(L.Callback):
    def __init__(self, interval: int, tokens_per_step: int, flops_per_token: float, world_size: int,
                 peak_flops: float | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.interval = interval
        self.tokens_per_step = tokens_per_step
        self.flops_per_token = flops_per_token
        self.world_size = world_size
        self.peak_flops_override = peak_flops
        self.peak_flops: float | None = peak_flops
        self.clock = clock
        self.history: list[dict[str, float]] = []  # every logged training row, for the summary and console
        self.val_history: list[dict[str, float]] = []
        self._last_batch_end: float | None = None
        self._last_step = 0
        self._paused_at: float | None = None
        self._fresh = True
        self.total_train_time = 0.0
        self.first_step: int | None = None
        self._reset_window()

    def _reset_window(self) -> None:
        self._t0 = self.clock()
        self._data_wait = 0.0
        self._steps_in_window = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.peak_flops = self.peak_flops_override or peak_flops_per_device(pl_module.device)
        self.first_step = trainer.global_step
        self._last_step = trainer.global_step
        self._last_batch_end = None
        self._fresh = True

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        now = self.clock()
        if self._paused_at is not None:
            # Evaluation and everything after it (samples, the best checkpoint's save) is not training time: the
            # pause ends here, at the next batch, rather than at on_validation_end, which runs before those hooks.
            self._t0 += now - self._paused_at
            self._paused_at = None
            self._last_batch_end = None
        if self._fresh:
            # Start timing at the first batch: the module's step-0 baseline evaluation and loader start-up run
            # between on_train_start and here, and they are not training throughput.
            self._fresh = False
            self._reset_window()
            self._t0 = now
        elif self._last_batch_end is not None:  # time between batches: fetching the next batch (+ loop overhead)
            self._data_wait += now - self._last_batch_end

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._paused_at = self.clock()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        val = trainer.callback_metrics.get("val/loss")
        if val is not None and not trainer.sanity_checking:
            step = trainer.global_step
            loss = float(val)
            self.val_history.append({"step": float(step), "tokens": float(step * self.tokens_per_step),
                                     "val/loss": loss, "val/ppl": math.exp(min(loss, 50.0))})
        self._last_batch_end = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step != self._last_step:  # an optimizer step happened in this batch
            self._steps_in_window += step - self._last_step
            self._last_step = step
            if is_log_step(step, self.interval, trainer.max_steps):
                self._log(trainer, pl_module, step)
        self._last_batch_end = self.clock()

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)  # the one host sync per interval: queued steps finish
        elapsed = max(self.clock() - self._t0, 1e-9)
        self.total_train_time += elapsed
        pop = getattr(pl_module, "pop_train_stats", None)
        row: dict[str, float] = dict(pop()) if pop is not None else {}
        steps = max(self._steps_in_window, 1)
        tokens_per_s = self.tokens_per_step * steps / elapsed
        row.update({
            "train/lr": trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None,
            "train/tokens_seen": float(step * self.tokens_per_step),
            "perf/tokens_per_s": tokens_per_s,
            "perf/tokens_per_s_per_device": tokens_per_s / self.world_size,
            "perf/step_time_s": elapsed / steps,
            "perf/data_wait_share": min(1.0, self._data_wait / elapsed),
        })
        if self.peak_flops:
            row["perf/mfu"] = mfu(self.flops_per_token, tokens_per_s, self.peak_flops, self.world_size)
        row.update(device_memory(pl_module.device))
        row = {k: float(v) for k, v in row.items() if v is not None}
        row["step"] = float(step)
        self.history.append(row)
        for logger in trainer.loggers:
            logger.log_metrics({k: v for k, v in row.items() if k != "step"}, step=step)
        self._reset_window()
