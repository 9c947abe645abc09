"""Fault injection for resilience checks (``scripts/check_resume.py`` and tests), driven by environment variables.

DLT_FAULT_KILL_AT_STEP=N     SIGKILL this process right after optimizer step N (no clean-up, like a crash)
DLT_FAULT_KILL_RANK=r        ... only on global rank r (default: every rank)
DLT_FAULT_NAN_AT_STEPS=a,b   make every gradient NaN at those steps (the update must be skipped)
DLT_FAULT_SPIKE_AT_STEPS=a,b replace that step's targets with random tokens (a loss spike from bad data)
DLT_FAULT_STEP_SLEEP_S=x     sleep x seconds after each optimizer step (a slower model: tests' events land mid-run)
DLT_FAULT_FINISH_SLEEP_S=x   sleep x seconds as the run's end begins (a signal lands while every rank finishes)
DLT_TRACE_BATCHES=DIR        append each micro-batch's row digests to DIR/trace-<pid>.jsonl ({"step", "rank",
                             "world", "group", "rows"}): which windows each optimizer step read, for the elastic
                             checks; ``group`` (rank 0's start time) tells a redone step's last attempt.
                             Also DIR/events-<pid>.jsonl: {"event", "t", "rank"} for process_start, built
                             (imports, data, model), train_start (process group up, checkpoint restored) and
                             first_step: where a restart's time goes
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from typing import Any

import lightning as L
import torch

_FIRED: set[tuple[str, int]] = set()  # per process: a fault fires once, not again after a rollback replays it


def reset() -> None:
    """A new training session (not a rollback inside one) may fire every fault again."""
    _FIRED.clear()


def _once(kind: str, step: int, steps: set[int]) -> bool:
    if step not in steps or (kind, step) in _FIRED:
        return False
    _FIRED.add((kind, step))
    return True


def _steps(var: str) -> set[int]:
    raw = os.environ.get(var, "")
    return {int(s) for s in raw.split(",") if s.strip()}


def finish_pause() -> None:
    time.sleep(float(os.environ.get("DLT_FAULT_FINISH_SLEEP_S") or 0))


class FaultInjector(L.Callback):
    def __init__(self) -> None:
        kill = os.environ.get("DLT_FAULT_KILL_AT_STEP")
        self.kill_at = int(kill) if kill else None
        rank = os.environ.get("DLT_FAULT_KILL_RANK")
        self.kill_rank = int(rank) if rank else None
        self.nan_at = _steps("DLT_FAULT_NAN_AT_STEPS")
        self.spike_at = _steps("DLT_FAULT_SPIKE_AT_STEPS")
        self.trace_dir = os.environ.get("DLT_TRACE_BATCHES")
        self.sleep_s = float(os.environ.get("DLT_FAULT_STEP_SLEEP_S") or 0)
        self.group = 0.0
        self._slept_at = -1
        self._first_step: int | None = None
        if self.trace_dir:
            import psutil

            os.makedirs(self.trace_dir, exist_ok=True)  # e.g. a folder on a fresh checkpoint volume
            self._event("process_start", psutil.Process().create_time())
            self._event("built", time.time())

    def _event(self, name: str, t: float, rank: int | None = None) -> None:
        rank = int(os.environ.get("RANK", "0")) if rank is None else rank
        with open(os.path.join(self.trace_dir or ".", f"events-{os.getpid()}.jsonl"), "a") as f:
            f.write(json.dumps({"event": name, "t": t, "rank": rank}) + "\n")

    @staticmethod
    def active() -> bool:
        return any(os.environ.get(v) for v in ("DLT_FAULT_KILL_AT_STEP", "DLT_FAULT_NAN_AT_STEPS",
                                               "DLT_FAULT_SPIKE_AT_STEPS", "DLT_TRACE_BATCHES",
                                               "DLT_FAULT_STEP_SLEEP_S"))

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self.trace_dir:  # one id for all ranks of this process group
            self._event("train_start", time.time(), trainer.global_rank)
            self._first_step = trainer.global_step
            self.group = float(trainer.strategy.broadcast(time.time(), src=0))

    def _trace(self, trainer: L.Trainer, batch: Any) -> None:
        rows = batch["input_ids"].cpu().numpy()
        record = {"step": trainer.global_step + 1, "rank": trainer.global_rank, "world": trainer.world_size,
                  "group": self.group,
                  "rows": [hashlib.blake2b(r.tobytes(), digest_size=8).hexdigest() for r in rows]}
        with open(os.path.join(self.trace_dir or ".", f"trace-{os.getpid()}.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        # global_step counts finished optimizer steps, so the step being computed is global_step + 1.
        if self.trace_dir:
            self._trace(trainer, batch)
        if _once("spike", trainer.global_step + 1, self.spike_at):
            gen = torch.Generator().manual_seed(trainer.global_step)
            noise = torch.randint(0, pl_module.vocab_size, batch["targets"].shape, generator=gen)
            batch["targets"].copy_(noise.to(batch["targets"].device))

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if _once("nan", trainer.global_step + 1, self.nan_at):
            for p in pl_module.parameters():
                if p.grad is not None:
                    p.grad.fill_(float("nan"))

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.sleep_s and trainer.global_step != self._slept_at:
            self._slept_at = trainer.global_step
            time.sleep(self.sleep_s)
        if self._first_step is not None and trainer.global_step > self._first_step:
            self._event("first_step", time.time(), trainer.global_rank)
            self._first_step = None
        if self.kill_rank is not None and trainer.global_rank != self.kill_rank:
            return
        if self.kill_at is not None and trainer.global_step >= self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
