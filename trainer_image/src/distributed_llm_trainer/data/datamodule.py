"""``TokenDataModule``: train/val loaders over a ``PreparedData``, sharded by our own samplers.

Use with ``Trainer(use_distributed_sampler=False)``: the train loader is a ``StatefulDataLoader`` whose
``ShardedSampler`` state (epoch, position) Lightning checkpoints with the loop, so a resumed run yields
exactly the next batch. Rank and world size come from the attached trainer (else 0 / 1).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from ..config.schema import Config
from ..errors import UserError
from .geometry import window_grid
from .pipeline import PreparedData
from .sampler import ShardedSampler, val_batches
from .windows import PackedWindows, PaddedDocuments, passthrough


def _stateful_loader(dataset: Any, **kw: Any) -> StatefulDataLoader:
    with warnings.catch_warnings():  # torchdata 0.11 calls a deprecated torch API on construction
        warnings.filterwarnings("ignore", message=".*set_vital.*")
        return StatefulDataLoader(dataset, **kw)


class TokenDataModule(L.LightningDataModule):
    """Batches: ``input_ids``/``targets`` LongTensor (B, T) (+ ``attention_mask`` when ``data.pack`` is false)."""

    def __init__(self, cfg: Config, prepared: PreparedData) -> None:
        super().__init__()
        self.cfg = cfg
        self.prepared = prepared
        self.seq_len = cfg.data.seq_len
        self._train_sampler: ShardedSampler | None = None
        self._skip_items = 0
        self.val_counted = 0  # set by val_dataloader

    # -- topology ---------------------------------------------------------------------------------------
    def _topology(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def _batch_size(self) -> int:
        bs = self.cfg.training.batch_size
        if not isinstance(bs, int):
            raise UserError("training.batch_size", f"must be resolved to an int before building loaders, got {bs!r}")
        return bs

    # -- datasets ---------------------------------------------------------------------------------------
    def _dataset(self, split: str) -> tuple[torch.utils.data.Dataset, int, int, int]:
        """(dataset, n_items, stride, max_shift) for ``split`` (train/val)."""
        tokens = self.prepared.train if split == "train" else self.prepared.val
        if not self.cfg.data.pack:
            offsets = self.prepared.train_offsets if split == "train" else self.prepared.val_offsets
            ds = PaddedDocuments(tokens, offsets, self.seq_len, self.prepared.pad_id)
            return ds, len(ds), 1, 0
        shuffle_grid = split == "train" and self.cfg.data.random_offset
        n, max_shift = window_grid(int(tokens.shape[0]), self.seq_len, shuffle_grid)
        return PackedWindows(tokens, self.seq_len), n, self.seq_len, max_shift

    def train_windows(self) -> int | None:
        """Training samples per epoch over all ranks (windows, or documents for ``pack: false``).

        None for a streaming source: its length is unknown and its loader never ends (budget by steps/tokens).
        """
        if self.prepared.streaming:
            return None
        return self._dataset("train")[1]

    def train_batches_per_rank(self, world_size: int | None = None) -> int | None:
        """Exact micro-batches each rank runs per epoch (the sampler may drop up to world_size - 1 windows)."""
        if self.prepared.streaming:
            return None
        world = self._topology()[1] if world_size is None else world_size
        return -(-len(ShardedSampler(self.train_windows(), self._batch_size(), 0, world)) // self._batch_size())

    def skip_after_restore(self, n_items: int) -> None:
        """Skip ``n_items`` samples per rank right after the next restore (rolling back past bad data)."""
        self._skip_items = int(n_items)
        if self._train_sampler is not None:
            self._train_sampler.skip_once = self._skip_items

    def _loader_kwargs(self) -> dict[str, Any]:
        workers = self.cfg.data.num_workers
        kw: dict[str, Any] = {
            "num_workers": workers,
            "collate_fn": passthrough,
            "pin_memory": torch.cuda.is_available(),
        }
        if workers > 0:
            # The main process already used the Rust tokenizer's threads; forked workers do not tokenize.
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            kw.update(prefetch_factor=4, persistent_workers=True)
        return kw

    # -- loaders ----------------------------------------------------------------------------------------
    def _streaming_loader(self, rank: int, world: int) -> StatefulDataLoader:
        from .streaming import StreamingWindows

        ds = StreamingWindows(self.cfg, str(self.prepared.tokenizer_dir), rank, world)
        kw = self._loader_kwargs()
        kw.pop("collate_fn")  # the stream yields single samples: default stacking
        return _stateful_loader(ds, batch_size=self._batch_size(), **kw)

    def train_dataloader(self) -> StatefulDataLoader:
        rank, world = self._topology()
        if self.prepared.streaming:
            return self._streaming_loader(rank, world)
        ds, n, stride, max_shift = self._dataset("train")
        if n == 0:
            raise UserError("data.seq_len", f"the train split has no window of seq_len + 1 = {self.seq_len + 1} tokens")
        self._train_sampler = ShardedSampler(
            n,
            self._batch_size(),
            rank=rank,
            world_size=world,
            seed=self.cfg.run.seed,
            shuffle=self.cfg.data.shuffle,
            stride=stride,
            max_shift=max_shift,
        )
        self._train_sampler.skip_once, self._skip_items = self._skip_items, 0
        return _stateful_loader(
            ds, batch_size=self._batch_size(), sampler=self._train_sampler, drop_last=False, **self._loader_kwargs()
        )

    def val_dataloader(self) -> DataLoader | list:
        """Equal batch count on every rank; ``[]`` when there is no validation split.

        Sets ``val_counted``: this rank's leading batches that count toward the val loss (the rest only keep the
        ranks' batch counts equal), so the loss is over the same windows on any world size.
        """
        rank, world = self._topology()
        ds, n, stride, _ = self._dataset("val")
        batches, self.val_counted = val_batches(n, rank, world, self._batch_size(), self.cfg.training.eval_steps,
                                                stride)
        if not batches:
            return []
        # In-process: a batch is one numpy gather (~0.1 ms); workers would be re-forked at every evaluation.
        return DataLoader(ds, batch_sampler=batches, collate_fn=passthrough, pin_memory=torch.cuda.is_available())

    def state_dict(self) -> dict[str, Any]:
        # The loader's own state (saved by Lightning's fit loop) carries the sampler position.
        return {}
