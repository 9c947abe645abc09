"""``prepare_data(cfg)``: tokenized train/val token streams and the tokenizer, from the cache or built once.

Safe to call from every rank at once: a file lock on the cache key lets the first process build while the
others wait, then all read the same published entry. Nothing is written to the entry unless the whole build
succeeded (see ``cache.py``).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerFast

from ..config.schema import Config
from ..errors import UserError
from .cache import atomic_build, cache_key, cache_root, is_complete, locked, read_meta, remove_stale, touch
from .geometry import check_windows
from .preprocess import preprocess_settings
from .sources import Source, resolve_source
from .tokenizer import check_vocab_size, load_tokenizer, tokenizer_settings

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """Everything the model and loaders need from the data side.

    ``train``/``val``: 1-D token ids (memmaps; uint16, or uint32 when ``len(tokenizer) >= 65536``), documents
    joined with EOS after each. ``train_offsets``/``val_offsets``: int64 (docs + 1,) document boundaries.
    """

    tokenizer: PreTrainedTokenizerFast
    train: np.ndarray
    val: np.ndarray
    stats: dict[str, Any]
    eos_id: int
    pad_id: int
    train_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    val_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    tokenizer_dir: Path | None = None
    streaming: bool = False  # train is empty: the loader tokenizes the source on the fly

    @property
    def vocab_size(self) -> int:
        """Rows the model's embedding needs (== ``len(tokenizer)``)."""
        return len(self.tokenizer)


def key_parts(cfg: Config, source: Source) -> dict[str, Any]:
    """Inputs of the cache key: source fingerprint, tokenizer, preprocessing, split settings and seed."""
    return {
        "source": source.fingerprint,
        "tokenizer": tokenizer_settings(cfg.tokenizer),
        "preprocess": preprocess_settings(cfg.data),
        "split": {"mode": cfg.data.split, "val_fraction": cfg.data.val_fraction, "seed": cfg.run.seed},
        "streaming": cfg.data.streaming,
    }


def _open_tokens(path: Path, dtype: str) -> np.ndarray:
    n = path.stat().st_size // np.dtype(dtype).itemsize
    if n == 0:
        return np.zeros(0, dtype=dtype)  # an empty file cannot be memory-mapped
    return np.memmap(path, dtype=dtype, mode="r", shape=(n,))


def load_entry(entry: Path) -> PreparedData:
    """Open a published cache entry (memmaps, no copies)."""
    meta = read_meta(entry)
    tokenizer = load_tokenizer(entry / "tokenizer", auto=meta.get("tokenizer_type") == "hf")
    stats = dict(meta["stats"])
    return PreparedData(
        tokenizer=tokenizer,
        train=_open_tokens(entry / "train.bin", meta["dtype"]),
        val=_open_tokens(entry / "val.bin", meta["dtype"]),
        stats=stats,
        eos_id=int(meta["eos_id"]),
        pad_id=int(meta["pad_id"]),
        train_offsets=np.load(entry / "train_docs.npy"),
        val_offsets=np.load(entry / "val_docs.npy"),
        tokenizer_dir=entry / "tokenizer",
        streaming=bool(meta.get("streaming", False)),
    )


def _build(cfg: Config, source: Source, root: Path, key: str) -> Path:
    # Lazy imports: they pull in datasets (~1 s), which a cache hit does not need.
    if cfg.data.streaming:
        from .stream_build import build_stream_entry

        return atomic_build(root, key, lambda out: build_stream_entry(cfg, source, out, key))
    from .build import build_entry

    workdir = Path(tempfile.mkdtemp(prefix=f".work-{key}-", dir=root))  # local Arrow files, deleted below
    try:
        return atomic_build(root, key, lambda out: build_entry(cfg, source, out, workdir, key))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def prepare_data(cfg: Config) -> PreparedData:
    """Tokenized data for ``cfg`` (builds the cache entry on the first call, then reuses it)."""
    t0 = time.perf_counter()
    check_vocab_size(cfg.tokenizer)
    source = resolve_source(cfg.data)
    key = cache_key(key_parts(cfg, source))
    root = cache_root(cfg)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(
            "data.cache_dir", f"cannot create the token cache at {root} ({e.strerror}); pick a writable folder"
        )
    entry = root / key
    hit = is_complete(entry)
    if not hit:
        with locked(root, key):
            hit = is_complete(entry)  # another rank may have built it while we waited
            if not hit:
                log.info("data: tokenizing %s into %s", source.description, entry)
                remove_stale(root, key)
                _build(cfg, source, root, key)
    touch(entry)
    prepared = load_entry(entry)
    s = prepared.stats
    if not prepared.streaming:
        check_windows(s["train_tokens"], s["val_tokens"], s["train_documents"], cfg.data)
    s.update(seconds=round(time.perf_counter() - t0, 3), cache_hit=hit, cache_key=key, cache_dir=str(entry))
    return prepared
