"""Sharded train sampler: exact coverage per epoch, seeded reshuffles, resumable state; padded val shards."""

from __future__ import annotations

import pytest

from distributed_llm_trainer.data.sampler import ShardedSampler, _rank_slices, val_batches


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
        s.load_state_dict({"epoch": 0, "position": 10})  # a state saved before ``consumed`` existed
        assert s.state_dict()["epoch"] == 0 and s.state_dict()["consumed"] == 10
        assert list(s) == list(ref) and s.epoch == 1


def _steps(n: int, world: int, batch: int, global_batch: int, steps: int, state: dict | None,
           epoch: int = 0) -> tuple[list[int], dict]:
    """Keys all ranks of ``world`` read in ``steps`` optimizer steps after ``state``, and rank 0's state then."""
    accumulation = global_batch // (batch * world)
    read: list[int] = []
    state0: dict = {}
    for rank in range(world):
        s = ShardedSampler(n, batch, rank=rank, world_size=world, seed=7)
        s.set_epoch(epoch)
        if state is not None:
            s.load_state_dict(state)
        it = iter(s)
        for _ in range(steps * accumulation * batch):
            read.append(next(it))
        if rank == 0:
            state0 = s.state_dict()
    return read, state0


@pytest.mark.parametrize("worlds", [(2, 3, 1), (1, 3, 2), (3, 1, 3)])
def test_resume_on_another_world_reads_every_window_once(worlds: tuple[int, int, int]) -> None:
    """2 -> 3 -> 1 ranks with the global batch fixed: the windows read are exactly an uninterrupted run's."""
    n, batch, global_batch = 200, 2, 12  # 16 full steps per epoch on any of the worlds
    plan = [3, 5, 4]  # steps run by each world
    ref, _ = _steps(n, 1, batch, global_batch, sum(plan), None)
    got: list[int] = []
    state = None
    for world, steps in zip(worlds, plan, strict=True):
        read, state = _steps(n, world, batch, global_batch, steps, state)
        got += read
        assert state["consumed"] == len(got) and state["world_size"] == world
    assert sorted(got) == sorted(ref) and len(set(got)) == len(got)


def test_len_and_position_count_the_consumed_prefix() -> None:
    """Lightning's batch counters see the epoch as if the new world had run all of it."""
    full = ShardedSampler(100, 2, rank=1, world_size=3, seed=1)
    _, state = _steps(100, 2, 2, 12, 2, None)  # 24 items consumed by 2 ranks
    s = ShardedSampler(100, 2, rank=1, world_size=3, seed=1)
    s.load_state_dict(state)
    assert len(s) == len(full)
    it = iter(s)
    next(it)
    assert s.position == 24 // 3 + 1 and s.consumed() == 24 + 3  # rank 1's share of the prefix, then one more item
    assert len(list(it)) == len(s) - 24 // 3 - 1


def test_world_change_at_an_epoch_end_starts_the_next_epoch_whole() -> None:
    n, batch = 30, 2  # one rank: 30 items; three ranks: 5 rounds of 6
    s = ShardedSampler(n, batch, seed=2)
    list(s)
    state = s.state_dict()
    assert state["consumed"] == n
    epoch1 = []
    for rank in range(3):
        t = ShardedSampler(n, batch, rank=rank, world_size=3, seed=2)
        t.load_state_dict(state)
        epoch1 += list(t)
        assert t.epoch == 1
    assert sorted(epoch1) == list(range(n))


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize(("n", "limit"), [(40, 5), (9, 5), (5, 5), (1, 3), (40, 1)])
def test_val_batches_count_a_single_process_batches_on_any_world(world: int, n: int, limit: int) -> None:
    single, counted1 = val_batches(n, 0, 1, 4, limit, stride=10)
    assert single[:counted1] == [[10 * i for i in range(b * 4, min(b * 4 + 4, n))] for b in range(counted1)]
    shards = [val_batches(n, r, world, 4, limit, stride=10) for r in range(world)]
    assert len({len(b) for b, _ in shards}) == 1  # every rank runs as many batches (FSDP collectives)
    counted = sorted(tuple(batch) for b, c in shards for batch in b[:c])
    assert counted == sorted(tuple(batch) for batch in single[:counted1])  # the same val set, batch for batch


def test_a_tiny_val_split_still_gives_every_rank_a_batch() -> None:
    assert val_batches(1, 2, 3, 4, 10) == ([[0]], 0)
    assert val_batches(0, 0, 2, 4, 10) == ([], 0)
