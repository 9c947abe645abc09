"""Train samples tokenized on the fly from a streaming source (``data.streaming: true``).

One ``StreamingWindows`` per rank reads its shard of the source (``split_dataset_by_node``; inside DataLoader
workers ``datasets`` further splits by worker), preprocesses and tokenizes one document at a time, skips the
validation documents, and yields packed ``seq_len + 1`` windows (or one padded sample per document). The
stream never ends: it restarts with the next epoch, so ranks stay in step and the run stops on its step or
token budget.

Resumable: the state is ``{epoch, hf, carry, pos}`` where ``hf`` is the source position before the current
document, ``carry`` the tokens left over from earlier documents and ``pos`` the next window start inside
``carry + current document``. ``StatefulDataLoader`` snapshots it per worker after every batch.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..config.schema import Config
from .windows import IGNORE_INDEX


def _window(w: np.ndarray) -> dict[str, torch.Tensor]:
    t = torch.from_numpy(w.astype(np.int64))
    return {"input_ids": t[:-1], "targets": t[1:]}


def _padded(ids: np.ndarray, seq_len: int, pad_id: int) -> dict[str, torch.Tensor]:
    n = min(len(ids), seq_len + 1)
    w = np.full(seq_len + 1, pad_id, dtype=np.int64)
    w[:n] = ids[:n]
    targets = w[1:].copy()
    targets[max(0, n - 1) :] = IGNORE_INDEX
    mask = np.zeros(seq_len, dtype=np.int64)
    mask[: min(n, seq_len)] = 1
    return {
        "input_ids": torch.from_numpy(w[:-1]),
        "targets": torch.from_numpy(targets),
        "attention_mask": torch.from_numpy(mask),
    }


class StreamingWindows(torch.utils.data.IterableDataset):
    """Endless stream of training samples for one rank; ``state_dict``/``load_state_dict`` resume exactly."""

    def __init__(self, cfg: Config, tokenizer_dir: str, rank: int = 0, world_size: int = 1) -> None:
        self.cfg_json = cfg.model_dump_json()  # plain data: pickles cheaply into spawned workers
        self.tokenizer_dir = tokenizer_dir
        self.rank, self.world_size = rank, world_size
        self._live: dict[str, Any] = {"epoch": 0, "hf": None, "carry": [], "pos": 0}
        self._restore: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._restore if self._restore is not None else self._live)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restore = copy.deepcopy(state)

    def _setup(self) -> tuple[Config, Any, Any, Any]:
        from .encode import Encoder
        from .preprocess import Preprocessor
        from .sources import resolve_source
        from .stream_build import stream_documents
        from .tokenizer import load_tokenizer

        cfg = Config.model_validate_json(self.cfg_json)
        ds = stream_documents(cfg, resolve_source(cfg.data), self.rank, self.world_size)
        tok = load_tokenizer(self.tokenizer_dir, auto=cfg.tokenizer.type == "hf")
        return cfg, ds, Encoder(tok, cfg.tokenizer.type), Preprocessor(cfg.data)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        from .stream_build import is_val_text

        cfg, ds, encoder, pre = self._setup()
        seq, seed, vf = cfg.data.seq_len, cfg.run.seed, cfg.data.val_fraction
        pad_id = encoder.eos_id
        start = ds.state_dict()  # position of an untouched stream (restored at every new epoch)
        st, self._restore = (self._restore or self._live), None
        epoch, hf = int(st["epoch"]), st["hf"]
        carry, pos = np.asarray(st["carry"], dtype=np.int64), int(st["pos"])
        while True:
            ds.load_state_dict(copy.deepcopy(hf if hf is not None else start))
            fresh_epoch, produced = hf is None, False
            it = iter(ds)
            while True:
                before = ds.state_dict()  # source position before this document (what a restore re-reads)
                row = next(it, None)
                if row is None:
                    break
                texts = [t for t in pre.texts([row["text"]]) if not is_val_text(t, seed, vf)]
                if not texts:
                    continue
                produced = True
                docs = [np.append(ids.astype(np.int64), encoder.eos_id) for ids in encoder.encode(texts)]
                if not cfg.data.pack:  # one sample per text; pos counts the samples of this row already given
                    for k in range(pos, len(docs)):
                        self._live = {"epoch": epoch, "hf": before, "carry": [], "pos": k + 1}
                        yield _padded(docs[k], seq, pad_id)
                    pos = 0
                    continue
                buf = np.concatenate([carry, *docs])  # all texts of this row (a hook may split a document)
                while pos + seq + 1 <= len(buf):
                    w = buf[pos : pos + seq + 1]
                    pos += seq
                    self._live = {"epoch": epoch, "hf": before, "carry": carry.tolist(), "pos": pos}
                    yield _window(w)
                carry, pos = buf[pos:], 0
            if fresh_epoch and not produced:
                return  # this shard (rank/worker) has no training documents at all
            epoch, hf = epoch + 1, None
