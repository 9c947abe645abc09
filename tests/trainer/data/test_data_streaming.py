"""data.streaming: tokenized on the fly, hash-held-out validation, rank shards, exact resume with workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from distributed_llm_trainer.data.datamodule import TokenDataModule
from distributed_llm_trainer.data.pipeline import prepare_data
from distributed_llm_trainer.data.stream_build import is_val_text
from distributed_llm_trainer.data.streaming import StreamingWindows

from .data_corpora import DOCS, expected_bytes, write_jsonl, write_txt_dir

SEQ = 16
TEXTS = [f"{i}: {DOCS[i % len(DOCS)]}" for i in range(60)]


def _cfg(make_cfg, path: Path, *extra: str):
    return make_cfg(
        f"data.path={path}",
        "data.streaming=true",
        f"data.seq_len={SEQ}",
        "training.batch_size=4",
        "data.val_fraction=0.2",
        *extra,
    )


def _one_epoch(ds: StreamingWindows) -> list[dict]:
    out = []
    for sample in ds:
        if ds.state_dict()["epoch"] > 0:
            break
        out.append(sample)
    return out


def test_stream_is_the_packed_train_documents(tmp_path: Path, make_cfg) -> None:
    cfg = _cfg(make_cfg, write_txt_dir(tmp_path / "txt", TEXTS))
    p = prepare_data(cfg)
    train = [t for t in TEXTS if not is_val_text(t, cfg.run.seed, 0.2)]
    val = [t for t in TEXTS if is_val_text(t, cfg.run.seed, 0.2)]
    assert p.streaming and 0 < len(val) < len(TEXTS) and p.train.size == 0
    assert np.asarray(p.val).tolist() == expected_bytes(val)  # held-out docs are cached for validation
    stream = np.asarray(expected_bytes(train))
    samples = _one_epoch(StreamingWindows(cfg, str(p.tokenizer_dir)))
    assert len(samples) == (len(stream) - 1) // SEQ
    for i, s in enumerate(samples):
        w = torch.from_numpy(stream[i * SEQ : i * SEQ + SEQ + 1])
        assert torch.equal(s["input_ids"], w[:-1]) and torch.equal(s["targets"], w[1:])


def test_ranks_read_disjoint_documents(tmp_path: Path, make_cfg) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", TEXTS)
    cfg = _cfg(make_cfg, path, "data.pack=false")
    p = prepare_data(cfg)
    seen = []
    for rank in range(2):
        docs = _one_epoch(StreamingWindows(cfg, str(p.tokenizer_dir), rank, 2))
        seen += [d["input_ids"][d["attention_mask"].bool()].tolist() for d in docs]
    train = [t for t in TEXTS if not is_val_text(t, cfg.run.seed, 0.2)]
    assert sorted(seen) == sorted(expected_bytes([t])[:SEQ] for t in train)  # each doc once, over both ranks


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_resume_is_exact(tmp_path: Path, make_cfg, workers: int) -> None:
    cfg = _cfg(make_cfg, write_txt_dir(tmp_path / "txt", TEXTS), f"data.num_workers={workers}")
    p = prepare_data(cfg)

    def loader():
        return TokenDataModule(cfg, p).train_dataloader()

    ref_it = iter(loader())
    ref = [next(ref_it)["input_ids"] for _ in range(60)]  # > one epoch of this tiny corpus
    for stop in (7, 41):
        run = loader()
        it = iter(run)
        head = [next(it)["input_ids"] for _ in range(stop)]
        state = run.state_dict()
        resumed = loader()
        resumed.load_state_dict(state)
        it2 = iter(resumed)
        tail = [next(it2)["input_ids"] for _ in range(60 - stop)]
        assert all(torch.equal(a, b) for a, b in zip(head + tail, ref)), stop
