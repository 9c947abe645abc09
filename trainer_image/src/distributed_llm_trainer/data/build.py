"""Build one token-cache entry: load -> preprocess -> split -> tokenizer -> tokenize -> write.

Runs inside ``cache.atomic_build`` (``out`` is the temp folder); every failure raises and leaves nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from ..config.schema import Config
from ..errors import UserError
from .cache import write_meta
from .encode import Encoder
from .geometry import check_windows
from .loading import load_documents
from .preprocess import Preprocessor
from .sources import Source
from .split import choose_split, tail_cut, val_document_mask
from .tokenizer import build_byte, build_char, load_pretrained, save_tokenizer, tokenizer_fingerprint, train_bpe
from .writer import SplitWriter, doc_offsets, save_offsets, split_tail, token_dtype

log = logging.getLogger(__name__)

_BATCH = 1000  # documents per map batch: big enough for the parallel Rust encoder, small in memory


def _source_key(source: Source) -> str:
    return "data.hf_name" if source.kind == "hub" else "data.path"


def _documents(cfg: Config, source: Source, workdir: Path, fp: str) -> Any:
    """Preprocessed, non-empty documents (``datasets.Dataset`` with column ``text``)."""
    docs = load_documents(source, cfg.data, workdir)
    raw = len(docs)
    if cfg.data.max_documents is not None and raw > cfg.data.max_documents:
        docs = docs.select(range(cfg.data.max_documents))
    # Explicit cache files in the work folder: never leave tokenized copies in the user's HF cache.
    docs = docs.map(
        Preprocessor(cfg.data),
        batched=True,
        batch_size=_BATCH,
        remove_columns=["text"],
        new_fingerprint=f"{fp}p",
        cache_file_name=str(workdir / "preprocessed.arrow"),
    )
    if len(docs) == 0:
        if raw == 0:
            raise UserError(_source_key(source), f"{source.description} holds no documents; point it at text")
        what = "data.preprocess" if cfg.data.preprocess else "data.min_chars"
        raise UserError(
            what,
            f"all {raw} documents are empty or were dropped by preprocessing; relax data.min_chars/data.preprocess",
        )
    return docs


def _iter_texts(docs: Any) -> Iterator[list[str]]:
    for batch in docs.iter(batch_size=_BATCH):
        yield batch["text"]


def _train_texts(docs: Any, mode: str, is_val: np.ndarray | None, cut_chars: int | None, budget: int) -> Iterator[str]:
    """Train-split texts in order, at most ``budget`` UTF-8 bytes (tail: only the first ``cut_chars`` chars)."""
    i, chars = 0, 0
    for texts in _iter_texts(docs):
        for t in texts:
            idx, i = i, i + 1
            if mode == "documents" and is_val is not None and is_val[idx]:
                continue
            if cut_chars is not None:
                if chars >= cut_chars:
                    return
                t = t[: cut_chars - chars]
                chars += len(t)
            n = len(t.encode("utf-8"))
            if n > budget:
                t = t.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
                n = budget
            if t:
                yield t
            budget -= n
            if budget <= 0:
                return


def _make_tokenizer(cfg: Config, docs: Any, mode: str, is_val: np.ndarray | None, cut_chars: int | None) -> Any:
    tcfg = cfg.tokenizer
    if tcfg.type == "hf":
        return load_pretrained(tcfg.name_or_path or "")
    if tcfg.type == "byte":
        return build_byte(tcfg)
    if tcfg.type == "bpe":
        return train_bpe(_train_texts(docs, mode, is_val, cut_chars, tcfg.train_sample_bytes), tcfg)
    train_chars: set[str] = set()
    for t in _train_texts(docs, mode, is_val, cut_chars, 1 << 62):
        train_chars.update(t)
    all_chars: set[str] = set()
    for texts in _iter_texts(docs):
        for t in texts:
            all_chars.update(t)
    # Characters seen only in validation text map to <unk> (added only when needed: tiny-shakespeare -> 65 + EOS).
    return build_char(train_chars, tcfg, unk=bool(all_chars - train_chars))


def _tail_chars(docs: Any, val_fraction: float) -> int:
    total = sum(pc.sum(pc.utf8_length(b.column("text"))).as_py() or 0 for b in docs.with_format("arrow").iter(10_000))
    return int(total * (1.0 - val_fraction))


def build_entry(cfg: Config, source: Source, out: Path, workdir: Path, key: str) -> dict[str, Any]:
    """Write a complete entry into ``out``; returns its meta (stats without timing)."""
    t0 = time.perf_counter()
    fp = key[:16]
    docs = _documents(cfg, source, workdir, fp)
    n_docs = len(docs)
    mode = choose_split(n_docs, cfg.data)
    is_val = val_document_mask(n_docs, cfg.data.val_fraction, cfg.run.seed) if mode == "documents" else None
    cut_chars = _tail_chars(docs, cfg.data.val_fraction) if mode == "tail" else None
    log.info("data: %d documents from %s, split=%s", n_docs, source.description, mode)

    tokenizer = _make_tokenizer(cfg, docs, mode, is_val, cut_chars)
    log.info("data: tokenizer %s with %d entries; tokenizing", cfg.tokenizer.type, len(tokenizer))
    t_tok = time.perf_counter()
    dtype = token_dtype(len(tokenizer))
    encoder = Encoder(tokenizer, cfg.tokenizer.type)
    ids = docs.with_format("arrow").map(
        encoder.arrow_batch,
        batched=True,
        batch_size=_BATCH,
        remove_columns=["text"],
        new_fingerprint=f"{fp}t",
        cache_file_name=str(workdir / "ids.arrow"),
    )
    train_w, val_w = SplitWriter(out, "train", dtype), SplitWriter(out, "val", dtype)
    n_bytes, doc = 0, 0
    try:
        for batch in ids.with_format("arrow").iter(batch_size=10 * _BATCH):
            col = batch.column("ids")
            lengths = pc.list_value_length(col).to_numpy().astype(np.int64)
            flat = pc.list_flatten(col).to_numpy()
            if is_val is None:
                train_w.write(flat, lengths)
            else:
                doc_val = is_val[doc : doc + len(lengths)]
                tok_val = np.repeat(doc_val, lengths)
                train_w.write(flat[~tok_val], lengths[~doc_val])
                val_w.write(flat[tok_val], lengths[doc_val])
            doc += len(lengths)
    finally:
        train_w.close()
        val_w.close()
    for b in docs.with_format("arrow").iter(batch_size=10_000):
        n_bytes += int(pc.sum(pc.binary_length(b.column("text").cast("binary"))).as_py() or 0)

    if mode == "tail":
        cut = tail_cut(train_w.tokens, cfg.data.val_fraction)
        train_off, val_off = split_tail(out, dtype, train_w.lengths(), cut)
    else:
        train_off, val_off = doc_offsets(train_w.lengths()), doc_offsets(val_w.lengths())
    save_offsets(out, "train", train_off)
    save_offsets(out, "val", val_off)
    train_tokens, val_tokens = int(train_off[-1]), int(val_off[-1])
    # Fail before publishing: a corpus shorter than one window must not leave a cache entry behind.
    check_windows(train_tokens, val_tokens, len(train_off) - 1, cfg.data)
    save_tokenizer(tokenizer, out / "tokenizer")
    tok_seconds = time.perf_counter() - t_tok
    stats = {
        "documents": n_docs,
        "train_documents": len(train_off) - 1,
        "val_documents": len(val_off) - 1,
        "bytes": n_bytes,
        "tokens": train_tokens + val_tokens,
        "train_tokens": train_tokens,
        "val_tokens": val_tokens,
        "split": mode,
        "build_seconds": round(time.perf_counter() - t0, 3),
        "tokenize_seconds": round(tok_seconds, 3),
    }
    meta = {
        "key": key,
        "dtype": dtype.name,
        "vocab_size": len(tokenizer),
        "eos_id": int(tokenizer.eos_token_id),
        "pad_id": int(tokenizer.pad_token_id),
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "tokenizer_type": cfg.tokenizer.type,
        "source": source.description,
        "stats": stats,
    }
    write_meta(out, meta)
    return meta
