"""Samplers: a stateful, sharded, per-epoch shuffled train sampler and a padded, sharded val sampler.

Both yield *keys* for the datasets in ``windows.py``: ``shift + stride * item`` (a token start position for
packed windows, ``stride=1, shift=0`` for document numbers).

Train layout per epoch ``e`` (``n`` items, ``W`` ranks, micro-batch ``B``): ``perm = permutation(n)`` seeded
with ``seed + e``; full rounds of ``B * W`` items give rank ``r`` the slice ``[r*B, (r+1)*B)`` of each round.
The remaining ``m < B * W`` items are split evenly over the ranks (sizes differ by at most one) so every rank
runs the same number of batches; only when ``m < W`` are those ``m`` items dropped (nothing else is).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


def _rank_slices(n: int, world_size: int, batch_size: int, rank: int) -> list[tuple[int, int]]:
    """[start, end) ranges of the epoch permutation that belong to ``rank``, in the order it reads them."""
    per_round = batch_size * world_size
    rounds = n // per_round
    out = [(i * per_round + rank * batch_size, i * per_round + (rank + 1) * batch_size) for i in range(rounds)]
    rest = n - rounds * per_round
    if rest >= world_size:  # every rank gets >= 1 item, so batch counts stay equal across ranks
        base, extra = divmod(rest, world_size)
        start = rounds * per_round + rank * base + min(rank, extra)
        out.append((start, start + base + (1 if rank < extra else 0)))
    return out


class ShardedSampler(torch.utils.data.Sampler[int]):
    """Train sampler: disjoint shards per rank, seeded reshuffle and grid shift per epoch, resumable.

    ``state_dict()`` is ``{"epoch", "position"}`` (items of this rank already handed out this epoch).
    ``StatefulDataLoader`` saves it with each batch it yields (also with workers, via its snapshots) and
    calls ``load_state_dict`` when the loader is restored; the next ``__iter__`` continues from there.
    A state saved at the very end of epoch ``e`` continues with epoch ``e + 1`` from its start.
    """

    def __init__(
        self,
        n_items: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        stride: int = 1,
        max_shift: int = 0,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.n_items, self.batch_size = n_items, batch_size
        self.rank, self.world_size = rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.stride, self.max_shift = stride, max_shift
        self.epoch = 0
        self.position = 0  # items handed out in the current epoch (live, read by state_dict)
        self._pending: tuple[int, int] | None = None  # restored (epoch, position), applied by the next __iter__
        self.skip_once = 0  # items to skip at the next __iter__ (rollback past bad data), then reset
        self._slices = _rank_slices(n_items, world_size, batch_size, rank)
        self._len = sum(e - s for s, e in self._slices)

    def __len__(self) -> int:
        return self._len

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch (a new epoch starts at position 0)."""
        if epoch != self.epoch:
            self.position = 0
        self.epoch = epoch

    def epoch_shift(self, epoch: int) -> int:
        """Seeded shift of the window grid for ``epoch`` in ``[0, max_shift]``."""
        if self.max_shift <= 0:
            return 0
        return int(np.random.default_rng([self.seed, epoch, 1]).integers(0, self.max_shift + 1))

    def epoch_keys(self, epoch: int) -> np.ndarray:
        """All keys this rank reads in ``epoch``, in order (int64 (len(self),))."""
        if self.shuffle:
            perm = np.random.default_rng(self.seed + epoch).permutation(self.n_items)
        else:
            perm = np.arange(self.n_items)
        mine = np.concatenate([perm[s:e] for s, e in self._slices]) if self._slices else np.zeros(0, np.int64)
        return self.epoch_shift(epoch) + self.stride * mine.astype(np.int64)

    def _start(self) -> int:
        """Apply a pending restore: the position to continue from (sets ``self.epoch``)."""
        if self._pending is None:
            return 0
        (epoch, position), self._pending = self._pending, None
        if position < self._len:
            self.epoch = epoch
            return position
        # The restored epoch was complete: this iterator serves the next epoch. Lightning builds the restored
        # iterator before it calls set_epoch(e + 1), and with workers the first keys are drawn right away.
        self.epoch = epoch + 1
        return 0

    def __iter__(self) -> Iterator[int]:
        start = self._start()
        if self.skip_once:  # clamped to the epoch end: the rest of that epoch is skipped, not the next one
            start, self.skip_once = min(self._len, start + self.skip_once), 0
        keys = self.epoch_keys(self.epoch)
        self.position = start
        for key in keys[start:].tolist():
            self.position += 1
            yield key

    def state_dict(self) -> dict[str, Any]:
        if self._pending is not None:
            return {"epoch": self._pending[0], "position": self._pending[1]}
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = (int(state["epoch"]), int(state["position"]))


def val_keys(n_items: int, rank: int, world_size: int, stride: int = 1) -> list[int]:
    """Deterministic val shard: ``ceil(n / W)`` items per rank, wrapping around so every rank has as many.

    Strided (rank ``r`` reads items ``r, r + W, r + 2W, ...``) so the first ``k`` batches of all ranks together
    are the first ``k * W`` batches of a single process: the val loss does not depend on the world size.
    """
    if n_items <= 0:
        return []
    per_rank = -(-n_items // world_size)
    return [stride * ((rank + world_size * i) % n_items) for i in range(per_rank)]
