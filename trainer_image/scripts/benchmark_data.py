"""Data pipeline speed: ``python scripts/benchmark_data.py --data FILE [--tokenizer bpe|char|byte] ...``.

Prints one JSON object:
- ``encode_mb_per_s``: tokenizer throughput on the file's text (MB of UTF-8 per second, all cores);
- ``cold_prepare_seconds``: prepare_data on an empty cache (BPE training + tokenizing + writing);
- ``cached_startup_seconds``: prepare_data on a warm cache of a ~``--cached-tokens`` dataset, measured in a
  fresh process (``cached_startup_with_imports_seconds`` adds the interpreter's imports);
- ``loader_batches_per_s``: training batches per second from TokenDataModule's loader.
Everything is written under a temporary folder that is deleted at the end.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout without installing

from distributed_llm_trainer.errors import ArgParser, UserError, run_cli  # noqa: E402

_CHILD = """
import sys, time, json
t0 = time.perf_counter()
from distributed_llm_trainer.config import load_config
from distributed_llm_trainer.data.pipeline import prepare_data
cfg = load_config(None, json.loads(sys.argv[1]))
t1 = time.perf_counter()
p = prepare_data(cfg)
t2 = time.perf_counter()
assert p.stats["cache_hit"], "expected a warm cache"
print(json.dumps({"prepare": t2 - t1, "total": t2 - t0, "tokens": p.stats["tokens"]}))
"""


def _overrides(out: Path, data: str, a: argparse.Namespace) -> list[str]:
    return [
        f"run.output_dir={out}",
        f"data.path={data}",
        f"tokenizer.type={a.tokenizer}",
        f"tokenizer.vocab_size={a.vocab_size}",
        f"data.seq_len={a.seq_len}",
        f"training.batch_size={a.batch_size}",
        f"data.num_workers={a.workers}",
    ]


def _encode_speed(prepared, text_bytes: bytes, kind: str) -> float:
    from distributed_llm_trainer.data.encode import Encoder

    text = text_bytes.decode("utf-8", errors="replace")
    enc = Encoder(prepared.tokenizer, kind)
    t = time.perf_counter()
    enc.encode([text])
    return len(text_bytes) / 1e6 / (time.perf_counter() - t)


def _loader_speed(cfg, prepared, n_batches: int) -> float:
    from distributed_llm_trainer.data.datamodule import TokenDataModule

    loader = TokenDataModule(cfg, prepared).train_dataloader()
    it = iter(loader)
    next(it)  # worker start-up is not steady-state throughput
    t, n = time.perf_counter(), 0
    while n < n_batches:
        try:
            next(it)
        except StopIteration:
            loader.sampler.set_epoch(loader.sampler.epoch + 1)
            it = iter(loader)
            continue
        n += 1
    return n / (time.perf_counter() - t)


def _big_corpus(folder: Path, text: str, copies: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(copies):  # one document per copy, so the cache holds many documents like a real corpus
        (folder / f"part{i:04d}.txt").write_text(text, encoding="utf-8")
    return folder


def main() -> int:
    p = ArgParser(description="Benchmark tokenization, cache start-up and loader throughput.")
    p.add_argument("--data", required=True, help="a text file (e.g. tinyshakespeare.txt)")
    p.add_argument("--tokenizer", choices=["bpe", "char", "byte"], default="bpe")
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--loader-batches", type=int, default=2000)
    p.add_argument("--cached-tokens", type=float, default=10e6, help="size of the warm-cache dataset (0 = skip)")
    a = p.parse_args()
    data = Path(a.data)
    if not data.is_file():
        raise UserError("--data", f"'{a.data}' is not a file; pass a text file")

    from distributed_llm_trainer.config import load_config
    from distributed_llm_trainer.data.pipeline import prepare_data

    result: dict = {"data": str(data), "tokenizer": a.tokenizer, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        out = Path(tmp)
        cfg = load_config(None, _overrides(out / "runs", str(data), a))
        t = time.perf_counter()
        prepared = prepare_data(cfg)
        result["cold_prepare_seconds"] = round(time.perf_counter() - t, 3)
        result["tokens"] = prepared.stats["tokens"]
        result["mb"] = round(prepared.stats["bytes"] / 1e6, 3)
        result["encode_mb_per_s"] = round(_encode_speed(prepared, data.read_bytes(), a.tokenizer), 2)
        result["loader_batches_per_s"] = round(_loader_speed(cfg, prepared, a.loader_batches), 1)
        result["loader_tokens_per_s"] = round(result["loader_batches_per_s"] * a.batch_size * a.seq_len)

        if a.cached_tokens > 0:
            text = data.read_text(encoding="utf-8", errors="replace")
            copies = max(1, round(a.cached_tokens / max(1, prepared.stats["tokens"])))
            big = _big_corpus(out / "big", text, copies)
            overrides = _overrides(out / "runs", str(big), a)
            t = time.perf_counter()
            big_prepared = prepare_data(load_config(None, overrides))
            result["big_cold_prepare_seconds"] = round(time.perf_counter() - t, 3)
            result["big_tokens"] = big_prepared.stats["tokens"]
            child = subprocess.run(
                [sys.executable, "-c", _CHILD, json.dumps(overrides)], capture_output=True, text=True, check=True
            )
            timing = json.loads(child.stdout.strip().splitlines()[-1])
            result["cached_startup_seconds"] = round(timing["prepare"], 3)
            result["cached_startup_with_imports_seconds"] = round(timing["total"], 3)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
