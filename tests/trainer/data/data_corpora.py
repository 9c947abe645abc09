"""Tiny corpora for the data tests: documents and writers for every source format."""

from __future__ import annotations

import json
from pathlib import Path

# Small but varied documents: unicode, newlines, a literal special-token string, leading/trailing spaces.
DOCS = [
    "First Citizen:\nBefore we proceed any further, hear me speak.\n",
    "All:\nSpeak, speak.\n",
    "  Ünïcödé text — with dashes, emoji 🙂 and tabs\tinside.  ",
    "def f(x):\n    return x * 2  # code is text too\n",
    "A document that mentions <|endoftext|> literally.",
    "Short one.",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Ends without newline",
]


def write_txt_dir(folder: Path, docs: list[str] = DOCS) -> Path:
    """One .txt file per document, names sorting in document order."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, d in enumerate(docs):
        (folder / f"doc{i:03d}.txt").write_text(d, encoding="utf-8")
    return folder


def write_jsonl(path: Path, docs: list[str] = DOCS, field: str = "text") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i, d in enumerate(docs):
            f.write(json.dumps({"id": i, field: d}, ensure_ascii=False) + "\n")
    return path


def write_json(path: Path, docs: list[str] = DOCS, field: str = "text") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{"id": i, field: d} for i, d in enumerate(docs)], ensure_ascii=False), "utf-8")
    return path


def write_parquet(path: Path, docs: list[str] = DOCS, field: str = "text") -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": list(range(len(docs))), field: docs}), path)
    return path


def write_csv(path: Path, docs: list[str] = DOCS, field: str = "text") -> Path:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", field])
        for i, d in enumerate(docs):
            w.writerow([i, d])
    return path


def expected_bytes(docs: list[str], eos: int = 256) -> list[int]:
    """Byte-tokenizer ids of the documents joined with EOS after each."""
    out: list[int] = []
    for d in docs:
        out.extend(d.encode("utf-8"))
        out.append(eos)
    return out
