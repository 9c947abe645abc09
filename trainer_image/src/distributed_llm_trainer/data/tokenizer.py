"""Tokenizers: trained byte-level BPE, character level, raw bytes, or a pretrained HF tokenizer.

All are ``tokenizers.Tokenizer`` objects wrapped in ``PreTrainedTokenizerFast`` (eos and pad set; our own
tokenizers use ``<|endoftext|>`` for both, so ``len(tokenizer)`` counts no extra pad row), saved with
``save_pretrained`` and reloaded with ``load_tokenizer``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from ..config.schema import TokenizerConfig
from ..errors import UserError

EOS = "<|endoftext|>"
UNK = "<unk>"
N_BYTES = 256


def tokenizer_settings(cfg: TokenizerConfig) -> dict[str, Any]:
    """The tokenizer settings that change the token ids (part of the cache key)."""
    out: dict[str, Any] = {"type": cfg.type}
    if cfg.type == "bpe":
        out.update(vocab_size=cfg.vocab_size, train_sample_bytes=cfg.train_sample_bytes)
    elif cfg.type == "hf":
        out.update(name_or_path=cfg.name_or_path, local=_local_fingerprint(cfg.name_or_path))
    else:
        out.update(vocab_size=cfg.vocab_size)  # only an upper bound for char/byte, but cheap to include
    return out


def _local_fingerprint(name_or_path: str | None) -> list[Any] | None:
    # A local tokenizer folder can be edited in place: key on its files' sizes and mtimes.
    if not name_or_path or not Path(name_or_path).is_dir():
        return None
    return sorted([p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in Path(name_or_path).iterdir() if p.is_file())


def _too_small(cfg: TokenizerConfig, needed: int, what: str) -> UserError:
    return UserError(
        "tokenizer.vocab_size",
        f"{cfg.vocab_size} is too small for tokenizer type {cfg.type}: {what} need at least {needed}; "
        f"set tokenizer.vocab_size >= {needed}",
    )


def check_vocab_size(cfg: TokenizerConfig) -> None:
    """Fail fast (before reading data) when vocab_size cannot hold the fixed alphabet of the type."""
    if cfg.type in ("bpe", "byte") and cfg.vocab_size < N_BYTES + 1:
        raise _too_small(cfg, N_BYTES + 1, "256 byte tokens plus <|endoftext|>")


def wrap(tok: Tokenizer, unk: bool = False) -> PreTrainedTokenizerFast:
    """HF wrapper with eos = pad = ``<|endoftext|>`` and no whitespace clean-up (decode is exact)."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=EOS,
        unk_token=UNK if unk else None,
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 30,
    )


def train_bpe(texts: Iterable[str], cfg: TokenizerConfig) -> PreTrainedTokenizerFast:
    """Byte-level BPE (GPT-2 style pre-tokenization) trained on ``texts`` to ``cfg.vocab_size`` entries."""
    check_vocab_size(cfg)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return wrap(tok)


def byte_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level models use; entry ``b`` stands for byte value ``b``."""
    # Same table as GPT-2's bytes_to_unicode: printable latin-1 bytes map to themselves, the rest to 256+.
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


def build_byte(cfg: TokenizerConfig) -> PreTrainedTokenizerFast:
    """Token id = byte value (0..255), then ``<|endoftext|>`` = 256; decode returns the exact text."""
    check_vocab_size(cfg)
    vocab = {ch: b for b, ch in enumerate(byte_alphabet())}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOS])
    return wrap(tok)


def build_char(chars: Iterable[str], cfg: TokenizerConfig, unk: bool = False) -> PreTrainedTokenizerFast:
    """One token per character of ``chars`` in sorted order (ids 0..n-1), then EOS (and ``<unk>`` if asked).

    On tiny-shakespeare this gives the classic 65 characters + EOS.
    """
    alphabet = sorted(set(chars))
    needed = len(alphabet) + 1 + int(unk)
    if needed > cfg.vocab_size:
        raise _too_small(cfg, needed, f"the {len(alphabet)} distinct characters of the train split plus specials")
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    specials = [EOS] + ([UNK] if unk else [])
    for s in specials:
        vocab[s] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK if unk else None))
    tok.decoder = decoders.Fuse()  # join characters back without separators
    tok.add_special_tokens(specials)
    return wrap(tok, unk=unk)


def load_pretrained(name_or_path: str) -> PreTrainedTokenizerFast:
    """``AutoTokenizer.from_pretrained`` (fast, no remote code); adds eos/pad when the tokenizer lacks them."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name_or_path, use_fast=True, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - unknown name, offline, missing files: the user fixes the name/cache
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(
            "tokenizer.name_or_path",
            f"cannot load tokenizer '{name_or_path}' ({first}); check the name or local folder, or when offline "
            "warm the HF cache first and set HF_HUB_OFFLINE=1",
        ) from None
    if getattr(tok, "backend_tokenizer", None) is None:
        raise UserError("tokenizer.name_or_path", f"'{name_or_path}' has no fast (Rust) tokenizer; pick another")
    if tok.eos_token is None:
        tok.add_special_tokens({"eos_token": EOS})
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def save_tokenizer(tok: PreTrainedTokenizerFast, folder: Path) -> None:
    """``save_pretrained`` into ``folder`` (tokenizer.json + configs)."""
    tok.save_pretrained(str(folder))


def load_tokenizer(folder: str | Path, auto: bool = False) -> PreTrainedTokenizerFast:
    """Reload a tokenizer written by ``save_tokenizer`` (same ids, eos and pad).

    Our own tokenizers load as plain ``PreTrainedTokenizerFast`` (fast: no model-registry import); ``auto``
    restores a pretrained tokenizer's own class through ``AutoTokenizer`` (no remote code).
    """
    if auto:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(folder), use_fast=True, trust_remote_code=False)
    return PreTrainedTokenizerFast.from_pretrained(str(folder))


def tokenizer_fingerprint(tok: PreTrainedTokenizerFast) -> str:
    """Stable hash of what decides the ids: the backend's vocab/merges/pipeline plus eos/pad/unk tokens.

    Equal for a tokenizer and its ``save_pretrained``/reload copy; different for any other vocabulary.
    """
    backend = json.loads(tok.backend_tokenizer.to_str())
    specials = {"eos": tok.eos_token, "pad": tok.pad_token, "unk": tok.unk_token, "len": len(tok)}
    blob = json.dumps({"backend": backend, "specials": specials}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
