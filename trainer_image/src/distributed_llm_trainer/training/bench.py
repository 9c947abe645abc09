"""Benchmark harness: the real pipeline (Session: data loader, LMModule, Trainer, callbacks, loggers) against the
bare PyTorch loop of ``bare_loop.py`` on the same model, batches, optimizer, schedule and precision.

Each variant runs ``warmup + steps`` optimizer steps (``training.max_steps`` is set to that, for both); only the
last ``steps`` are timed, one time per optimizer step (CUDA events, so no host sync per step). Pipeline steps that
also ran a validation pass or wrote a checkpoint are left out of the timing (the bare loop does neither).
Runs go to a temporary output directory that is removed afterwards.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ..config.schema import Config
from ..errors import UserError
from ..monitoring.hardware import peak_flops_per_device, peak_memory_bytes
from .session import Session
from .steptime import StepClock, SyncCounter, summarize

VARIANTS = ("pipeline", "bare")


class StepTimer(L.Callback):
    """Marks each optimizer-step boundary on a StepClock and keeps each step's loss (on device, no sync)."""

    def __init__(self, sync_debug: bool = False) -> None:
        self.clock: StepClock | None = None
        self.losses: list[torch.Tensor] = []
        self.syncs = SyncCounter() if sync_debug else None  # CUDA: count host syncs per step
        self._step_loss: torch.Tensor | None = None
        self._last_step = 0
        self._last_end: float | None = None

    def _mark(self) -> None:
        assert self.clock is not None
        if self.syncs is not None:
            self.syncs.mark(first=not self.clock.marks)
        self.clock.mark()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.clock = StepClock(pl_module.device)
        self._last_step = trainer.global_step
        if self.syncs is not None:
            self.syncs.start()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.syncs is not None:
            self.syncs.stop()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.on_train_end(trainer, pl_module)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        assert self.clock is not None
        if not self.clock.marks:
            self._mark()  # the start of the first step
        elif self._last_end is not None:  # fetching this batch (and the loop's work between batches)
            self.clock.add_wait(time.perf_counter() - self._last_end)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        assert self.clock is not None
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs  # already / accumulation
        if loss is not None:
            self._step_loss = loss if self._step_loss is None else self._step_loss + loss
        if trainer.global_step != self._last_step:  # an optimizer step finished with this batch
            self._last_step = trainer.global_step
            self._mark()
            if self._step_loss is not None:
                self.losses.append(self._step_loss)
            self._step_loss = None
        self._last_end = time.perf_counter()

    def _interrupt(self) -> None:
        if self.clock is not None and self.clock.marks:
            self.clock.exclude_next()
        self._last_end = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._interrupt()

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self._interrupt()


class _BenchSession(Session):
    """The training session with a StepTimer added to its Trainer's callbacks."""

    sync_debug = False

    def build(self, resume_from: Path | None) -> None:
        super().build(resume_from)
        self.timer = StepTimer(self.sync_debug)
        self.trainer.callbacks.append(self.timer)  # type: ignore[attr-defined]


@dataclass
class VariantRun:
    name: str
    clock: StepClock
    losses: list[float]
    tokens_per_step: int
    flops_per_token: float
    peak_memory: int | None
    info: dict[str, Any] = field(default_factory=dict)
    syncs: list[int] | None = None  # host syncs per interval (pipeline with sync_debug on CUDA)


def bench_config(cfg: Config, steps: int, warmup: int, output_dir: Path, cache_dir: Path | None) -> Config:
    """``cfg`` for ``warmup + steps`` optimizer steps, written under ``output_dir``, no end-of-run extras."""
    cfg = cfg.model_copy(deep=True)
    cfg.run.output_dir = str(output_dir)
    if cache_dir is not None and cfg.data.cache_dir is None:
        cfg.data.cache_dir = str(cache_dir)
    t = cfg.training
    t.max_steps, t.max_epochs, t.max_tokens = warmup + steps, None, None
    cfg.checkpoint.export_hf = False
    return cfg


def _device(cfg: Config) -> torch.device:
    from .trainer import resolve_accelerator

    return torch.device("cuda", torch.cuda.current_device()) if resolve_accelerator(cfg) == "gpu" else \
        torch.device("cpu")


def _reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _prepared_session(cfg: Config, config_path: str | None, name: str) -> _BenchSession:
    from .strategy import world_size

    if world_size(cfg) > 1:
        raise UserError("distributed.devices", "the benchmark compares against a single-process loop; use 1 device")
    from .run_dir import RESUME_ENV, RUN_DIR_ENV

    for key in (RUN_DIR_ENV, RESUME_ENV):  # set by the previous variant's prepare (restored by _isolated)
        os.environ.pop(key, None)
    cfg.run.name = name
    session = _BenchSession(cfg, config_path, None, overwrite=True)
    session.prepare()
    return session


def run_pipeline(cfg: Config, config_path: str | None, name: str = "pipeline", sync_debug: bool = False
                 ) -> VariantRun:
    """The real pipeline through Session.prepare/build/fit (no finish: export and report are not per-step work)."""
    device = _device(cfg)
    _reset_memory(device)
    session = _prepared_session(cfg, config_path, name)
    session.sync_debug = sync_debug
    try:
        session.fit()
    finally:
        session._close_monitoring(report=False)
    timer = session.timer
    assert timer.clock is not None
    model = session.module.model
    run = VariantRun("pipeline", timer.clock, [float(x) for x in timer.losses], session.budget.tokens_per_step,
                     model.flops_per_token(cfg.data.seq_len), peak_memory_bytes(device),
                     {"precision": str(session.trainer.precision), "micro_batch": session.budget.micro_batch,
                      "accumulation": session.budget.accumulation},
                     timer.syncs.counts if timer.syncs is not None and timer.syncs.counts else None)
    del session, timer, model
    _reset_memory(device)
    return run


def run_bare_variant(cfg: Config, config_path: str | None, steps: int, warmup: int, name: str = "bare") -> VariantRun:
    """The bare loop over the data, threads, TF32 and batch size that Session.prepare sets up."""
    from ..data.datamodule import TokenDataModule
    from ..utils.seed import seed_everything
    from .bare_loop import run_bare
    from .budget import compute_budget
    from .trainer import resolve_precision

    device = _device(cfg)
    _reset_memory(device)
    session = _prepared_session(cfg, config_path, name)
    cfg = session.cfg
    data = session.data
    budget = compute_budget(cfg, 1, TokenDataModule(cfg, data).train_batches_per_rank(1))
    precision = resolve_precision(cfg)
    seed_everything(cfg.run.seed, cfg.run.deterministic)
    loop, clock, losses = run_bare(cfg, data, budget, device, precision, steps, warmup)
    run = VariantRun("bare", clock, [float(x) for x in losses], budget.tokens_per_step,
                     loop.model.flops_per_token(cfg.data.seq_len), peak_memory_bytes(device),
                     {"precision": precision, "micro_batch": budget.micro_batch, "accumulation": budget.accumulation})
    del loop, session
    _reset_memory(device)
    return run


def line(runs: list[VariantRun], cfg: Config, warmup: int, with_losses: bool) -> dict[str, Any]:
    """The JSON line of one variant, its timed steps pooled over rounds."""
    from .speed import describe

    device = _device(cfg)
    run = runs[0]
    times: list[float] = []
    waits: list[float] = []
    medians: list[float] = []
    for r in runs:
        t, w = r.clock.timed(warmup)
        times += t
        waits += w
        medians.append(statistics.median(t) if t else float("nan"))
    out = summarize(run.name, times, waits, run.tokens_per_step, run.flops_per_token,
                    cfg.logging.peak_flops or peak_flops_per_device(device), 1, max(r.peak_memory or 0 for r in runs),
                    peak_memory_kind="cuda_max_allocated" if device.type == "cuda" else "process_max_rss",
                    device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    threads=torch.get_num_threads(), rounds=len(runs), round_medians_s=medians,
                    seq_len=cfg.data.seq_len,
                    final_loss=run.losses[-1] if run.losses else None,
                    excluded_steps=sum(r.clock.excluded_count(warmup) for r in runs),
                    **run.info, **describe(cfg))
    if any(r.syncs is not None for r in runs):  # host syncs inside timed (non-excluded) steps
        counts = [c for r in runs for i, c in enumerate(r.syncs or []) if i >= warmup and i not in r.clock.excluded]
        out.update(host_syncs=sum(counts), host_sync_steps=sum(1 for c in counts if c))
    if with_losses:
        out["losses"] = run.losses
    return out


def ratio_line(pipe: dict[str, Any], bare: dict[str, Any]) -> dict[str, Any]:
    """pipeline/bare step time: of the pooled medians, and the median of the per-round ratios (each round's two
    variants run back to back, so on a host whose speed drifts this is the figure to quote)."""
    r = pipe["step_time_median_s"] / bare["step_time_median_s"]
    per_round = [p / b for p, b in zip(pipe["round_medians_s"], bare["round_medians_s"], strict=True)]
    return {"variant": "ratio", "step_time_ratio": r, "overhead_percent": 100.0 * (r - 1.0),
            "round_ratio_median": statistics.median(per_round), "round_ratios": per_round,
            "mean_step_time_ratio": pipe["step_time_mean_s"] / bare["step_time_mean_s"],
            "tokens_per_s_ratio": pipe["tokens_per_s"] / bare["tokens_per_s"]}


@contextlib.contextmanager
def _isolated() -> Any:
    """The run's console lines go to stderr (stdout carries only the JSON lines); the run-directory variables that
    Session.prepare sets for spawned ranks are restored afterwards (Session.run does the same)."""
    from .run_dir import RESUME_ENV, RUN_DIR_ENV

    saved = {k: os.environ.get(k) for k in (RUN_DIR_ENV, RESUME_ENV)}
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def benchmark(cfg: Config, config_path: str | None, steps: int, warmup: int, variants: tuple[str, ...] = VARIANTS,
              with_losses: bool = False, cache_dir: Path | None = None, rounds: int = 1, sync_debug: bool = False,
              ) -> tuple[list[dict[str, Any]], dict[str, list[VariantRun]]]:
    """Run the variants ``rounds`` times (order reversed every other round, so drift hits both alike); (JSON lines
    incl. the ratio when both ran, the raw runs by variant)."""
    if steps < 1 or warmup < 1 or rounds < 1:
        raise UserError("--steps/--warmup/--rounds", "need at least 1 timed step, 1 warm-up step and 1 round")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise UserError("--variants", f"unknown variant {unknown[0] if unknown else ''!r}; use {', '.join(VARIANTS)}")
    runs: dict[str, list[VariantRun]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="dlt-bench-") as tmp:
        bcfg = bench_config(cfg, steps, warmup, Path(tmp), cache_dir)
        with _isolated():
            for r in range(rounds):
                for v in variants if r % 2 == 0 else tuple(reversed(variants)):
                    name = f"{v}-{r}"
                    if v == "pipeline":
                        runs[v].append(run_pipeline(bcfg.model_copy(deep=True), config_path, name, sync_debug))
                    else:
                        runs[v].append(run_bare_variant(bcfg.model_copy(deep=True), config_path, steps, warmup, name))
    lines = [line(runs[v], bcfg, warmup, with_losses) for v in variants]
    if "pipeline" in runs and "bare" in runs:
        lines.append(ratio_line(lines[variants.index("pipeline")], lines[variants.index("bare")]))
    return lines, runs
