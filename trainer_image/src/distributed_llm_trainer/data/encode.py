"""Turn batches of documents into token ids, EOS after every document.

The Rust tokenizer encodes batches in parallel; ``char`` and ``byte`` tokenizers take a numpy fast path that
gives the same ids (tested) at memory speed. Literal ``<|endoftext|>`` inside a document is encoded as
plain text, never as the special token: only the EOS we append separates documents.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

_MAX_CODEPOINT = 0x110000
_PIECE = 1 << 15  # long documents are cut into ~32K-char pieces so the Rust encoder can use every core
# A newline between two non-space characters is always a pre-token boundary of the GPT-2 byte-level regex
# (no pattern spans it, and matching restarts identically after it), so cutting there keeps the ids exact.
# Python's \S is stricter than the Rust regex's, which only makes the cut points rarer.
_SAFE_CUT = re.compile(r"\S\n(?=\S)")


def split_long(text: str, piece: int = _PIECE) -> list[str]:
    """``text`` cut after safe newlines into pieces of about ``piece`` characters (one piece if none)."""
    if len(text) <= 2 * piece:
        return [text]
    out, pos = [], 0
    while len(text) - pos > 2 * piece:
        m = _SAFE_CUT.search(text, pos + piece)
        if m is None:
            break
        out.append(text[pos : m.end()])
        pos = m.end()
    out.append(text[pos:])
    return out


class Encoder:
    """Encode documents with ``tokenizer``; ``kind`` (bpe/char/byte/hf) picks a fast path when one exists."""

    def __init__(self, tokenizer: PreTrainedTokenizerFast, kind: str) -> None:
        self.kind = kind
        self.eos_id = int(tokenizer.eos_token_id)
        self.backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self.backend.encode_special_tokens = True  # documents are text: "<|endoftext|>" in them is not EOS
        self._lut: np.ndarray | None = None
        if kind == "char":
            # Code point -> id table (int32, -1 = unknown); ~4 MB, built once.
            vocab = self.backend.get_vocab()
            unk = vocab.get(tokenizer.unk_token, -1) if tokenizer.unk_token else -1
            lut = np.full(_MAX_CODEPOINT, unk, dtype=np.int32)
            for tok, i in vocab.items():
                if len(tok) == 1:
                    lut[ord(tok)] = i
            self._lut = lut

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """One uint32 id array per text (no EOS)."""
        if self.kind == "byte":
            return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.uint32) for t in texts]
        if self._lut is not None:
            out = []
            for t in texts:
                ids = self._lut[np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32)]
                out.append(ids[ids >= 0].astype(np.uint32))  # unknown chars are dropped, like the Rust model
            return out
        if self.kind != "bpe":  # unknown pre-tokenizers (hf): cutting documents could change their ids
            encs = self.backend.encode_batch_fast(texts, add_special_tokens=False)
            return [np.asarray(e.ids, dtype=np.uint32) for e in encs]
        pieces = [split_long(t) for t in texts]
        encs = self.backend.encode_batch_fast([p for ps in pieces for p in ps], add_special_tokens=False)
        out, i = [], 0
        for ps in pieces:
            ids = [np.asarray(e.ids, dtype=np.uint32) for e in encs[i : i + len(ps)]]
            out.append(ids[0] if len(ids) == 1 else np.concatenate(ids))
            i += len(ps)
        return out

    def encode_flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """All documents with EOS after each: (ids uint32 (N,), lengths int64 (docs,) incl. the EOS)."""
        parts = self.encode(texts)
        lengths = np.fromiter((len(p) + 1 for p in parts), dtype=np.int64, count=len(parts))
        flat = np.empty(int(lengths.sum()), dtype=np.uint32)
        ends = np.cumsum(lengths)
        pos = 0
        for p, end in zip(parts, ends):
            flat[pos : pos + len(p)] = p
            flat[end - 1] = self.eos_id
            pos = int(end)
        return flat, lengths

    def arrow_batch(self, table: pa.Table) -> pa.Table:
        """``datasets.map`` function on arrow batches: ``text`` -> ``ids`` (list<uint32>, EOS appended)."""
        texts = table.column("text").to_pylist()
        flat, lengths = self.encode_flat(texts)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int32 if flat.size < 2**31 else np.int64)
        np.cumsum(lengths, out=offsets[1:])
        list_type = pa.list_ if offsets.dtype == np.int32 else pa.large_list
        ids = list_type(pa.uint32())
        arr = (pa.ListArray if list_type is pa.list_ else pa.LargeListArray).from_arrays(
            pa.array(offsets), pa.array(flat), type=ids
        )
        return pa.table({"ids": arr})
