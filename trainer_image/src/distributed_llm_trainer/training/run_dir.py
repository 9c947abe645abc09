"""The run directory: naming, the no-silent-overwrite rule, --resume (a dir or auto), compatibility checks."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..config.loader import dump_config
from ..config.schema import Config
from ..errors import UserError
from ..utils.fs import atomic_write_text
from .checkpoint_io import newest_valid_checkpoint

RUN_DIR_ENV = "DLT_RUN_DIR"  # set by rank 0 so that ranks Lightning spawns use the same directory
RESUME_ENV = "DLT_RESUME_CKPT"

# Settings a resumed run must share with its checkpoint (anything else, e.g. max_steps, may change).
RESUME_LOCKED = {
    "model": ["name", "backend", "family", "hf_model_type", "hidden_size", "num_attention_heads",
              "num_key_value_heads", "num_layers", "intermediate_size", "tie_embeddings", "bias"],
    "tokenizer": ["type", "vocab_size", "name_or_path"],
    "data": ["seq_len", "path", "hf_name", "hf_config", "pack"],
}


@dataclass
class RunPaths:
    root: Path
    resume_from: Path | None  # checkpoint to resume from, or None for a fresh run

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def hf(self) -> Path:
        return self.root / "hf"


def default_name(config_path: str | None) -> str:
    stem = Path(config_path).stem if config_path else "run"
    job = os.environ.get("SLURM_JOB_ID") or os.environ.get("TORCHELASTIC_RUN_ID")
    if job and job != "none":  # every rank of a torchrun/SLURM job must agree on the name without talking
        return f"{stem}-{job}"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def _has_checkpoint(run: Path) -> bool:
    return (run / "checkpoints").is_dir() and any((run / "checkpoints").glob("*.ckpt"))


def _auto_candidates(output_dir: Path, stem: str, name: str | None) -> list[Path]:
    if not output_dir.is_dir():
        return []
    runs = [p for p in output_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if name:
        runs = [p for p in runs if p.name == name]
    else:
        runs = [p for p in runs if p.name.startswith(f"{stem}-")]
    runs = [p for p in runs if _has_checkpoint(p)]
    return sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)


def check_output_dir(output_dir: Path) -> None:
    """The nearest existing folder on the way to output_dir must be a writable directory."""
    probe = output_dir.resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError("run.output_dir", f"{output_dir} cannot be created or written ({probe} is not a writable "
                                          "folder); choose a writable run.output_dir")


def resolve_run(cfg: Config, config_path: str | None, resume: str | None, overwrite: bool,
                is_rank_zero: bool = True) -> RunPaths:
    """Pick the run directory and the checkpoint to resume from; never touches files (see ``create_run``)."""
    output_dir = Path(cfg.run.output_dir)
    check_output_dir(output_dir)
    if os.environ.get(RUN_DIR_ENV):  # a rank spawned by rank 0: same directory, same decision
        ckpt = os.environ.get(RESUME_ENV)
        return RunPaths(Path(os.environ[RUN_DIR_ENV]), Path(ckpt) if ckpt else None)
    if resume is not None and resume != "auto":
        root = Path(resume)
        if not root.is_dir():
            raise UserError("--resume", f"run directory not found: {root}; pass an existing run dir or 'auto'")
        ckpt = newest_valid_checkpoint(root / "checkpoints")
        if ckpt is None:
            raise UserError("--resume", f"{root} has no usable checkpoint; start a new run without --resume")
        return RunPaths(root, ckpt)
    stem = Path(config_path).stem if config_path else "run"
    if resume == "auto":
        for run in _auto_candidates(output_dir, stem, cfg.run.name):
            ckpt = newest_valid_checkpoint(run / "checkpoints")
            if ckpt is not None:
                return RunPaths(run, ckpt)
    root = output_dir / (cfg.run.name or default_name(config_path))
    if not _inside(root, output_dir):
        raise UserError("run.name", f"{root} escapes run.output_dir {output_dir}; use a plain name")
    if is_rank_zero and root.exists() and any(root.iterdir()) and not overwrite and resume != "auto":
        raise UserError(
            "run.name", f"run directory {root} already exists; pass --resume {root} to continue it, "
            "--overwrite to replace it, or choose another run.name",
        )
    return RunPaths(root, None)


def check_resume_compatible(cfg: Config, run: RunPaths) -> None:
    """Refuse to resume with a model/tokenizer/data shape that differs from the saved run's."""
    saved_path = run.root / "config.yaml"
    if run.resume_from is None or not saved_path.is_file():
        return
    saved = yaml.safe_load(saved_path.read_text()) or {}
    now = cfg.model_dump(mode="json")
    for section, keys in RESUME_LOCKED.items():
        for key in keys:
            old, new = saved.get(section, {}).get(key), now[section][key]
            if old != new:
                raise UserError(
                    f"{section}.{key}",
                    f"is {new!r} but the run being resumed ({run.root}) used {old!r}; resume with the same value "
                    "or start a new run",
                )


def create_run(cfg: Config, run: RunPaths, overwrite: bool) -> None:
    """Rank 0: make (or clear with --overwrite) the directory and write the resolved config."""
    if overwrite and run.resume_from is None and run.root.exists():
        shutil.rmtree(run.root)
    run.root.mkdir(parents=True, exist_ok=True)
    try:
        probe = run.root / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError("run.output_dir",
                        f"cannot write to {run.root} ({e.strerror}); choose a writable folder") from None
    atomic_write_text(run.root / "config.yaml", dump_config(cfg))
    os.environ[RUN_DIR_ENV] = str(run.root)
    if run.resume_from is not None:
        os.environ[RESUME_ENV] = str(run.resume_from)
