"""Write token batches into the cache files: ``<split>.bin`` (flat ids) and ``<split>_docs.npy`` (doc starts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits (vocab < 65,536), else uint32."""
    return np.dtype(np.uint16) if vocab_size < 1 << 16 else np.dtype(np.uint32)


class SplitWriter:
    """Appends documents' ids to ``<folder>/<name>.bin`` and records their lengths."""

    def __init__(self, folder: Path, name: str, dtype: np.dtype) -> None:
        self.folder, self.name, self.dtype = folder, name, dtype
        self._f = open(folder / f"{name}.bin", "wb")
        self._lengths: list[np.ndarray] = []
        self.tokens = 0

    def write(self, ids: np.ndarray, lengths: np.ndarray) -> None:
        """``ids`` (N,) for documents of ``lengths`` (docs,), EOS included; N == lengths.sum()."""
        ids.astype(self.dtype, copy=False).tofile(self._f)
        self._lengths.append(lengths.astype(np.int64, copy=False))
        self.tokens += int(ids.size)

    def lengths(self) -> np.ndarray:
        return np.concatenate(self._lengths) if self._lengths else np.zeros(0, dtype=np.int64)

    def close(self) -> None:
        self._f.close()


def doc_offsets(lengths: np.ndarray) -> np.ndarray:
    """Document boundaries (docs + 1,) int64: doc i is ``[off[i], off[i+1])``."""
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def save_offsets(folder: Path, name: str, offsets: np.ndarray) -> None:
    np.save(folder / f"{name}_docs.npy", offsets.astype(np.int64))


def split_tail(folder: Path, dtype: np.dtype, lengths: np.ndarray, cut: int) -> tuple[np.ndarray, np.ndarray]:
    """Move tokens ``[cut:]`` of ``train.bin`` into ``val.bin``; return (train, val) document offsets.

    A document crossing the cut is split in two: its head ends the train stream, its tail starts val.
    """
    all_off = doc_offsets(lengths)
    total = int(all_off[-1])
    src = folder / "train.bin"
    stream = np.memmap(src, dtype=dtype, mode="r", shape=(total,)) if total else np.zeros(0, dtype)
    np.asarray(stream[cut:]).tofile(folder / "val.bin")
    del stream
    with open(src, "r+b") as f:
        f.truncate(cut * dtype.itemsize)
    starts = all_off[:-1]
    train_off = np.concatenate([starts[starts < cut], [cut]])
    val_off = np.concatenate([[0], starts[starts > cut] - cut, [total - cut]])
    return train_off.astype(np.int64), val_off.astype(np.int64)
