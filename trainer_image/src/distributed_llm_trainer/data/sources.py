"""Resolve ``data.path`` / ``data.hf_name`` / the default corpus into a ``Source``, and fingerprint it.

Nothing is read here beyond ``stat`` calls (and, for hub datasets, the builder's metadata), so the
fingerprint is cheap enough to compute on every start-up before looking at the token cache.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.schema import DataConfig
from ..errors import UserError
from .corpus import stdlib_files, stdlib_root

# File suffix -> datasets builder name. ``.txt`` files are read by us (one document per file).
FORMATS: dict[str, str] = {
    ".txt": "text",
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}


@dataclass(frozen=True)
class Source:
    """Where the documents come from. ``kind`` is ``files`` (local files, incl. the stdlib corpus) or ``hub``."""

    kind: str
    description: str
    files: tuple[Path, ...] = ()
    hf_name: str | None = None
    hf_config: str | None = None
    hf_split: str = "train"
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def files_by_format(self) -> dict[str, list[Path]]:
        """Files grouped by datasets builder name, each group in sorted path order."""
        out: dict[str, list[Path]] = {}
        for f in self.files:
            out.setdefault(FORMATS.get(f.suffix.lower(), "text"), []).append(f)  # stdlib .py: plain text
        return out


def _file_fingerprint(files: list[Path]) -> list[list[Any]]:
    # (path, size, mtime_ns): any edit, touch, rename or added file changes the cache key.
    out = []
    for f in files:
        st = f.stat()
        out.append([str(f), st.st_size, st.st_mtime_ns])
    return out


def _expand_path(raw: str) -> list[Path]:
    """A file, a directory (recursive) or a glob -> sorted supported files; UserError when none."""
    expanded = os.path.expanduser(raw)
    if glob.has_magic(expanded):
        matches = sorted(Path(p) for p in glob.glob(expanded, recursive=True))
        files = [p for p in matches if p.is_file() and p.suffix.lower() in FORMATS]
        if not files:
            more = f" ({len(matches)} match but none is {'/'.join(FORMATS)})" if matches else ""
            raise UserError("data.path", f"no files match '{raw}'{more}; check the glob")
        return [p.resolve() for p in files]
    path = Path(expanded)
    if not path.exists():
        raise UserError("data.path", f"'{raw}' does not exist; check the path (relative paths start at the cwd)")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FORMATS)
        if not files:
            raise UserError("data.path", f"directory '{raw}' holds no {'/'.join(FORMATS)} files; point at the data")
        return [p.resolve() for p in files]
    if path.suffix.lower() not in FORMATS:
        raise UserError("data.path", f"'{raw}' has unsupported type '{path.suffix}'; use {'/'.join(FORMATS)}")
    return [path.resolve()]


def _check_not_empty(files: list[Path], raw: str) -> None:
    empty = [f for f in files if f.stat().st_size == 0]
    if len(empty) == len(files):
        what = f"'{empty[0]}' is empty" if len(files) == 1 else f"all {len(files)} files matching '{raw}' are empty"
        raise UserError("data.path", f"{what}; point data.path at files with text")


def _hub_fingerprint(cfg: DataConfig) -> dict[str, Any]:
    """Name/config/split plus the builder hash (tracks the dataset revision); works offline from a warm cache."""
    from .loading import hub_error  # lazy: importing datasets costs ~1 s

    try:
        import datasets

        builder = datasets.load_dataset_builder(cfg.hf_name, cfg.hf_config)
        revision = getattr(builder, "hash", None)
    except Exception as e:  # noqa: BLE001 - any failure to reach or parse the dataset is the user's to fix
        raise hub_error(cfg, e) from None
    return {"hf_name": cfg.hf_name, "hf_config": cfg.hf_config, "hf_split": cfg.hf_split, "revision": revision}


def resolve_source(cfg: DataConfig) -> Source:
    """Validate the configured source and fingerprint it (raises UserError for bad paths)."""
    if cfg.hf_name:
        name = f"{cfg.hf_name}" + (f"/{cfg.hf_config}" if cfg.hf_config else "") + f" [{cfg.hf_split}]"
        fp = {"kind": "hub"} if cfg.streaming else {"kind": "hub", **_hub_fingerprint(cfg)}
        if cfg.streaming:
            fp.update(hf_name=cfg.hf_name, hf_config=cfg.hf_config, hf_split=cfg.hf_split)
        return Source("hub", name, (), cfg.hf_name, cfg.hf_config, cfg.hf_split, fp)
    if cfg.path:
        files = _expand_path(cfg.path)
        _check_not_empty(files, cfg.path)
        return Source("files", cfg.path, tuple(files), fingerprint={"kind": "files", "files": _file_fingerprint(files)})
    files = stdlib_files()
    fp = {"kind": "stdlib", "root": str(stdlib_root()), "files": _file_fingerprint(files)}
    return Source("files", f"python stdlib ({stdlib_root()})", tuple(files), fingerprint=fp)
