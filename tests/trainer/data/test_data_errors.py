"""Each bad input is one UserError naming the key, and leaves nothing in the cache a later run would trust."""

from __future__ import annotations

from pathlib import Path

import pytest

from distributed_llm_trainer.data.cache import cache_root
from distributed_llm_trainer.data.pipeline import prepare_data
from distributed_llm_trainer.data.utf8 import first_invalid_byte
from distributed_llm_trainer.errors import UserError

from .data_corpora import write_jsonl


def _trusted_entries(cfg) -> list[Path]:
    root = cache_root(cfg)
    return [p for p in root.iterdir() if p.is_dir()] if root.exists() else []


def _fails(cfg, what: str, *words: str) -> UserError:
    with pytest.raises(UserError) as e:
        prepare_data(cfg)
    assert e.value.what == what, e.value
    for w in words:
        assert w in e.value.why, e.value.why
    assert "\n" not in e.value.line()
    assert _trusted_entries(cfg) == []  # no entry, no temp/work folder left behind
    return e.value


def test_missing_path(tmp_path: Path, make_cfg) -> None:
    _fails(make_cfg(f"data.path={tmp_path / 'nope.txt'}"), "data.path", "does not exist")


def test_glob_without_matches(tmp_path: Path, make_cfg) -> None:
    _fails(make_cfg(f"data.path={tmp_path}/x/*.txt"), "data.path", "no files match", "check the glob")


def test_empty_file(tmp_path: Path, make_cfg) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    _fails(make_cfg(f"data.path={tmp_path / 'empty.txt'}"), "data.path", "empty")


def test_unsupported_suffix(tmp_path: Path, make_cfg) -> None:
    (tmp_path / "a.docx").write_text("x")
    _fails(make_cfg(f"data.path={tmp_path / 'a.docx'}"), "data.path", "unsupported")


def test_missing_text_field(tmp_path: Path, make_cfg) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", field="body")
    _fails(make_cfg(f"data.path={path}"), "data.text_field", "'text'", "body")


def test_bad_utf8_error_names_file_and_offset(tmp_path: Path, make_cfg) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes("héllo wörld ".encode() * 10 + b"\xff\xfe tail")
    assert first_invalid_byte(bad) == len("héllo wörld ".encode()) * 10
    err = _fails(make_cfg(f"data.path={bad}", "data.encoding_errors=error"), "data.encoding_errors", str(bad))
    assert f"byte offset {len('héllo wörld '.encode()) * 10}" in err.why


def test_bad_utf8_in_jsonl_error_and_replace(tmp_path: Path, make_cfg) -> None:
    bad = tmp_path / "bad.jsonl"
    good = b'{"text": "fine document number one, long enough"}\n'
    bad.write_bytes(good + b'{"text": "broken \xc3 byte here and more text"}\n')
    _fails(
        make_cfg(f"data.path={bad}", "data.encoding_errors=error"), "data.encoding_errors", f"offset {len(good) + 17}"
    )
    p = prepare_data(make_cfg(f"data.path={bad}", "data.val_fraction=0", "data.seq_len=4", "tokenizer.type=char"))
    assert "broken \ufffd byte" in p.tokenizer.decode(list(p.train))


def test_first_invalid_byte_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import distributed_llm_trainer.data.utf8 as utf8

    monkeypatch.setattr(utf8, "_CHUNK", 7)
    f = tmp_path / "f.txt"
    f.write_bytes("aaaaaé".encode() + "€".encode()[:2])  # é straddles a chunk edge; € is truncated
    assert first_invalid_byte(f) == 7
    f.write_bytes("aaaaaéé€".encode())
    assert first_invalid_byte(f) is None


def test_corpus_shorter_than_one_window(tmp_path: Path, make_cfg) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", ["tiny"])
    _fails(make_cfg(f"data.path={path}", "data.seq_len=64"), "data.seq_len", "fewer than one window")


def test_vocab_too_small(tmp_path: Path, make_cfg) -> None:
    path = write_jsonl(tmp_path / "d.jsonl")
    _fails(make_cfg(f"data.path={path}", "tokenizer.type=bpe", "tokenizer.vocab_size=100"), "tokenizer.vocab_size")


def test_everything_filtered_out(tmp_path: Path, make_cfg) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", ["a", "bb"])
    _fails(make_cfg(f"data.path={path}", "data.min_chars=50"), "data.min_chars")


def test_documents_split_with_one_document(tmp_path: Path, make_cfg) -> None:
    (tmp_path / "one.txt").write_text("x" * 100)
    _fails(make_cfg(f"data.path={tmp_path / 'one.txt'}", "data.split=documents"), "data.split", "tail")


def test_hub_dataset_unreachable(make_cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True, raising=False)
    err = _fails(make_cfg("data.hf_name=nobody/no-such-dataset-xyz"), "data.hf_name", "nobody/no-such-dataset-xyz")
    assert "HF_HUB_OFFLINE" in err.why
