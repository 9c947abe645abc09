"""Prometheus metrics of one training rank, for its pod's endpoint (served by ``llmtj-worker``: endpoint.py).

A pod's ranks are separate processes: each writes its values in prometheus-client's multiprocess mode into the
folder named by ``PROMETHEUS_MULTIPROC_DIR``, which llmtj-worker sets for torchrun when it serves metrics
(``LLMTJ_METRICS_PORT``) and reads at every scrape. Without that folder this callback is not added.

Labels: job (the LLMTrainingJob), namespace, pod, rank (global rank in the current world; a re-formed world renumbers
them). Per-rank amounts (tokens, tokens/s) sum to the job's; job-wide values (step, loss, lr, world size) are the
same on every rank: take max() over ranks. Gauges count only live processes (``livemax``), so a rank that exited
leaves no stale value. Costs per step: a few shared-memory writes (microseconds); the rest at the logging interval.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import lightning as L

from .. import __version__
from .metrics import TrainMetrics, is_log_step

PREFIX = "llmtj_"
LABELS = ("job", "namespace", "pod", "rank")
# optimizer-step durations (s): from fast toy models to multi-second steps of large ones
STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, float("inf"))


def identity(env: Mapping[str, str]) -> dict[str, str]:
    """job, namespace and pod of this process, from what the operator sets (a run by hand: the run name, the host)."""
    return {"job": env.get("LLMTJ_RUN_NAME", "") or "local", "namespace": env.get("LLMTJ_NAMESPACE", ""),
            "pod": env.get("LLMTJ_POD_NAME", "") or os.uname().nodename}


def enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class _Metrics:
    """The metric objects; created once per process, after PROMETHEUS_MULTIPROC_DIR is known (import-time mode)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        def gauge(name: str, doc: str, labels: tuple[str, ...] = LABELS) -> Any:
            return Gauge(PREFIX + name, doc, labels, multiprocess_mode="livemax")

        self.step = gauge("step", "Optimizer steps done in the run.")
        self.train_loss = gauge("train_loss", "Training loss at the latest logging interval.")
        self.val_loss = gauge("validation_loss", "Validation loss at the latest evaluation.")
        self.lr = gauge("learning_rate", "Learning rate of the latest step.")
        self.tokens = Counter(PREFIX + "tokens", "Tokens this rank trained on (sum over ranks: the job's).", LABELS)
        self.tokens_per_s = gauge("tokens_per_second", "This rank's training throughput over the latest logging "
                                  "interval (sum over ranks: the job's).")
        self.mfu = gauge("mfu_ratio", "Model FLOPs utilization over the latest logging interval, 0-1.")
        self.step_time = Histogram(PREFIX + "step_duration_seconds", "Wall time of one optimizer step.", LABELS,
                                   buckets=STEP_BUCKETS)
        self.data_wait = gauge("data_wait_ratio", "Share of the latest logging interval spent waiting for data, 0-1.")
        self.ckpt_duration = gauge("checkpoint_save_duration_seconds", "Time the latest checkpoint save took.")
        self.ckpt_time = gauge("checkpoint_last_timestamp_seconds", "When the latest checkpoint was saved (Unix).")
        self.ckpt_step = gauge("checkpoint_step", "Step of the run's newest checkpoint: the one it resumed from (0: "
                               "none) until it saves the next.")
        self.ckpt_every = gauge("checkpoint_interval_steps", "Steps between two periodic checkpoints.")
        self.world = gauge("world_size", "Training processes in the current world.")
        self.restarts = gauge("restarts", "Restarts of the job so far: the operator's count when this pod was made "
                              "plus torchrun's restarts inside it.")
        self.info = gauge("trainer_info", "Always 1: the trainer's version and model.",
                          (*LABELS, "version", "model", "parameters"))


_metrics: _Metrics | None = None


def metrics() -> _Metrics:
    global _metrics
    if _metrics is None:
        _metrics = _Metrics()
    return _metrics


class RankMetrics(L.Callback):
    """Feeds this rank's metrics; placed after ``TrainMetrics``, whose logging-interval row it exports.

    The labelled children are looked up once per world (on_train_start): a step then costs three shared-memory writes.
    """

    def __init__(self, train: TrainMetrics, interval: int, model: str, checkpoint_every: int) -> None:
        self.train = train
        self.interval = interval
        self.model = model
        self.checkpoint_every = checkpoint_every
        self.m = metrics()
        self.labels: dict[str, str] = {}
        self._last_step = 0
        self._step_end: float | None = None
        self._tokens_per_step_rank = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.labels = labels = {**identity(os.environ), "rank": str(trainer.global_rank)}
        m = self.m
        self._step, self._tokens, self._step_time = (m.step.labels(**labels), m.tokens.labels(**labels),
                                                     m.step_time.labels(**labels))
        self._row = [(m.train_loss.labels(**labels), "train/loss"), (m.lr.labels(**labels), "train/lr"),
                     (m.tokens_per_s.labels(**labels), "perf/tokens_per_s_per_device"),
                     (m.mfu.labels(**labels), "perf/mfu"), (m.data_wait.labels(**labels), "perf/data_wait_share")]
        self._last_step = trainer.global_step
        self._step_end = None
        self._tokens_per_step_rank = self.train.tokens_per_step / max(trainer.world_size, 1)
        m.world.labels(**labels).set(trainer.world_size)
        self._step.set(trainer.global_step)
        m.ckpt_step.labels(**labels).set(trainer.global_step)  # resumed from there (0: a fresh run, none yet)
        m.ckpt_every.labels(**labels).set(self.checkpoint_every)
        restarts = int(os.environ.get("LLMTJ_RESTART_COUNT", "0") or 0)
        restarts += int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
        m.restarts.labels(**labels).set(restarts)
        params = getattr(getattr(pl_module, "model", None), "num_parameters", None)
        m.info.labels(**labels, version=__version__, model=self.model,
                      parameters=str(params() if callable(params) else "")).set(1)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._step_end = None  # an evaluation is not a step's time

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        val = trainer.callback_metrics.get("val/loss")
        if val is not None and not trainer.sanity_checking:
            self.m.val_loss.labels(**self.labels).set(float(val))
        self._step_end = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step == self._last_step:  # mid-accumulation
            return
        now = time.perf_counter()
        done, self._last_step = step - self._last_step, step
        if self._step_end is not None:
            self._step_time.observe((now - self._step_end) / done)
        self._step_end = now
        self._step.set(step)
        self._tokens.inc(self._tokens_per_step_rank * done)
        if is_log_step(step, self.interval, trainer.max_steps):
            row = self.train.history[-1] if self.train.history else {}
            if row.get("step") == step:
                for child, key in self._row:
                    if key in row:
                        child.set(row[key])

    def checkpoint_saved(self, seconds: float, step: int | None) -> None:
        """Called by the checkpoint writer (checkpoint_io.SAVE_OBSERVERS) on the rank that wrote the file."""
        if self.labels:
            self.m.ckpt_duration.labels(**self.labels).set(seconds)
            self.m.ckpt_time.labels(**self.labels).set(time.time())
            if step is not None:
                self.m.ckpt_step.labels(**self.labels).set(step)
