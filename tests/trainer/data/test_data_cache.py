"""Token cache: reuse without tokenizing, invalidation on any input change, atomic and concurrent builds."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest

import distributed_llm_trainer.data.build as build_mod
from distributed_llm_trainer.data.cache import cache_root
from distributed_llm_trainer.data.pipeline import prepare_data

from .data_corpora import DOCS, write_jsonl


def _forbid_building(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a, **k):
        raise AssertionError("cache miss: tokenization ran")

    monkeypatch.setattr(build_mod, "build_entry", boom)
    monkeypatch.setattr(build_mod.Encoder, "encode", boom)


def test_second_run_skips_tokenization(tmp_path: Path, make_cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", DOCS * 5)
    cfg = make_cfg(f"data.path={path}", "tokenizer.type=bpe", "tokenizer.vocab_size=300")
    first = prepare_data(cfg)
    assert first.stats["cache_hit"] is False
    _forbid_building(monkeypatch)
    second = prepare_data(cfg)
    assert second.stats["cache_hit"] is True and second.stats["cache_key"] == first.stats["cache_key"]
    assert np.array_equal(second.train, first.train) and np.array_equal(second.val, first.val)
    assert isinstance(second.train, np.memmap)
    assert second.tokenizer.get_vocab() == first.tokenizer.get_vocab()


@pytest.mark.parametrize(
    "change",
    ["touch", "seed", "tokenizer", "vocab", "preprocess", "split", "field"],
)
def test_any_input_change_invalidates(tmp_path: Path, make_cfg, change: str) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", DOCS * 5)
    write_jsonl(tmp_path / "e.jsonl", DOCS * 5, field="body")
    base = [f"data.path={path}", "tokenizer.type=bpe", "tokenizer.vocab_size=300"]
    key = prepare_data(make_cfg(*base)).stats["cache_key"]
    extra = {
        "seed": ["run.seed=1"],
        "tokenizer": ["tokenizer.type=char"],
        "vocab": ["tokenizer.vocab_size=290"],
        "preprocess": ["data.strip=true"],
        "split": ["data.val_fraction=0.2"],
        "field": [f"data.path={tmp_path / 'e.jsonl'}", "data.text_field=body"],
        "touch": [],
    }[change]
    if change == "touch":
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    again = prepare_data(make_cfg(*base, *extra))
    assert again.stats["cache_hit"] is False and again.stats["cache_key"] != key


def test_seq_len_and_loader_settings_reuse_the_cache(tmp_path: Path, make_cfg) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", DOCS * 5)
    key = prepare_data(make_cfg(f"data.path={path}")).stats["cache_key"]
    p = prepare_data(make_cfg(f"data.path={path}", "data.seq_len=8", "data.pack=false", "data.num_workers=2"))
    assert p.stats["cache_hit"] is True and p.stats["cache_key"] == key


def test_failed_build_leaves_nothing(tmp_path: Path, make_cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", DOCS * 5)
    cfg = make_cfg(f"data.path={path}")

    def crash(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(build_mod, "save_tokenizer", crash)  # fails after the token files were written
    with pytest.raises(RuntimeError):
        prepare_data(cfg)
    assert [p for p in cache_root(cfg).iterdir() if p.is_dir()] == []
    monkeypatch.undo()
    assert prepare_data(cfg).stats["cache_hit"] is False


def _worker(cfg_json: str, queue) -> None:
    from distributed_llm_trainer.config import Config

    p = prepare_data(Config.model_validate_json(cfg_json))
    queue.put((p.stats["cache_hit"], p.stats["cache_key"], int(np.asarray(p.train).sum())))


def test_concurrent_processes_build_once(tmp_path: Path, make_cfg) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", DOCS * 50)
    cfg = make_cfg(f"data.path={path}", "tokenizer.type=bpe", "tokenizer.vocab_size=300")
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(cfg.model_dump_json(), queue)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    hits = sorted(r[0] for r in results)
    assert hits == [False, True, True]  # one process built, the others waited and read the cache
    assert len({r[1] for r in results}) == 1 and len({r[2] for r in results}) == 1
    assert len([p for p in cache_root(cfg).iterdir() if p.is_dir()]) == 1


def test_leftovers_of_a_killed_build_are_never_trusted(tmp_path: Path, make_cfg) -> None:
    from distributed_llm_trainer.data.cache import cache_key
    from distributed_llm_trainer.data.pipeline import key_parts
    from distributed_llm_trainer.data.sources import resolve_source

    path = write_jsonl(tmp_path / "d.jsonl", DOCS * 5)
    cfg = make_cfg(f"data.path={path}")
    key = cache_key(key_parts(cfg, resolve_source(cfg.data)))
    root = cache_root(cfg)
    for stale in (f".tmp-{key}-dead", f".work-{key}-dead"):  # what a SIGKILL mid-build leaves
        (root / stale).mkdir(parents=True)
        (root / stale / "meta.json").write_text("{}")
        (root / stale / "train.bin").write_bytes(b"\0" * 10)
    p = prepare_data(cfg)
    assert p.stats["cache_hit"] is False and p.train.size > 10
    assert sorted(x.name for x in root.iterdir() if x.is_dir()) == [key]
