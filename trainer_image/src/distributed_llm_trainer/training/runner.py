"""One training run: parse the command line, build data/model/trainer, fit, export, summarize."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import dump_config, load_config
from ..config.schema import Config
from ..errors import ArgParser, UserError


def build_parser(default_config: str | None) -> argparse.ArgumentParser:
    p = ArgParser(prog="run_training.py", description="Train a language model from a YAML config.")
    p.add_argument("--config", default=default_config, help="YAML config (default: config/default.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. training.max_steps=50 model.dropout=0.1")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="RUN_DIR|auto",
                   help="continue a run: its directory, or auto (newest run of this config with a checkpoint)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory of the same name")
    return p


def is_global_zero() -> bool:
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var):
            return int(os.environ[var]) == 0
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0


def quiet_lightning() -> None:
    """Keep the console to our own lines: Lightning's info banners and known-harmless warnings off."""
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "lightning.pytorch.utilities.rank_zero",
                 "lightning.fabric.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.distributed", "lightning.pytorch.utilities.distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass
    for pattern in (".*set_vital.*", ".*LeafSpec.*", ".*does not have many workers.*", ".*Experiment logs directory.*",
                    ".*checkpoint directory .* exists and is not empty.*", ".*tensorboardX.*", ".*sync_dist=True.*",
                    ".*Detected an existing checkpoint.*", ".*isinstance.treespec, LeafSpec.*"):
        warnings.filterwarnings("ignore", message=pattern)


def check_port_free(cfg: Config) -> None:
    """A busy MASTER_PORT fails late and obscurely inside torch.distributed: catch it up front (rank 0)."""
    import socket

    from .strategy import world_size

    port = os.environ.get("MASTER_PORT")
    if not port or world_size(cfg) <= 1 or os.environ.get("TORCHELASTIC_RUN_ID") or not is_global_zero():
        return
    if os.environ.get("LOCAL_RANK"):  # a spawned rank: rank 0 holds the port already
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((os.environ.get("MASTER_ADDR", "127.0.0.1"), int(port)))
        except OSError:
            raise UserError("MASTER_PORT", f"port {port} is already in use; set MASTER_PORT to a free port or "
                                           "unset it to let the launcher pick one") from None


def train(cfg: Config, config_path: str | None, resume: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Run training end to end; returns the summary (rank 0) or {} (other ranks)."""
    from .session import Session

    quiet_lightning()
    check_port_free(cfg)
    return Session(cfg, config_path, resume, overwrite).run()


def main(argv: list[str] | None = None, default_config: str | None = None,
         on_summary: Callable[[dict[str, Any]], None] | None = None) -> int:
    """The command line; ``on_summary`` receives rank 0's summary (the pod entry point reports it to Kubernetes)."""
    args = build_parser(default_config).parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        sys.stdout.write(dump_config(cfg))
        return 0
    try:
        summary = train(cfg, args.config, resume=args.resume, overwrite=args.overwrite)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            raise UserError(e.filename or "run.output_dir", f"{e.strerror}; free space or choose a writable "
                            "run.output_dir, then continue with --resume (the last complete checkpoint is intact)"
                            ) from None
        raise
    if on_summary is not None and summary:
        on_summary(summary)
    return 0


def repo_default_config() -> str | None:
    here = Path(__file__).resolve().parents[3] / "config" / "default.yaml"
    return str(here) if here.is_file() else None
