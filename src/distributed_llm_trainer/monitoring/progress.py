"""Live progress (rich): step/total, loss, tokens/s and ETA, refreshed at the logging interval only."""

from __future__ import annotations

from typing import Any

import lightning as L


class LiveProgress(L.Callback):
    def __init__(self, console: Any, total_steps: int, interval: int) -> None:
        self.console = console
        self.total = total_steps
        self.interval = interval
        self._progress: Any = None
        self._task: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TextColumn("eta"), TimeRemainingColumn(), console=self.console, transient=False,
            auto_refresh=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=self.total, completed=trainer.global_step, info="")

    def _metrics(self, trainer: L.Trainer) -> tuple[dict[str, float], float | None]:
        from .metrics import TrainMetrics

        for cb in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(cb, TrainMetrics):
                rows = cb.history
                vals = cb.val_history
                return (rows[-1] if rows else {}), (vals[-1]["val/loss"] if vals else None)
        return {}, None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if self._progress is None or (step % self.interval and step < self.total):
            return
        row, val = self._metrics(trainer)
        info = []
        if "train/loss" in row:
            info.append(f"loss {row['train/loss']:.4f}")
        if val is not None:
            info.append(f"val {val:.4f}")
        if "perf/tokens_per_s" in row:
            info.append(f"{row['perf/tokens_per_s']:,.0f} tok/s")
        self._progress.update(self._task, completed=step, info="  ".join(info))
        self._progress.refresh()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=trainer.global_step)
            self._progress.refresh()
            self._progress.stop()
            self._progress = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.on_train_end(trainer, pl_module)
