"""Assemble the Lightning Trainer from the config: precision, strategy, loggers, checkpoint callbacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from ..config.schema import Config
from ..errors import UserError
from .budget import Budget, val_batches_per_rank
from .checkpoint_io import AtomicCheckpointIO
from .strategy import build_strategy


def cuda_usable(cfg: Config) -> bool:
    return cfg.distributed.accelerator != "cpu" and torch.cuda.is_available()


def resolve_accelerator(cfg: Config) -> str:
    if cfg.distributed.accelerator == "gpu" and not torch.cuda.is_available():
        raise UserError("distributed.accelerator", "gpu requested but no CUDA GPU is visible; use auto or cpu")
    return "gpu" if cuda_usable(cfg) else "cpu"


def resolve_precision(cfg: Config) -> str:
    """auto: bf16-mixed on GPUs with bf16, else 32-true. bf16/16 without a GPU is a config error."""
    p = cfg.training.precision
    cuda = cuda_usable(cfg)
    if p == "auto":
        return "bf16-mixed" if cuda and torch.cuda.is_bf16_supported() else "32-true"
    if p == "32":
        return "32-true"
    if p.startswith("bf16") and not (cuda and torch.cuda.is_bf16_supported()):
        raise UserError("training.precision", f"{p} needs a GPU with bf16 support and none is visible; use auto or 32")
    if p.startswith("16") and not cuda:
        raise UserError("training.precision", f"{p} needs a CUDA GPU and none is visible; use auto or 32")
    return p


class FinalValidation(L.Callback):
    """Ask the loop to stop at the last step, which makes Lightning run one more validation there."""

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.max_steps and trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True


class StepCheckpoint(ModelCheckpoint):
    """Lightning's periodic checkpoint, without a second save of the step a run resumed at.

    ModelCheckpoint does not restore which step it saved last: a run resumed at step 20 (a multiple of
    ``every_n_train_steps``) with accumulation > 1 saved step 20 again after its first micro-batch, a checkpoint
    in the middle of an accumulation window whose resume then skipped that micro-batch's windows.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_global_step_saved = trainer.global_step  # restored from a checkpoint of this very step


def checkpoint_interval(cfg: Config) -> int:
    """Optimizer steps between periodic checkpoints: checkpoint.every_n_steps, else training.eval_interval."""
    return cfg.checkpoint.every_n_steps or cfg.training.eval_interval


def checkpoint_callbacks(cfg: Config, ckpt_dir: Path) -> list[L.Callback]:
    every = checkpoint_interval(cfg)
    periodic = StepCheckpoint(
        dirpath=ckpt_dir,
        filename="step-{step:08d}",
        auto_insert_metric_name=False,
        every_n_train_steps=every,
        save_top_k=cfg.checkpoint.keep_last,
        monitor="step",
        mode="max",
        save_last="link",  # last.ckpt links to the newest step file instead of writing it twice
        save_on_train_epoch_end=False,
    )
    callbacks: list[L.Callback] = [periodic]
    if cfg.checkpoint.save_best:
        callbacks.append(ModelCheckpoint(
            dirpath=ckpt_dir, filename="best", auto_insert_metric_name=False, monitor="val/loss", mode="min",
            save_top_k=1, enable_version_counter=False, save_on_train_epoch_end=False,
        ))
    if cfg.training.early_stop_patience:  # its counters are saved in checkpoints, so a resume continues them
        callbacks.append(EarlyStopping(monitor="val/loss", mode="min", patience=cfg.training.early_stop_patience,
                                       check_on_train_epoch_end=False, strict=False))
    return callbacks


def stopped_early(trainer: L.Trainer) -> bool:
    """True when the EarlyStopping callback ended the run (before max_steps)."""
    es = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)  # type: ignore[attr-defined]
    return es is not None and es.wait_count >= es.patience


def build_trainer(cfg: Config, run_dir: Path, budget: Budget, callbacks: list[L.Callback],
                  loggers: list[Any], enable_progress_bar: bool = False) -> L.Trainer:
    accelerator = resolve_accelerator(cfg)
    precision = resolve_precision(cfg)
    strategy = build_strategy(cfg, accelerator, precision, budget.accumulation)
    # DeepSpeed writes its own sharded checkpoint folders; everything else goes through our atomic writer.
    plugins = None if cfg.distributed.strategy == "deepspeed" else [AtomicCheckpointIO()]
    return L.Trainer(
        accelerator=accelerator,
        devices=cfg.distributed.devices,
        num_nodes=cfg.distributed.num_nodes,
        strategy=strategy,
        precision=precision,  # type: ignore[arg-type]
        plugins=plugins,
        max_steps=budget.max_steps,
        max_epochs=-1,
        accumulate_grad_batches=budget.accumulation,
        val_check_interval=cfg.training.eval_interval * budget.accumulation,
        check_val_every_n_epoch=None,
        limit_val_batches=val_batches_per_rank(cfg.training.eval_steps, budget.world_size),
        num_sanity_val_steps=0,
        log_every_n_steps=cfg.logging.interval,
        use_distributed_sampler=False,  # our sampler shards and resumes exactly
        enable_progress_bar=enable_progress_bar,
        enable_model_summary=False,
        default_root_dir=str(run_dir),
        deterministic=cfg.run.deterministic or None,
        benchmark=False,
        logger=loggers or False,
        callbacks=[*checkpoint_callbacks(cfg, run_dir / "checkpoints"), FinalValidation(), *callbacks],
    )
