"""Live progress (rich): step/total, loss, val loss, tokens/s and ETA, refreshed at the logging interval only.

On a terminal it is one live bar; in a log file (SLURM, CI, ``| tee``) a live display would only be drawn at the
end, so there it prints one plain line per logging interval instead.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L

from .metrics import TrainMetrics, is_log_step


def _initial_val_loss(trainer: L.Trainer) -> float | None:
    """The validation loss before any update (the module computes it when training starts)."""
    return getattr(getattr(trainer, "lightning_module", None), "initial_val_loss", None)


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class LiveProgress(L.Callback):
    def __init__(self, console: Any, total_steps: int, interval: int) -> None:
        self.console = console
        self.total = total_steps
        self.interval = interval
        self._progress: Any = None
        self._task: Any = None
        self._plain = False
        self._said_start = False
        self._start: tuple[float, int] | None = None  # (time, step) when this session started training

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = (time.monotonic(), trainer.global_step)
        self._plain = not self.console.is_terminal
        if self._plain:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TextColumn("eta"), TimeRemainingColumn(), console=self.console, transient=False,
            auto_refresh=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=self.total, completed=trainer.global_step, info="")

    @staticmethod
    def _metrics(trainer: L.Trainer) -> tuple[dict[str, float], float | None]:
        for cb in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(cb, TrainMetrics):
                rows, vals = cb.history, cb.val_history
                return (rows[-1] if rows else {}), (vals[-1]["val/loss"] if vals else None)
        return {}, None

    def _info(self, trainer: L.Trainer) -> str:
        row, val = self._metrics(trainer)
        if val is None:  # before the first evaluation: the loss before any update, so the fall shows from the start
            val = _initial_val_loss(trainer)
        info = []
        if "train/loss" in row:
            info.append(f"loss {row['train/loss']:.4f}")
        if val is not None:
            info.append(f"val {val:.4f}")
        if "perf/tokens_per_s" in row:
            info.append(f"{row['perf/tokens_per_s']:,.0f} tok/s")
        return "  ".join(info)

    def _eta(self, step: int) -> float | None:
        if self._start is None or step <= self._start[1]:
            return None
        rate = (time.monotonic() - self._start[0]) / (step - self._start[1])
        return rate * max(self.total - step, 0)

    def _show(self, trainer: L.Trainer) -> None:
        step = trainer.global_step
        if self._plain:
            initial = _initial_val_loss(trainer)
            if self._start is not None and self._start[1] == 0 and not self._said_start and initial is not None:
                self._said_start = True
                self.console.print(f"step 0/{self.total:,}  val {initial:.4f} (before training)", soft_wrap=True,
                                   highlight=False, markup=False)
            line = f"step {step:,}/{self.total:,}  {self._info(trainer)}  eta {_fmt_eta(self._eta(step))}"
            self.console.print(line, soft_wrap=True, highlight=False, markup=False)
        elif self._progress is not None:
            self._progress.update(self._task, completed=step, info=self._info(trainer))
            self._progress.refresh()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self._start is not None and is_log_step(trainer.global_step, self.interval, self.total):
            self._show(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._progress is not None and not trainer.sanity_checking:  # show the new val loss right away
            self._progress.update(self._task, info=self._info(trainer))
            self._progress.refresh()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=trainer.global_step, info=self._info(trainer))
            self._progress.refresh()
            self._progress.stop()
            self._progress = None
        elif self._plain and self._start is not None:
            _, val = self._metrics(trainer)
            if val is not None:  # the final evaluation runs after the last progress line
                self.console.print(f"step {trainer.global_step:,}/{self.total:,}  final val {val:.4f}",
                                   soft_wrap=True, highlight=False, markup=False)
        self._start = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.on_train_end(trainer, pl_module)
