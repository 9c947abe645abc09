"""Built-in preprocessing (normalize, strip, min_chars, dedup), the user hook, and max_documents."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pytest

from distributed_llm_trainer.config.schema import DataConfig
from distributed_llm_trainer.data.pipeline import prepare_data
from distributed_llm_trainer.data.preprocess import Preprocessor
from distributed_llm_trainer.errors import UserError

from .data_corpora import expected_bytes, write_jsonl

RAW = ["  Cafe\u0301 ok  ", "dup", "x", "dup", "", "  Cafe\u0301 ok  ", "a longer document\n"]


def test_builtins_in_order() -> None:
    pre = Preprocessor(DataConfig(normalize="NFC", strip=True, min_chars=2, dedup=True))
    assert pre.texts(RAW) == ["Café ok", "dup", "a longer document"]
    assert Preprocessor(DataConfig()).texts(RAW) == [t for t in RAW if t]  # only empty documents dropped


def test_dedup_spans_batches() -> None:
    pre = Preprocessor(DataConfig(dedup=True))
    assert pre({"text": ["a", "b"]}) == {"text": ["a", "b"]}
    assert pre({"text": ["b", "c", None]}) == {"text": ["c"]}


def test_preprocessing_through_the_pipeline(tmp_path: Path, make_cfg) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", RAW * 3)
    p = prepare_data(
        make_cfg(
            f"data.path={path}",
            "data.normalize=NFKC",
            "data.strip=true",
            "data.min_chars=2",
            "data.dedup=true",
            "data.val_fraction=0",
        )
    )
    want = [unicodedata.normalize("NFKC", "Cafe\u0301 ok"), "dup", "a longer document"]
    assert np.asarray(p.train).tolist() == expected_bytes(want)
    assert p.stats["documents"] == 3


def test_user_hook(tmp_path: Path, make_cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_hooks_a.py").write_text(
        "def shout(texts):\n    return [t.upper() for t in texts if 'skip' not in t]\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_jsonl(tmp_path / "d.jsonl", ["hello", "skip me", "world"])
    p = prepare_data(
        make_cfg(f"data.path={path}", "data.preprocess=my_hooks_a:shout", "data.val_fraction=0", "data.seq_len=4")
    )
    assert np.asarray(p.train).tolist() == expected_bytes(["HELLO", "WORLD"])


def test_max_documents(tmp_path: Path, make_cfg) -> None:
    docs = [f"doc {i}" for i in range(10)]
    path = write_jsonl(tmp_path / "d.jsonl", docs)
    p = prepare_data(make_cfg(f"data.path={path}", "data.max_documents=4", "data.val_fraction=0", "data.seq_len=4"))
    assert np.asarray(p.train).tolist() == expected_bytes(docs[:4])


@pytest.mark.parametrize("spec", ["no_such_module_xyz:f", "os:no_such_function", "missing-colon"])
def test_hook_that_cannot_be_imported(make_cfg, spec: str) -> None:
    with pytest.raises(UserError) as e:
        prepare_data(make_cfg(f"data.preprocess={spec}"))
    assert e.value.what == "data.preprocess"


def test_hook_returning_garbage(tmp_path: Path, make_cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_hooks_b.py").write_text("def bad(texts):\n    return len(texts)\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_jsonl(tmp_path / "d.jsonl", ["a", "b"])
    with pytest.raises(UserError) as e:
        prepare_data(make_cfg(f"data.path={path}", "data.preprocess=my_hooks_b:bad"))
    assert e.value.what == "data.preprocess" and "list of str" in e.value.why
