"""Prepare a streaming source (``data.streaming: true``): tokenizer + validation tokens from the stream's head.

Nothing of the training text is stored: the train loader re-reads the source and tokenizes on the fly
(``streaming.py``). Validation documents are picked by a seeded hash of their text, so every reader of the
stream (any rank, worker, epoch or resumed run) agrees on them without knowing document positions; the cache
holds the ones found in the first ``tokenizer.train_sample_bytes`` of the stream, training skips all of them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from ..config.schema import Config
from ..errors import UserError
from .cache import write_meta
from .encode import Encoder
from .geometry import check_windows
from .loading import load_documents
from .preprocess import Preprocessor
from .sources import Source
from .tokenizer import build_byte, build_char, load_pretrained, save_tokenizer, tokenizer_fingerprint, train_bpe
from .writer import SplitWriter, doc_offsets, save_offsets, token_dtype


def is_val_text(text: str, seed: int, val_fraction: float) -> bool:
    """Seeded, position-free train/val choice: hash(seed, text) below ``val_fraction``."""
    if val_fraction <= 0:
        return False
    h = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8, salt=seed.to_bytes(8, "little"))
    return int.from_bytes(h.digest(), "little") < val_fraction * 2**64


def stream_documents(cfg: Config, source: Source, rank: int = 0, world: int = 1) -> Any:
    """Raw ``datasets.IterableDataset`` of ``{"text"}`` rows for one rank (first ``max_documents`` only)."""
    from datasets.distributed import split_dataset_by_node

    ds = load_documents(source, cfg.data, None, streaming=True)
    if cfg.data.max_documents is not None:
        ds = ds.take(cfg.data.max_documents)
    if world > 1:
        ds = split_dataset_by_node(ds, rank=rank, world_size=world)
    return ds


def _head(cfg: Config, source: Source) -> tuple[list[str], list[str], int]:
    """(train texts, val texts, raw documents read) from the first ``train_sample_bytes`` of the stream."""
    pre = Preprocessor(cfg.data)
    train, val, seen, raw = [], [], 0, 0
    for row in stream_documents(cfg, source):
        raw += 1
        for t in pre.texts([row["text"]]):
            (val if is_val_text(t, cfg.run.seed, cfg.data.val_fraction) else train).append(t)
            seen += len(t.encode("utf-8"))
        if seen >= cfg.tokenizer.train_sample_bytes:
            break
    if raw == 0:
        key = "data.hf_name" if source.kind == "hub" else "data.path"
        raise UserError(key, f"{source.description} holds no documents; point it at text")
    if not train:
        raise UserError("data.min_chars", f"the first {raw} documents were all dropped or held out; check the data")
    return train, val, raw


def build_stream_entry(cfg: Config, source: Source, out: Path, key: str) -> dict[str, Any]:
    """Write tokenizer, val tokens and meta for a streaming source into ``out``."""
    train, val, raw = _head(cfg, source)
    tcfg = cfg.tokenizer
    if tcfg.type == "bpe":
        tokenizer = train_bpe(iter(train), tcfg)
    elif tcfg.type == "char":
        # Characters outside the head are unknown in advance: always keep <unk> for them.
        tokenizer = build_char(set().union(*map(set, train)), tcfg, unk=True)
    elif tcfg.type == "byte":
        tokenizer = build_byte(tcfg)
    else:
        tokenizer = load_pretrained(tcfg.name_or_path or "")
    dtype = token_dtype(len(tokenizer))
    encoder = Encoder(tokenizer, tcfg.type)
    writer = SplitWriter(out, "val", dtype)
    try:
        if val:
            flat, lengths = encoder.encode_flat(val)
            writer.write(flat, lengths)
    finally:
        writer.close()
    (out / "train.bin").touch()
    save_offsets(out, "train", np.zeros(1, dtype=np.int64))
    val_off = doc_offsets(writer.lengths())
    save_offsets(out, "val", val_off)
    check_windows(cfg.data.seq_len + 1, int(val_off[-1]), 1, cfg.data)
    save_tokenizer(tokenizer, out / "tokenizer")
    stats = {
        "documents": raw,
        "train_documents": len(train),
        "val_documents": len(val),
        "bytes": sum(len(t.encode("utf-8")) for t in train + val),
        "tokens": int(val_off[-1]),
        "train_tokens": 0,  # unknown: the stream is tokenized while training
        "val_tokens": int(val_off[-1]),
        "split": "hash",
        "streaming": True,
    }
    meta = {
        "key": key,
        "dtype": dtype.name,
        "vocab_size": len(tokenizer),
        "eos_id": int(tokenizer.eos_token_id),
        "pad_id": int(tokenizer.pad_token_id),
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "tokenizer_type": tcfg.type,
        "source": source.description,
        "streaming": True,
        "stats": stats,
    }
    write_meta(out, meta)
    return meta
