"""Every source format round-trips: decoded packed tokens equal the documents joined with EOS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distributed_llm_trainer.data.corpus import stdlib_files, stdlib_root
from distributed_llm_trainer.data.pipeline import prepare_data
from distributed_llm_trainer.data.split import val_document_mask

from .data_corpora import (
    DOCS,
    expected_bytes,
    write_csv,
    write_json,
    write_jsonl,
    write_parquet,
    write_txt_dir,
)

EOS = "<|endoftext|>"


def _all_tokens(p) -> list[int]:
    return np.concatenate([np.asarray(p.train), np.asarray(p.val)]).tolist()


@pytest.mark.parametrize(
    "kind",
    ["txt_dir", "txt_glob", "jsonl", "json", "parquet", "csv"],
)
def test_format_round_trips_exactly(tmp_path: Path, make_cfg, kind: str) -> None:
    if kind == "txt_dir":
        path = str(write_txt_dir(tmp_path / "txt"))
    elif kind == "txt_glob":
        path = str(write_txt_dir(tmp_path / "txt")) + "/doc*.txt"
    else:
        writer = {"jsonl": write_jsonl, "json": write_json, "parquet": write_parquet, "csv": write_csv}[kind]
        path = str(writer(tmp_path / f"data.{kind}"))
    p = prepare_data(make_cfg(f"data.path={path}", "data.val_fraction=0"))
    assert p.train.dtype == np.uint16 and p.val.size == 0
    assert np.asarray(p.train).tolist() == expected_bytes(DOCS)  # exact ids, EOS (256) after every document
    assert p.stats["documents"] == len(DOCS) and p.stats["tokens"] == len(expected_bytes(DOCS))
    assert p.stats["bytes"] == sum(len(d.encode()) for d in DOCS)
    assert p.tokenizer.decode(np.asarray(p.train).tolist()) == "".join(d + EOS for d in DOCS)
    assert p.train_offsets.tolist() == np.cumsum([0] + [len(d.encode()) + 1 for d in DOCS]).tolist()


def test_text_field_is_configurable(tmp_path: Path, make_cfg) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", field="content")
    p = prepare_data(make_cfg(f"data.path={path}", "data.text_field=content", "data.val_fraction=0"))
    assert np.asarray(p.train).tolist() == expected_bytes(DOCS)


@pytest.mark.parametrize("tok", ["char", "bpe"])
def test_trained_tokenizers_round_trip(tmp_path: Path, make_cfg, tok: str) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", DOCS * 3)
    p = prepare_data(
        make_cfg(f"data.path={path}", f"tokenizer.type={tok}", "tokenizer.vocab_size=300", "data.val_fraction=0")
    )
    ids = np.asarray(p.train).tolist()
    assert p.tokenizer.decode(ids) == "".join(d + EOS for d in DOCS * 3)
    assert ids.count(p.eos_id) == len(DOCS) * 3  # the literal "<|endoftext|>" in a document is not EOS
    if tok == "char":
        assert len(p.tokenizer) == len(set("".join(DOCS))) + 1
        assert p.stats["tokens"] == sum(len(d) + 1 for d in DOCS * 3)


def test_document_split_is_seeded_and_partitions_documents(tmp_path: Path, make_cfg) -> None:
    docs = [f"document number {i} " * (1 + i % 3) for i in range(40)]
    path = write_jsonl(tmp_path / "d.jsonl", docs)
    p = prepare_data(make_cfg(f"data.path={path}", "data.val_fraction=0.1", "run.seed=7"))
    mask = val_document_mask(len(docs), 0.1, 7)
    assert p.stats["split"] == "documents" and p.stats["val_documents"] == 4 == mask.sum()
    assert np.asarray(p.train).tolist() == expected_bytes([d for d, m in zip(docs, mask) if not m])
    assert np.asarray(p.val).tolist() == expected_bytes([d for d, m in zip(docs, mask) if m])
    other = prepare_data(make_cfg(f"data.path={path}", "data.val_fraction=0.1", "run.seed=8"))
    assert not np.array_equal(np.asarray(other.val), np.asarray(p.val))


def test_single_file_falls_back_to_tail_split(tmp_path: Path, make_cfg) -> None:
    text = "".join(DOCS) * 20
    (tmp_path / "one.txt").write_text(text, encoding="utf-8")
    p = prepare_data(make_cfg(f"data.path={tmp_path / 'one.txt'}", "data.val_fraction=0.1"))
    stream = expected_bytes([text])
    cut = int(len(stream) * 0.9)
    assert p.stats["split"] == "tail"
    assert np.asarray(p.train).tolist() == stream[:cut] and np.asarray(p.val).tolist() == stream[cut:]
    assert p.train_offsets.tolist() == [0, cut] and p.val_offsets.tolist() == [0, len(stream) - cut]


def test_default_corpus_is_the_stdlib(make_cfg) -> None:
    files = stdlib_files()
    rel = [f.relative_to(stdlib_root()).as_posix() for f in files]
    assert rel == sorted(rel) and "os.py" in rel and len(files) > 100
    assert not any(r.startswith(("site-packages/", "dist-packages/", "test/", "idlelib/")) for r in rel)
    p = prepare_data(make_cfg("data.max_documents=3", "data.val_fraction=0"))
    texts = [f.read_text(encoding="utf-8") for f in files]
    assert np.asarray(p.train).tolist() == expected_bytes([t for t in texts[:3] if t])  # empty files dropped
