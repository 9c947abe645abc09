"""Samplers: a stateful, sharded, per-epoch shuffled train sampler and a padded, sharded val sampler.

Both yield *keys* for the datasets in ``windows.py``: ``shift + stride * item`` (a token start position for
packed windows, ``stride=1, shift=0`` for document numbers).

Train layout per epoch ``e`` (``n`` items, ``W`` ranks, micro-batch ``B``): ``perm = permutation(n)`` seeded
with ``seed + e``; full rounds of ``B * W`` items give rank ``r`` the slice ``[r*B, (r+1)*B)`` of each round.
The remaining ``m < B * W`` items are split evenly over the ranks (sizes differ by at most one) so every rank
runs the same number of batches; only when ``m < W`` are those ``m`` items dropped (nothing else is).

Elastic resume: all ranks together always consume a prefix of the epoch's permutation (whole rounds), so the
saved state carries that prefix's length, ``consumed``. A run that resumes with another world size (or micro-batch)
lays the rest of the epoch out from there for its own ranks: no window is read twice or skipped. ``len()`` and
``position`` still count as if the new layout had run the whole epoch (the prefix is this rank's equal share of
``consumed``), which keeps Lightning's batch counters consistent.
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
    """Train sampler: disjoint shards per rank, seeded reshuffle and grid shift per epoch, resumable on any world.

    ``state_dict()`` is ``{"epoch", "position", "consumed", "world_size", "batch_size"}``: ``position`` counts this
    rank's items handed out this epoch, ``consumed`` all ranks' together (``n_items`` once the epoch is complete).
    ``StatefulDataLoader`` saves it with each batch it yields (also with workers, via its snapshots) and calls
    ``load_state_dict`` when the loader is restored; the next ``__iter__`` continues from ``consumed``.
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
        self.position = 0  # items handed out in the current epoch, prefix included (live, read by state_dict)
        self._pending: tuple[int, int] | None = None  # restored (epoch, consumed), applied by the next __iter__
        self.skip_once = 0  # items to skip at the next __iter__ (rollback past bad data), then reset
        self._layout(0)

    def _layout(self, start: int) -> None:
        """This rank's slices of the permutation from global offset ``start`` (the items before it are consumed)."""
        self._start_at = start
        self._slices = [(s + start, e + start)
                        for s, e in _rank_slices(self.n_items - start, self.world_size, self.batch_size, self.rank)]
        self._prefix = start // self.world_size  # this rank's share of the consumed prefix, in items
        self._len = self._prefix + sum(e - s for s, e in self._slices)

    def __len__(self) -> int:
        return self._len

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch (a new epoch starts at position 0)."""
        if epoch != self.epoch:
            self.position = 0
            self._layout(0)
        self.epoch = epoch

    def epoch_shift(self, epoch: int) -> int:
        """Seeded shift of the window grid for ``epoch`` in ``[0, max_shift]``."""
        if self.max_shift <= 0:
            return 0
        return int(np.random.default_rng([self.seed, epoch, 1]).integers(0, self.max_shift + 1))

    def epoch_keys(self, epoch: int) -> np.ndarray:
        """The keys this rank reads in ``epoch`` after the consumed prefix, in order (int64 (len - prefix,))."""
        if self.shuffle:
            perm = np.random.default_rng(self.seed + epoch).permutation(self.n_items)
        else:
            perm = np.arange(self.n_items)
        mine = np.concatenate([perm[s:e] for s, e in self._slices]) if self._slices else np.zeros(0, np.int64)
        return self.epoch_shift(epoch) + self.stride * mine.astype(np.int64)

    def consumed(self, position: int | None = None) -> int:
        """Items all ranks have consumed this epoch when this rank has handed out ``position`` (ranks in step)."""
        position = self.position if position is None else position
        if position >= self._len:
            return self.n_items
        rounds, partial = divmod(position - self._prefix, self.batch_size)
        return self._start_at + (rounds * self.batch_size + partial) * self.world_size

    def _start(self) -> int:
        """Apply a pending restore: the position to continue from (sets ``self.epoch`` and the layout)."""
        if self._pending is None:  # a fresh pass over the epoch
            if self._start_at:
                self._layout(0)
            return 0
        (epoch, consumed), self._pending = self._pending, None
        if consumed < self.n_items:
            self.epoch = epoch
            self._layout(consumed)
            return self._prefix
        # The restored epoch was complete: this iterator serves the next epoch. Lightning builds the restored
        # iterator before it calls set_epoch(e + 1), and with workers the first keys are drawn right away.
        self.epoch = epoch + 1
        self._layout(0)
        return 0

    def __iter__(self) -> Iterator[int]:
        start = self._start()
        if self.skip_once:  # clamped to the epoch end: the rest of that epoch is skipped, not the next one
            start, self.skip_once = min(self._len, start + self.skip_once), 0
        keys = self.epoch_keys(self.epoch)
        self.position = start
        for key in keys[start - self._prefix:].tolist():
            self.position += 1
            yield key

    def state_dict(self) -> dict[str, Any]:
        if self._pending is not None:
            epoch, consumed = self._pending
            return {"epoch": epoch, "position": consumed // self.world_size, "consumed": consumed,
                    "world_size": self.world_size, "batch_size": self.batch_size}
        return {"epoch": self.epoch, "position": self.position, "consumed": self.consumed(),
                "world_size": self.world_size, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = (int(state["epoch"]), restored_consumed(state, self))


def restored_consumed(state: dict[str, Any], sampler: ShardedSampler) -> int:
    """Global items consumed in the saved epoch; a state from before ``consumed`` existed is from the same world."""
    if "consumed" in state:
        return int(state["consumed"])
    position = int(state["position"])
    return sampler.n_items if position >= len(sampler) else position * sampler.world_size


def val_batches(n_items: int, rank: int, world_size: int, batch_size: int, limit: int,
                stride: int = 1) -> tuple[list[list[int]], int]:
    """Rank ``rank``'s validation batches (keys) and how many of them count, the same set on any world size.

    The val set is a single process's first ``limit`` batches (fewer when the split is smaller). Rank ``r`` runs
    batches ``r, r + W, r + 2W, ...`` of it; a rank that runs out repeats batches so that every rank runs
    ``ceil(total / W)`` (FSDP's collectives need equal counts), and those repeats do not count: the first
    ``counted`` batches of each rank together are exactly the single process's batches, whatever ``W`` is.
    """
    if n_items <= 0:
        return [], 0
    total = min(limit, -(-n_items // batch_size))
    batches, counted = [], 0
    for j in range(-(-total // world_size)):
        b = j * world_size + rank
        counted += b < total
        b %= total
        batches.append([stride * i for i in range(b * batch_size, min((b + 1) * batch_size, n_items))])
    return batches, counted
