"""Map-style datasets over the token files: packed windows, or one padded sample per document.

Packed: the sampler yields *token start positions*; a sample is the ``seq_len + 1`` tokens from there,
``input_ids = w[:-1]``, ``targets = w[1:]``. Per-document: the sampler yields document indices; a sample is
the document (EOS included) truncated to ``seq_len + 1`` and right-padded; ``targets`` is -100 past the end
and ``attention_mask`` marks real input tokens. Each dataset fetches a whole batch in one numpy gather
(``__getitems__``), so ``collate`` only passes the dict through.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

IGNORE_INDEX = -100


def passthrough(batch: Any) -> Any:
    """collate_fn: batches are already stacked by ``__getitems__``."""
    return batch


class _TokenFile(torch.utils.data.Dataset):
    """Shared base: a flat token array, opened lazily per process (a memmap does not pickle cheaply)."""

    def __init__(self, tokens: np.ndarray) -> None:
        self._path = getattr(tokens, "filename", None)
        self._dtype = tokens.dtype
        self._n = int(tokens.shape[0])
        self._tokens: np.ndarray | None = tokens

    @property
    def tokens(self) -> np.ndarray:
        if self._tokens is None:
            self._tokens = np.memmap(self._path, dtype=self._dtype, mode="r", shape=(self._n,))
        return self._tokens

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._path is not None:
            state["_tokens"] = None  # workers reopen the file instead of receiving a copy
        return state


class PackedWindows(_TokenFile):
    """Index = token start position; item = dict of ``input_ids``/``targets`` LongTensors (seq_len,)."""

    def __init__(self, tokens: np.ndarray, seq_len: int) -> None:
        super().__init__(tokens)
        self.seq_len = seq_len
        self._span = np.arange(seq_len + 1, dtype=np.int64)

    def __len__(self) -> int:
        return max(0, self._n - self.seq_len)  # number of valid start positions

    def __getitems__(self, starts: list[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(starts, dtype=np.int64)[:, None] + self._span  # (B, T+1)
        w = torch.from_numpy(self.tokens[idx].astype(np.int64))
        return {"input_ids": w[:, :-1].contiguous(), "targets": w[:, 1:].contiguous()}

    def __getitem__(self, start: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([start]).items()}


class PaddedDocuments(_TokenFile):
    """Index = document number; item adds ``attention_mask`` (seq_len,) and -100 targets past the end."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray, seq_len: int, pad_id: int) -> None:
        super().__init__(tokens)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.seq_len = seq_len
        self.pad_id = pad_id

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitems__(self, docs: list[int]) -> dict[str, torch.Tensor]:
        t = self.seq_len
        d = np.asarray(docs, dtype=np.int64)
        starts = self.offsets[d]
        lengths = np.minimum(self.offsets[d + 1] - starts, t + 1)  # (B,) tokens kept per document
        pos = np.arange(t + 1, dtype=np.int64)
        real = pos[None, :] < lengths[:, None]  # (B, T+1)
        idx = np.where(real, starts[:, None] + pos, 0)
        w = np.where(real, self.tokens[idx], self.pad_id).astype(np.int64)
        targets = np.where(real[:, 1:], w[:, 1:], IGNORE_INDEX)
        return {
            "input_ids": torch.from_numpy(np.ascontiguousarray(w[:, :-1])),
            "targets": torch.from_numpy(np.ascontiguousarray(targets)),
            "attention_mask": torch.from_numpy(real[:, :-1].astype(np.int64)),
        }

    def __getitem__(self, doc: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([doc]).items()}
