"""A training session: prepare data and the run dir, fit (rolling back on divergence), then finish on rank 0."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..config.schema import Config
from ..errors import UserError

MAX_ROLLBACKS = 3


class Session:
    def __init__(self, cfg: Config, config_path: str | None, resume: str | None, overwrite: bool) -> None:
        self.cfg, self.config_path, self.resume, self.overwrite = cfg, config_path, resume, overwrite
        self.started = time.time()
        self.created = False  # this session made the run directory (removed again if set-up fails)
        from . import faults

        faults.reset()

    def _warn(self, msg: str) -> None:
        import sys

        print(msg, file=sys.stderr, flush=True)

    # ---- set-up ------------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        from ..data.pipeline import prepare_data
        from ..data.tokenizer import tokenizer_fingerprint
        from ..monitoring.console import Console
        from ..utils.seed import seed_everything
        from ..utils.threads import configure_threads, local_process_count
        from .checkpoint_io import load_newest
        from .module import CHECKPOINT_KEY
        from .run_dir import check_resume_compatible, create_run, resolve_run
        from .runner import is_global_zero
        from .trainer import resolve_accelerator, resolve_precision

        cfg = self.cfg
        configure_threads(local_process_count(cfg.distributed.devices, cfg.distributed.accelerator))
        self.rank0 = is_global_zero()
        resolve_accelerator(cfg)
        resolve_precision(cfg)
        from .speed import apply_tf32, check_speed_features

        check_speed_features(cfg)  # fp8: torchao and a GPU with compute capability >= 8.9
        apply_tf32(cfg.training)
        self.run_paths = resolve_run(cfg, self.config_path, self.resume, self.overwrite, self.rank0)
        check_resume_compatible(cfg, self.run_paths)
        self.console = Console(enabled=self.rank0)
        seed_everything(cfg.run.seed, cfg.run.deterministic)

        self.data = prepare_data(cfg)
        self.fingerprint = tokenizer_fingerprint(self.data.tokenizer)
        if self.run_paths.resume_from is not None:
            found = load_newest(self.run_paths.checkpoints, self.run_paths.resume_from, warn=self._warn)
            if found is None:
                raise UserError("--resume", f"no checkpoint in {self.run_paths.checkpoints} can be loaded safely; "
                                            "start a new run")
            self.run_paths.resume_from = found[0]
            saved = found[1].get(CHECKPOINT_KEY, {})
            if saved.get("tokenizer_fingerprint") not in (None, "", self.fingerprint):
                raise UserError("tokenizer", f"differs from the one the run in {self.run_paths.root} was trained with; "
                                             "resume with the same tokenizer settings and data, or start a new run")
            self._keep_global_batch(found[1])
        # Everything that can still reject the config runs before the run directory is written.
        from ..data.datamodule import TokenDataModule
        from ..model.registry import resolve_model_args
        from .autobatch import resolve_batch_size
        from .budget import compute_budget
        from .strategy import world_size
        from .trainer import build_strategy

        build_strategy(cfg, resolve_accelerator(cfg), resolve_precision(cfg))
        resolve_batch_size(cfg, len(self.data.tokenizer), world_size(cfg), resolve_accelerator(cfg),
                           resolve_precision(cfg), self.run_paths.root if self.run_paths.resume_from else None,
                           self.console.note)
        compute_budget(cfg, world_size(cfg), TokenDataModule(cfg, self.data).train_batches_per_rank(world_size(cfg)))
        resolve_model_args(cfg.model, len(self.data.tokenizer), cfg.data.seq_len)
        if self.rank0:
            self.created = not self.run_paths.root.exists()
            create_run(cfg, self.run_paths, self.overwrite)
            self.data.tokenizer.save_pretrained(str(self.run_paths.tokenizer))

    def _keep_global_batch(self, checkpoint: dict[str, Any]) -> None:
        """An unset global batch stays the one the run started with, whatever the world size is now (elastic)."""
        from .strategy import world_size

        t = self.cfg.training
        saved = checkpoint.get("hyper_parameters", {}).get("budget", {}).get("global_batch")
        if t.global_batch_size is not None or not saved:
            return
        world = world_size(self.cfg)
        if isinstance(t.batch_size, int) and saved % (t.batch_size * world):
            raise UserError("training.global_batch_size", f"unset, so the run keeps the global batch of {saved} it "
                            f"started with, which batch_size {t.batch_size} x {world} devices does not divide; resume "
                            "on a world size that divides it, or set training.batch_size to a divisor")
        t.global_batch_size = int(saved)

    def build(self, resume_from: Path | None) -> None:
        """Fresh module, datamodule, callbacks and Trainer (again after a rollback)."""
        from ..data.datamodule import TokenDataModule
        from ..monitoring import prometheus
        from ..monitoring.csv_logger import truncate_after
        from ..monitoring.loggers import build_loggers
        from ..monitoring.metrics import TrainMetrics
        from ..monitoring.samples import EvalSamples
        from ..monitoring.system import SystemMetrics
        from .budget import compute_budget
        from .checkpoint_io import SAVE_OBSERVERS, load_checkpoint_file
        from .faults import FaultInjector
        from .guards import Preemption, SpikeGuard
        from .module import LMModule
        from .strategy import world_size
        from .trainer import build_trainer

        cfg, run = self.cfg, self.run_paths
        self.world = world_size(cfg)
        self.dm = TokenDataModule(cfg, self.data)
        self.budget = compute_budget(cfg, self.world, self.dm.train_batches_per_rank(self.world))
        self.module = LMModule(cfg.model_dump(mode="json"), len(self.data.tokenizer), asdict(self.budget),
                               self.fingerprint)
        flops = self.module.model.flops_per_token(cfg.data.seq_len)
        self.metrics = TrainMetrics(cfg.logging.interval, self.budget.tokens_per_step, flops, self.world,
                                    cfg.logging.peak_flops)
        self.preemption = Preemption(run.checkpoints, cfg.logging.interval)
        callbacks: list[Any] = [self.metrics, self.preemption,
                                SpikeGuard(cfg.training.max_bad_steps, cfg.training.spike_factor, cfg.logging.interval),
                                *self.console.callbacks(cfg, self.budget)]
        from .watchdog import RankWatchdog

        callbacks.append(RankWatchdog())
        if cfg.logging.system_metrics:
            callbacks.append(SystemMetrics(cfg.logging.interval))
        if prometheus.enabled():  # under llmtj-worker serving the pod's metrics endpoint
            from .trainer import checkpoint_interval

            rank_metrics = prometheus.RankMetrics(self.metrics, cfg.logging.interval, cfg.model.name,
                                                  checkpoint_interval(cfg))
            callbacks.insert(1, rank_metrics)  # right after TrainMetrics, whose row it exports
            SAVE_OBSERVERS[:] = [rank_metrics.checkpoint_saved]
        self.samples = None
        if cfg.logging.sample_tokens > 0 and cfg.logging.sample_prompts:  # on every rank: FSDP generate is collective
            self.samples = EvalSamples(cfg.logging.sample_prompts, cfg.logging.sample_tokens, self.data.tokenizer,
                                       run_dir=run.root, seed=cfg.run.seed, tokens_per_step=self.budget.tokens_per_step)
            callbacks.append(self.samples)
        if FaultInjector.active():
            callbacks.append(FaultInjector())
        resume_step = int(load_checkpoint_file(resume_from).get("global_step", 0)) if resume_from else None
        if self.rank0 and resume_step is not None:
            truncate_after(run.root / "metrics.csv", resume_step)
        self.loggers = build_loggers(cfg, run.root, run.root.name, resume_step=resume_step) if self.rank0 else []
        self.trainer = build_trainer(cfg, run.root, self.budget, callbacks, self.loggers)

    # ---- the run -----------------------------------------------------------------------------------------------
    def fit(self) -> None:
        from .guards import RollbackRequest

        resume_from = self.run_paths.resume_from
        skip_items = 0
        for attempt in range(MAX_ROLLBACKS + 1):
            self.build(resume_from)
            if attempt == 0:
                self.console.header(self.cfg, self.run_paths.root, self.budget, self.module, self.data,
                                    resumed=resume_from)
            if skip_items:
                self.dm.skip_after_restore(skip_items)
            try:
                self.trainer.fit(self.module, datamodule=self.dm,
                                 ckpt_path=str(resume_from) if resume_from else None, weights_only=True)
                return
            except RollbackRequest as req:
                resume_from, skip_items = self._rollback_target(req)
            finally:
                self.preemption.uninstall()
        raise UserError("training", f"the loss kept diverging after {MAX_ROLLBACKS} rollbacks; lower "
                                    "training.learning_rate or raise training.warmup_steps")

    def _rollback_target(self, req: Any) -> tuple[Path, int]:
        """Newest periodic checkpoint before the bad step, and how many samples to skip past the bad data."""
        from .checkpoint_io import STEP_PATTERN, verify_checkpoint

        good: list[tuple[int, Path]] = []
        for p in self.run_paths.checkpoints.glob("step-*.ckpt"):
            m = STEP_PATTERN.search(p.name)
            if m and int(m.group(1)) < req.step:
                try:
                    verify_checkpoint(p)
                    good.append((int(m.group(1)), p))
                except Exception:
                    continue
        if not good:
            raise UserError("training", f"{req}; no checkpoint before step {req.step} to roll back to; lower "
                                        "training.learning_rate or save checkpoints more often")
        step, path = max(good)
        # Skip every sample from the checkpoint up to and including the bad step (PaLM-style batch skipping).
        skip = (req.step - step) * self.budget.micro_batch * self.budget.accumulation
        self.console.print(f"[yellow]rollback[/yellow]: {req}; restarting from step {step} ({path.name}) and "
                           f"skipping {skip} samples per rank of the offending data")
        if self.rank0:
            with open(self.run_paths.root / "rollbacks.jsonl", "a") as f:
                f.write(json.dumps({"bad_step": req.step, "reason": req.reason, "restart_step": step,
                                    "skipped_samples_per_rank": skip, "time": time.time()}) + "\n")
        return path, skip

    def finish(self) -> dict[str, Any]:
        """The end of the run, with SIGTERM held: the run is stopping already, so a SIGTERM now (a peer's pod
        deleted a moment after ours, once the group had agreed to stop) only marks it. Left to the default handler
        (Lightning's teardown restored it when fit returned), it would kill this rank between its last collective
        and rank 0's summary, and the peers with it."""
        from .faults import finish_pause

        self.preemption.install()
        try:
            finish_pause()
            return self._finish()
        finally:
            self.preemption.uninstall()

    def _finish(self) -> dict[str, Any]:
        from .finish import best_checkpoint, export, full_model, leave_process_group, sample_text, write_summary
        from .trainer import stopped_early

        cfg, trainer, module, run = self.cfg, self.trainer, self.module, self.run_paths
        trainer.save_checkpoint(run.checkpoints / "last.ckpt", weights_only=False)  # collective when sharded
        model = full_model(module)  # collective under FSDP2
        from .fsdp import fsdp_layout

        layout = fsdp_layout(module.model)  # the mesh and offload FSDP2 really ran with (read from the parameters)
        leave_process_group(trainer)  # the last collective: rank 0's summary and export below are local
        if model is None:
            return {}
        preempted = getattr(module, "preempted", None)
        extra: dict[str, Any] = {
            "stop_reason": preempted or ("early_stop" if stopped_early(trainer) else self.budget.stop_reason),
            "world_size": self.world, "global_batch_size": self.budget.global_batch,
            "accumulation": self.budget.accumulation, "precision": str(trainer.precision),
            "data": self.data.stats, "resumed": run.resume_from is not None,
            "checkpoint": str(run.checkpoints / "last.ckpt"),
        }
        if layout is not None:
            extra["fsdp"] = layout
        latest = self.samples.latest() if self.samples is not None else None
        if latest:
            extra["samples"] = latest  # from the final evaluation
        elif cfg.logging.sample_tokens > 0:
            extra["samples"] = {p: sample_text(model, self.data.tokenizer, p, cfg.logging.sample_tokens, cfg.run.seed)
                                for p in cfg.logging.sample_prompts}
        summary_args = dict(module=module, model=model, trainer=trainer, history=self.metrics.history,
                            val_history=self.metrics.val_history, started=self.started,
                            train_time=self.metrics.total_train_time, tokens_per_step=self.budget.tokens_per_step,
                            first_step=self.metrics.first_step or 0)
        summary = write_summary(run.root / "summary.json", extra=extra, **summary_args)
        if cfg.checkpoint.export_hf and not preempted:
            extra.update(export(model, cfg, best_checkpoint(trainer), run.hf, self.data.tokenizer, self.data.val))
            summary = write_summary(run.root / "summary.json", extra=extra, **summary_args)
        self._close_monitoring(report=True)
        self.console.footer(summary, run.root)
        if self._wandb_hint:
            self.console.note(f"W&B logged offline; upload with: {self._wandb_hint}")
        return summary

    def _close_monitoring(self, report: bool) -> None:
        """Flush loggers (W&B sync hint) and write report.html; also after a crash, so the report exists."""
        from ..monitoring.loggers import finish_loggers
        from ..monitoring.report import write_report

        self._wandb_hint = finish_loggers(getattr(self, "loggers", []))
        if report and self.cfg.logging.report and getattr(self, "rank0", False):
            write_report(self.run_paths.root)

    def run(self) -> dict[str, Any]:
        from .run_dir import RESUME_ENV, RUN_DIR_ENV

        inherited = {k: os.environ.get(k) for k in (RUN_DIR_ENV, RESUME_ENV)}
        try:
            self.prepare()
        except UserError:
            if self.created:
                import shutil

                shutil.rmtree(self.run_paths.root, ignore_errors=True)
            raise
        try:
            self.fit()
            return self.finish()
        except BaseException:
            try:
                self._close_monitoring(report=True)
            except Exception as e:  # never hide the original error behind a report problem
                print(f"warning: could not write the report: {e}", flush=True)
            raise
        finally:  # the variables only pass this run's directory to the ranks it spawns
            for key, value in inherited.items():
                if value is None:
                    os.environ.pop(key, None)
