"""Lightning loggers: CSV always (metrics.csv in the run dir), TensorBoard by default, W&B opt-in."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..config.schema import Config


def wandb_mode(mode: str) -> str:
    """auto: online when an API key is configured (env or netrc), else offline (no network, no hang)."""
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path.home() / ".netrc"
    if netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"):
        return "online"
    return "offline"


def build_loggers(cfg: Config, run_dir: Path, run_name: str) -> list[Any]:
    from .csv_logger import ResumableCSVLogger

    loggers: list[Any] = [ResumableCSVLogger(save_dir=str(run_dir), name="", version="", flush_logs_every_n_steps=50)]
    if cfg.logging.tensorboard:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="",
                                         default_hp_metric=False))
    if cfg.logging.wandb.enabled:
        from lightning.pytorch.loggers import WandbLogger

        w = cfg.logging.wandb
        mode = wandb_mode(w.mode)
        os.environ.setdefault("WANDB_SILENT", "true")
        loggers.append(WandbLogger(
            name=run_name, save_dir=str(run_dir), project=w.project, entity=w.entity, tags=list(w.tags) or None,
            offline=(mode == "offline"), mode=mode, settings=_wandb_settings(),
        ))
    return loggers


def _wandb_settings() -> Any:
    import wandb

    # No network probes at start when offline; never block the run on a slow service.
    return wandb.Settings(init_timeout=60, x_disable_stats=False)
