"""TokenDataModule: batch layout, exact per-epoch coverage across ranks, and exact resume of the loader."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from distributed_llm_trainer.data.datamodule import TokenDataModule
from distributed_llm_trainer.data.pipeline import prepare_data

from .data_corpora import write_jsonl

SEQ = 8


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    letters = list("abcdefghijklmnopqrstuvwxyz ")  # random text: every 8-token window is unique
    docs = ["".join(rng.choice(letters, size=int(rng.integers(20, 200)))) for _ in range(60)]
    return write_jsonl(tmp_path / "d.jsonl", docs)


def _dm(make_cfg, corpus: Path, *extra: str, rank: int = 0, world: int = 1) -> TokenDataModule:
    cfg = make_cfg(f"data.path={corpus}", f"data.seq_len={SEQ}", "training.batch_size=4", *extra)
    dm = TokenDataModule(cfg, prepare_data(cfg))
    if world > 1 or rank:
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=world)
    return dm


def _key(batch: dict[str, torch.Tensor]) -> list[tuple[int, ...]]:
    return [tuple(row.tolist()) for row in batch["input_ids"]]


def test_packed_batches_are_next_token_windows(make_cfg, corpus: Path) -> None:
    dm = _dm(make_cfg, corpus, "data.shuffle=false", "data.random_offset=false")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "targets"}
    assert batch["input_ids"].shape == (4, SEQ) and batch["input_ids"].dtype == torch.long
    train = np.asarray(dm.prepared.train).astype(np.int64)
    for i in range(4):  # unshuffled: window i starts at i * seq_len and spans seq_len + 1 tokens
        w = torch.from_numpy(train[i * SEQ : i * SEQ + SEQ + 1])
        assert torch.equal(batch["input_ids"][i], w[:-1]) and torch.equal(batch["targets"][i], w[1:])


def test_unpacked_batches_pad_and_mask(make_cfg, corpus: Path) -> None:
    dm = _dm(make_cfg, corpus, "data.pack=false", "data.shuffle=false")
    p = dm.prepared
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "targets", "attention_mask"}
    train = np.asarray(p.train).astype(np.int64)
    for i in range(4):
        doc = train[p.train_offsets[i] : p.train_offsets[i + 1]][: SEQ + 1]
        n = len(doc)
        assert batch["input_ids"][i, : min(n, SEQ)].tolist() == doc[:SEQ].tolist()
        assert batch["attention_mask"][i].tolist() == [1] * min(n, SEQ) + [0] * (SEQ - min(n, SEQ))
        assert batch["targets"][i, : n - 1].tolist() == doc[1:].tolist()
        assert (batch["targets"][i, n - 1 :] == -100).all()
        assert (batch["input_ids"][i, n:] == p.pad_id).all()


@pytest.mark.parametrize("world", [1, 2, 3])
def test_each_window_once_per_epoch_across_ranks(make_cfg, corpus: Path, world: int) -> None:
    for epoch in (0, 1):
        seen, n_batches = [], set()
        for rank in range(world):
            dm = _dm(make_cfg, corpus, rank=rank, world=world)
            loader = dm.train_dataloader()
            loader.sampler.set_epoch(epoch)
            batches = list(loader)
            n_batches.add(len(batches))
            seen += [s for b in batches for s in _key(b)]
        n = dm.train_windows()
        rest = n % (4 * world)
        assert len(n_batches) == 1
        assert len(seen) == n - (rest if rest < world else 0)
        starts = {tuple(k) for k in seen}
        assert len(starts) == len(seen)  # no window twice


def test_val_loader_equal_batches_on_every_rank(make_cfg, corpus: Path) -> None:
    counts = set()
    for rank in range(3):
        dm = _dm(make_cfg, corpus, "data.val_fraction=0.1", rank=rank, world=3)
        val = dm.val_dataloader()
        counts.add(len(list(val)))
        assert [_key(b) for b in val] == [_key(b) for b in dm.val_dataloader()]  # deterministic
    assert len(counts) == 1 and counts.pop() >= 1


def _run(loader, epochs: range, stop: int | None = None) -> list:
    out = []
    for epoch in epochs:
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            out.append(_key(batch))
            if stop is not None and len(out) == stop:
                return out
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_resume_is_exact_across_epoch_boundary(make_cfg, corpus: Path, workers: int) -> None:
    extra = (f"data.num_workers={workers}", "training.batch_size=16")
    ref = _run(_dm(make_cfg, corpus, *extra).train_dataloader(), range(3))
    per_epoch = len(ref) // 3
    for stop in (3, per_epoch, per_epoch + 2):  # mid-epoch, exactly at the boundary, just after it
        loader = _dm(make_cfg, corpus, *extra).train_dataloader()
        head = _run(loader, range(3), stop=stop)
        state = loader.state_dict()
        resumed = _dm(make_cfg, corpus, *extra).train_dataloader()
        resumed.load_state_dict(state)
        epoch = stop // per_epoch
        tail = []
        for e in range(epoch, 3):
            resumed.sampler.set_epoch(e)  # what Lightning does before each epoch
            tail += [_key(b) for b in resumed]
        assert head + tail == ref, stop


def test_skip_after_restore_skips_whole_batches(make_cfg, corpus: Path) -> None:
    ref = _run(_dm(make_cfg, corpus).train_dataloader(), range(1))
    loader = _dm(make_cfg, corpus).train_dataloader()
    head = _run(loader, range(1), stop=2)
    state = loader.state_dict()
    dm = _dm(make_cfg, corpus)
    dm.skip_after_restore(3 * 4)  # three micro-batches of 4
    resumed = dm.train_dataloader()
    resumed.load_state_dict(state)
    assert head + [_key(b) for b in resumed] == ref[:2] + ref[5:]
    assert dm.train_batches_per_rank() == len(ref)
