"""Checkpoint files: atomic writes with a checksum, safe loading (weights_only), newest-valid lookup."""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..utils.fs import atomic_write_stream, atomic_write_text

STEP_PATTERN = re.compile(r"step-(\d+)\.ckpt$")
# told each file save's duration in seconds and the step it holds (metrics)
SAVE_OBSERVERS: list[Callable[[float, int | None], None]] = []


class CorruptCheckpoint(Exception):
    """A checkpoint file whose bytes do not match its checksum or that torch cannot read."""


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


class _HashingWriter:
    """A write-only file object that feeds every byte to a hash on its way to the real file."""

    def __init__(self, f: BinaryIO, digest: Any) -> None:
        self._f, self._digest = f, digest

    def write(self, data: Any) -> int:
        self._digest.update(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temp file, fsync, rename; a checksum sidecar detects truncation; load with weights_only=True."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        path = Path(path)
        digest = hashlib.sha256()
        started = time.perf_counter()

        def write(f: BinaryIO) -> None:  # stream to the temp file, hashing on the way (no in-memory copy)
            torch.save(checkpoint, _HashingWriter(f, digest))

        # Checksum renamed into place first: a kill between the two renames leaves the old ckpt with a mismatching
        # sum, which the loader then skips in favour of the previous checkpoint (never a silently trusted half state).
        atomic_write_stream(path, write, lambda: atomic_write_text(_checksum_path(path), digest.hexdigest() + "\n"))
        for observe in SAVE_OBSERVERS:
            observe(time.perf_counter() - started, checkpoint.get("global_step"))

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint_file(Path(path), map_location=map_location or "cpu")

    def remove_checkpoint(self, path: Any) -> None:
        Path(path).unlink(missing_ok=True)
        _checksum_path(Path(path)).unlink(missing_ok=True)


def verify_checkpoint(path: Path) -> None:
    """Raise CorruptCheckpoint unless the file matches its checksum sidecar."""
    path = path.resolve()  # last.ckpt may be a link to the newest step file; the target's sidecar counts
    if path.is_dir():  # distributed (sharded) checkpoint: torch.distributed.checkpoint writes .metadata last
        if not (path / ".metadata").is_file():
            raise CorruptCheckpoint(f"{path}: sharded checkpoint has no .metadata (interrupted save)")
        return
    sidecar = _checksum_path(path)
    if not path.is_file():
        raise CorruptCheckpoint(f"{path}: missing")
    if not sidecar.is_file():
        raise CorruptCheckpoint(f"{path}: no checksum file (interrupted save)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sidecar.read_text().strip():
        raise CorruptCheckpoint(f"{path}: checksum mismatch (truncated or corrupted)")


def load_checkpoint_file(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Verified, pickle-free load (tensors and plain containers only)."""
    path = path.resolve()
    verify_checkpoint(path)
    try:
        if path.is_dir():  # sharded (FSDP2): tensors live in DCP shards, the rest in Lightning's meta.pt
            return torch.load(path / "meta.pt", map_location=map_location, weights_only=True)
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for bad archives / forbidden globals
        raise CorruptCheckpoint(f"{path}: cannot be read safely ({type(e).__name__}: {str(e)[:200]})") from None


def checkpoint_candidates(ckpt_dir: Path) -> list[Path]:
    """Resume candidates, newest first: by modification time, 'last' before a periodic one of the same time."""
    if not ckpt_dir.is_dir():
        return sorted(ckpt_dir.parent.glob("hpc_ckpt_*.ckpt"), key=lambda p: os.stat(p).st_mtime_ns, reverse=True)
    found = [p for p in ckpt_dir.iterdir() if p.name.endswith(".ckpt") and not p.name.startswith(".")]
    # Lightning's SLURM auto-requeue handler saves hpc_ckpt_N.ckpt in the run directory before a requeue.
    found += [p for p in ckpt_dir.parent.glob("hpc_ckpt_*.ckpt")]
    return sorted(found, key=lambda p: (os.stat(p).st_mtime_ns, p.name == "last.ckpt"), reverse=True)


def newest_valid_checkpoint(ckpt_dir: Path, warn: Any = print) -> Path | None:
    """The newest checkpoint that verifies; corrupted ones are reported and skipped."""
    for path in checkpoint_candidates(ckpt_dir):
        try:
            verify_checkpoint(path)
            return path
        except CorruptCheckpoint as e:
            warn(f"warning: skipping checkpoint: {e}")
    return None


def load_newest(ckpt_dir: Path, start: Path | None = None, warn: Any = print) -> tuple[Path, dict[str, Any]] | None:
    """Newest checkpoint (from ``start`` on) that verifies AND loads pickle-free; bad ones are reported, skipped."""
    candidates = checkpoint_candidates(ckpt_dir)
    if start is not None and start in candidates:
        candidates = candidates[candidates.index(start):]
    for path in candidates:
        try:
            return path, load_checkpoint_file(path)
        except CorruptCheckpoint as e:
            warn(f"warning: skipping checkpoint: {e}")
    return None
