"""Token cache on disk: content-addressed entries, a file lock per key, atomic publication.

Layout: ``<root>/<key>/`` holds ``meta.json``, ``train.bin``, ``val.bin``, ``train_docs.npy``,
``val_docs.npy`` and ``tokenizer/``. An entry is built in ``<root>/.tmp-<key>-<random>/`` and renamed into
place in one step, so a reader sees either nothing or a complete entry; a failed build removes its temp
folder, and a crashed one leaves only ``.tmp-*``/``.work-*`` folders that nothing trusts (cleaned by the next
build of the same key).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..config.schema import Config

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the entry layout or the tokenization changes
META = "meta.json"


def cache_root(cfg: Config) -> Path:
    """``data.cache_dir`` or ``<run.output_dir>/.cache/data``."""
    if cfg.data.cache_dir:
        return Path(cfg.data.cache_dir).expanduser()
    return Path(cfg.run.output_dir).expanduser() / ".cache" / "data"


def cache_key(parts: dict[str, Any]) -> str:
    """Short stable hash of everything that decides the tokens (JSON with sorted keys)."""
    blob = json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:20]


def is_complete(entry: Path) -> bool:
    """An entry exists only after its atomic rename, and meta.json is written before that."""
    return (entry / META).is_file()


@contextmanager
def locked(root: Path, key: str) -> Iterator[None]:
    """Exclusive lock for one key across processes (ranks) on this file system; waits for the holder."""
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / f"{key}.lock"))
    try:
        lock.acquire(timeout=1)
    except Timeout:
        log.info("waiting for another process to prepare the token cache %s", key)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def remove_stale(root: Path, key: str) -> None:
    """Delete temp/work folders of ``key`` (call under its lock: they belong to a process that died mid-build)."""
    for pattern in (f".tmp-{key}-*", f".work-{key}-*"):
        for tmp in root.glob(pattern):
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_build(root: Path, key: str, build: Callable[[Path], None]) -> Path:
    """Run ``build(tmp_folder)`` and publish it as ``<root>/<key>``; on any error leave nothing behind."""
    entry = root / key
    tmp = root / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        build(tmp)
        if not is_complete(tmp):
            raise RuntimeError(f"cache build for {key} wrote no {META}")
        if entry.exists():  # a stale, incomplete entry (cannot happen under the lock unless edited by hand)
            shutil.rmtree(entry)
        os.rename(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return entry


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """Write meta.json (last step of a build: its presence marks the entry complete)."""
    path = folder / META
    path.write_text(json.dumps(meta, indent=1, sort_keys=True, default=str), encoding="utf-8")


def read_meta(entry: Path) -> dict[str, Any]:
    """Parsed meta.json of a complete entry."""
    return json.loads((entry / META).read_text(encoding="utf-8"))


def touch(entry: Path) -> None:
    """Mark an entry as recently used (for manual clean-up by age)."""
    try:
        os.utime(entry, (time.time(), time.time()))
    except OSError:
        pass
