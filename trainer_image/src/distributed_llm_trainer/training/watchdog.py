"""When one locally spawned rank dies, end the job at once with a message naming it (no hang until timeout).

Rank 0 watches the ranks Lightning spawned; each spawned rank watches rank 0 (its parent). Under torchrun
and SLURM the launcher's own agent does this. Collectives also time out after ``distributed.timeout_s``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

import lightning as L

POLL_S = 0.5


def _describe(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def _die(message: str) -> None:
    print(f"error: distributed: {message}", file=sys.stderr, flush=True)
    os._exit(1)


class RankWatchdog(L.Callback):
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.world_size <= 1 or self._thread is not None:
            return
        launcher = getattr(trainer.strategy, "launcher", None)
        procs = getattr(launcher, "procs", None)
        if trainer.global_rank == 0 and procs:
            target: Any = self._watch_children
            args: tuple = (procs, trainer.local_rank)
        elif os.environ.get("DLT_RUN_DIR") and trainer.local_rank > 0 and not os.environ.get("TORCHELASTIC_RUN_ID"):
            target, args = self._watch_parent, (os.getppid(), trainer.global_rank)
        else:
            return
        self._thread = threading.Thread(target=target, args=args, daemon=True, name="rank-watchdog")
        self._thread.start()

    def _dead_child(self, procs: list, first_rank: int) -> str | None:
        for i, proc in enumerate(procs):
            code = proc.poll()
            if code not in (None, 0):
                for other in procs:
                    if other.poll() is None:
                        other.kill()
                return (f"rank {first_rank + i + 1} (pid {proc.pid}) died with {_describe(code)}; "
                        "stopped the other ranks. Resume the run with --resume")
        return None

    def _dead_parent(self, parent: int, rank: int) -> str | None:
        if os.getppid() != parent:
            return f"rank 0 (pid {parent}) died; stopping rank {rank}. Resume the run with --resume"
        return None

    def _watch_children(self, procs: list, first_rank: int) -> None:
        self._check = lambda: self._dead_child(procs, first_rank)
        while not self._stop.wait(POLL_S):
            message = self._check()
            if message:
                _die(message)

    def _watch_parent(self, parent: int, rank: int) -> None:
        self._check = lambda: self._dead_parent(parent, rank)
        while not self._stop.wait(POLL_S):
            message = self._check()
            if message:
                _die(message)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """A collective failed first (peer reset): name the dead rank instead of showing gloo/NCCL's traceback."""
        check = getattr(self, "_check", None)
        if check is None:
            return
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            message = check()
            if message:
                _die(message)
            time.sleep(0.1)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._stop.set()
        time.sleep(0)
