"""Run guards: graceful preemption (SIGTERM/SIGUSR1), loss-spike and bad-step rollback requests.

Preemption: the signal only sets a flag; at the next optimizer-step boundary the run saves ``last.ckpt`` and
stops cleanly (under SLURM with auto-requeue, Lightning's own SIGUSR1 handler saves and requeues instead). With
several ranks they agree first (at the logging interval) and all save together; a rank that stops only because
another one was signalled records it (``stop_cause() == "peer"``): under torchrun it then exits with
``PEER_STOPPED`` so that its agent re-forms the group without the stopped node, from that checkpoint.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning as L

PEER_STOPPED = 3  # exit code: stopped because another worker was (torchrun restarts the group, no step lost)
_cause: list[str] = []  # "signal" or "peer" once this process stopped on a preemption request


def stop_cause() -> str | None:
    """Why this process's run stopped early on a preemption request: ``signal`` (it got one), ``peer``, or None."""
    return _cause[-1] if _cause else None


class RollbackRequest(Exception):
    """Raised inside fit to restart from the last good checkpoint, skipping the offending data."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(f"step {step}: {reason}")
        self.step = step
        self.reason = reason


class Preemption(L.Callback):
    def __init__(self, ckpt_dir: Path, interval: int) -> None:
        self.ckpt_dir = ckpt_dir
        self.interval = interval
        self.requested: str | None = None
        self._last_step = 0
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Route SIGTERM (and SIGUSR1 outside SLURM) to a flag checked at the next step boundary."""
        sigs = [signal.SIGTERM]
        under_slurm = bool(os.environ.get("SLURM_JOB_ID"))
        if not under_slurm and hasattr(signal, "SIGUSR1"):
            sigs.append(signal.SIGUSR1)
        for sig in sigs:
            previous = signal.signal(sig, self._handler)
            self._previous.setdefault(sig, previous)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = signal.Signals(signum).name

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_step = trainer.global_step
        # Lightning has registered its own SIGTERM handler by now (it raises and exits with code 1 at the next
        # batch): ours replaces it for the fit, and Lightning's teardown restores the handlers from before.
        self.install()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.uninstall()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        stepped = trainer.global_step != self._last_step  # an optimizer-step boundary (not mid-accumulation)
        self._last_step = trainer.global_step
        if not stepped:
            return
        signalled = self.requested is not None
        if trainer.world_size > 1:
            # Ranks must agree before the collective save; checked at the logging interval (a host sync).
            if trainer.global_step % self.interval:
                return
            if not trainer.strategy.reduce_boolean_decision(signalled, all=False):
                return
            self.requested = self.requested or "SIGTERM"
        elif not signalled:
            return
        _cause.append("signal" if signalled else "peer")
        if trainer.is_global_zero:
            print(f"{self.requested} received: saving a checkpoint at step {trainer.global_step} and stopping",
                  flush=True)
        trainer.save_checkpoint(self.ckpt_dir / "last.ckpt", weights_only=False)
        pl_module.preempted = self.requested  # type: ignore[attr-defined]
        trainer.should_stop = True
        self.requested = None


class SpikeGuard(L.Callback):
    """Request a rollback after ``max_bad`` consecutive skipped steps (checked at the logging interval) or, when
    ``spike_factor`` is set, when a step's loss exceeds that multiple of its running mean (one sync per step).

    A step's loss is the mean of its micro-batch losses, averaged over the ranks (so every rank takes the same
    decision). Lightning hands ``on_train_batch_end`` the training_step loss already divided by
    ``accumulate_grad_batches``: it is multiplied back, so the running mean (saved in checkpoints) is the true
    loss whatever the accumulation, also when a run resumes with another world size and so another accumulation.
    """

    def __init__(self, max_bad: int, spike_factor: float | None, interval: int, warmup: int = 10,
                 decay: float = 0.9) -> None:
        self.max_bad = max_bad
        self.spike_factor = spike_factor
        self.interval = interval
        self.warmup = warmup  # steps before spike detection starts (early loss falls fast)
        self.decay = decay
        self.mean: float | None = None
        self.seen = 0
        self._last_step = -1
        self._window_sum: Any = None  # on-device sum of the true micro-batch losses of the step being accumulated
        self._window_count = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._last_step = trainer.global_step  # the first micro-batch of an accumulation is not a step boundary
        self._window_sum, self._window_count = None, 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
                           ) -> None:
        if self.spike_factor is not None and outputs is not None:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            loss = loss.detach().float() * trainer.accumulate_grad_batches  # undo Lightning's division (no sync)
            self._window_sum = loss if self._window_sum is None else self._window_sum + loss
            self._window_count += 1
        step = trainer.global_step
        if step == self._last_step:
            return  # still accumulating
        self._last_step = step
        consecutive = pl_module._consecutive_bad
        if consecutive is not None and (self.spike_factor is not None or step % self.interval == 0):
            if consecutive.item() >= self.max_bad:
                raise RollbackRequest(step, f"{int(consecutive.item())} consecutive non-finite steps")
        if self.spike_factor is None or self._window_sum is None:
            return
        step_loss = self._window_sum / self._window_count
        self._window_sum, self._window_count = None, 0
        if trainer.world_size > 1:
            step_loss = trainer.strategy.reduce(step_loss, reduce_op="mean")
        loss = float(step_loss)
        if loss != loss:  # NaN: counted as a skipped step by the module
            return
        self.seen += 1
        if self.mean is not None and self.seen > self.warmup and loss > self.spike_factor * self.mean:
            raise RollbackRequest(step, f"loss {loss:.4f} > {self.spike_factor} x running mean {self.mean:.4f}")
        self.mean = loss if self.mean is None else self.decay * self.mean + (1 - self.decay) * loss

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean, self.seen = state.get("mean"), state.get("seen", 0)
