"""Tokenizer types, exact decoding, fingerprints, fast paths equal to the Rust encoder, vocab checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distributed_llm_trainer.config.schema import TokenizerConfig
from distributed_llm_trainer.data.encode import Encoder
from distributed_llm_trainer.data.tokenizer import (
    build_byte,
    build_char,
    load_pretrained,
    load_tokenizer,
    save_tokenizer,
    tokenizer_fingerprint,
    train_bpe,
)
from distributed_llm_trainer.errors import UserError

from .data_corpora import DOCS

SHAKESPEARE_CHARS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # the classic 65


def test_char_tokenizer_is_the_classic_char_vocab_and_exact() -> None:
    tok = build_char(SHAKESPEARE_CHARS, TokenizerConfig(type="char"))
    assert len(SHAKESPEARE_CHARS) == 65 and len(tok) == 66
    assert tok.eos_token_id == tok.pad_token_id == 65
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n\n$&3"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids == [SHAKESPEARE_CHARS.index(c) for c in text]
    assert tok.decode(ids) == text


def test_byte_tokenizer_ids_are_bytes() -> None:
    tok = build_byte(TokenizerConfig(type="byte"))
    text = "héllo 🙂\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids == list(text.encode("utf-8")) and len(tok) == 257 and tok.eos_token_id == 256
    assert tok.decode(ids) == text


def test_bpe_trains_to_vocab_size_and_decodes_exactly() -> None:
    tok = train_bpe(DOCS * 50, TokenizerConfig(type="bpe", vocab_size=400))
    assert 257 < len(tok) <= 400 and tok.convert_ids_to_tokens(tok.eos_token_id) == "<|endoftext|>"
    for d in DOCS:
        assert tok.decode(tok(d, add_special_tokens=False)["input_ids"]) == d


@pytest.mark.parametrize("kind", ["char", "byte", "bpe"])
def test_fast_encoder_matches_rust_encoder(kind: str) -> None:
    docs = DOCS + ["unseen ☃ char", "<|endoftext|>"]
    if kind == "char":
        tok = build_char("".join(DOCS), TokenizerConfig(type="char"), unk=True)
    elif kind == "byte":
        tok = build_byte(TokenizerConfig(type="byte"))
    else:
        tok = train_bpe(DOCS * 10, TokenizerConfig(type="bpe", vocab_size=300))
    enc = Encoder(tok, kind)
    rust = [e.ids for e in enc.backend.encode_batch(docs, add_special_tokens=False)]
    assert [a.tolist() for a in enc.encode(docs)] == rust
    flat, lengths = enc.encode_flat(docs)
    assert lengths.tolist() == [len(r) + 1 for r in rust]
    assert flat.tolist() == [i for r in rust for i in r + [tok.eos_token_id]]


def test_long_documents_are_cut_without_changing_bpe_ids() -> None:
    from distributed_llm_trainer.data.encode import split_long

    text = "".join(DOCS) * 400 + "x\n\n  y\nz\n" * 500
    tok = train_bpe([text], TokenizerConfig(type="bpe", vocab_size=400))
    pieces = split_long(text, piece=1000)
    assert len(pieces) > 10 and "".join(pieces) == text
    enc = Encoder(tok, "bpe")
    assert enc.encode([text])[0].tolist() == enc.backend.encode(text, add_special_tokens=False).ids


def test_fingerprint_is_stable_across_save_and_load(tmp_path: Path) -> None:
    a = train_bpe(DOCS * 10, TokenizerConfig(type="bpe", vocab_size=300))
    save_tokenizer(a, tmp_path / "a")
    b = load_tokenizer(tmp_path / "a")
    assert tokenizer_fingerprint(a) == tokenizer_fingerprint(b)
    assert b.decode(b(DOCS[2], add_special_tokens=False)["input_ids"]) == DOCS[2]
    other = train_bpe(DOCS * 10, TokenizerConfig(type="bpe", vocab_size=290))
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(a)
    assert tokenizer_fingerprint(build_byte(TokenizerConfig(type="byte"))) != tokenizer_fingerprint(a)


def test_hf_tokenizer_from_local_folder(tmp_path: Path, make_cfg) -> None:
    from distributed_llm_trainer.data.pipeline import prepare_data

    from .data_corpora import write_jsonl

    src = train_bpe(DOCS * 10, TokenizerConfig(type="bpe", vocab_size=300))
    src.save_pretrained(str(tmp_path / "tok"))
    tok = load_pretrained(str(tmp_path / "tok"))
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token is not None
    path = write_jsonl(tmp_path / "d.jsonl")
    args = [
        f"data.path={path}",
        "tokenizer.type=hf",
        f"tokenizer.name_or_path={tmp_path / 'tok'}",
        "data.val_fraction=0",
    ]
    p = prepare_data(make_cfg(*args))
    assert p.tokenizer.decode(np.asarray(p.train).tolist()) == "".join(d + "<|endoftext|>" for d in DOCS)
    assert tokenizer_fingerprint(p.tokenizer) == tokenizer_fingerprint(tok)
    again = prepare_data(make_cfg(*args))
    assert again.stats["cache_hit"] and tokenizer_fingerprint(again.tokenizer) == tokenizer_fingerprint(tok)


def test_hf_tokenizer_that_cannot_load_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError) as e:
        load_pretrained(str(tmp_path / "no-such-tokenizer"))
    assert e.value.what == "tokenizer.name_or_path"


@pytest.mark.parametrize(("kind", "size"), [("bpe", 200), ("byte", 100)])
def test_vocab_too_small_names_the_key(kind: str, size: int) -> None:
    cfg = TokenizerConfig(type=kind, vocab_size=size)
    with pytest.raises(UserError) as e:
        train_bpe(DOCS, cfg) if kind == "bpe" else build_byte(cfg)
    assert e.value.what == "tokenizer.vocab_size" and "257" in e.value.why


def test_char_vocab_too_small_names_the_key() -> None:
    with pytest.raises(UserError) as e:
        build_char("abcdefghij", TokenizerConfig(type="char", vocab_size=5))
    assert e.value.what == "tokenizer.vocab_size"
