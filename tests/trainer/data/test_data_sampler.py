"""Sharded train sampler: exact coverage per epoch, seeded reshuffles, resumable state; padded val shards."""

from __future__ import annotations

import numpy as np
import pytest

from distributed_llm_trainer.data.sampler import ShardedSampler, _rank_slices, val_keys


def _epoch(n: int, world: int, batch: int, epoch: int, **kw) -> list[list[int]]:
    out = []
    for rank in range(world):
        s = ShardedSampler(n, batch, rank=rank, world_size=world, seed=3, **kw)
        s.set_epoch(epoch)
        out.append(list(s))
    return out


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 7, 24, 25, 50])
def test_every_window_once_per_epoch(world: int, n: int) -> None:
    batch = 4
    for epoch in range(2):
        shards = _epoch(n, world, batch, epoch)
        flat = [k for s in shards for k in s]
        assert len(flat) == len(set(flat))  # no duplicates within or across ranks
        rest = n % (batch * world)
        dropped = rest if rest < world else 0  # only a remainder too small to give every rank one item
        assert len(flat) == n - dropped
        assert set(flat) <= set(range(n))
        if world == 1:
            assert sorted(flat) == list(range(n))
        batches = [-(-len(s) // batch) for s in shards]
        assert len(set(batches)) == 1  # every rank runs the same number of batches (no DDP deadlock)


def test_slices_cover_the_rank_share() -> None:
    assert _rank_slices(10, 2, 3, 0) == [(0, 3), (6, 8)]
    assert _rank_slices(10, 2, 3, 1) == [(3, 6), (8, 10)]


def test_reshuffles_each_epoch_with_a_seed() -> None:
    a0, a1 = (_epoch(100, 1, 8, e)[0] for e in (0, 1))
    assert a0 != a1 and sorted(a0) == sorted(a1)
    assert _epoch(100, 1, 8, 1)[0] == a1  # same seed and epoch -> same order
    assert _epoch(10, 1, 4, 0, shuffle=False)[0] == list(range(10))


def test_random_offset_shifts_the_grid_per_epoch() -> None:
    shifts = set()
    for epoch in range(20):
        s = ShardedSampler(30, 4, seed=1, stride=16, max_shift=15)
        s.set_epoch(epoch)
        keys = list(s)
        shift = min(keys) % 16
        assert all((k - shift) % 16 == 0 for k in keys) and 0 <= shift <= 15
        shifts.add(shift)
    assert len(shifts) > 5


@pytest.mark.parametrize("stop", [0, 3, 13, 25])
def test_state_resumes_at_the_next_item_across_epochs(stop: int) -> None:
    n, batch = 25, 4  # 25 items -> 25 per epoch on one rank
    ref = ShardedSampler(n, batch, seed=5)
    stream = []
    for e in range(3):
        ref.set_epoch(e)
        stream += list(ref)
    s = ShardedSampler(n, batch, seed=5)
    it = iter(s)
    for _ in range(stop):
        next(it)
    state = s.state_dict()
    t = ShardedSampler(n, batch, seed=5)
    t.load_state_dict(state)
    got = list(t)  # rest of the interrupted epoch (or the next one when stopped at the end)
    e = t.epoch
    while len(got) + stop < 3 * n:
        e += 1
        t.set_epoch(e)
        got += list(t)
    assert got == stream[stop:]


def test_restore_at_epoch_end_continues_with_the_next_epoch() -> None:
    ref = ShardedSampler(10, 4, seed=5)
    ref.set_epoch(1)
    for announced in (0, 1):  # Lightning may call set_epoch(e + 1) before or after building the iterator
        s = ShardedSampler(10, 4, seed=5)
        s.set_epoch(announced)
        s.load_state_dict({"epoch": 0, "position": 10})
        assert s.state_dict() == {"epoch": 0, "position": 10}
        assert list(s) == list(ref) and s.epoch == 1


def test_val_keys_pad_by_wrapping() -> None:
    shards = [val_keys(5, r, 3, stride=10) for r in range(3)]
    assert [len(s) for s in shards] == [2, 2, 2]
    assert {k for s in shards for k in s} == {0, 10, 20, 30, 40}
    assert val_keys(1, 2, 3) == [0]  # a tiny val split still gives every rank one batch
    assert np.array_equal(val_keys(4, 0, 1), [0, 1, 2, 3])
