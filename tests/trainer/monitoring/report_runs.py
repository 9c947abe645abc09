"""Synthetic run directories for the report tests, written the way a run writes them."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

HEADER = ["epoch", "memory/allocated_bytes", "perf/data_wait_share", "perf/mfu", "perf/tokens_per_s",
          "perf/tokens_per_s_per_device", "step", "system/cpu_percent", "system/process_rss_bytes",
          "train/grad_norm", "train/loss", "train/lr", "train/tokens_seen", "val/loss", "val/ppl"]
TOKENS_PER_STEP = 4096


def metrics_rows(steps: int, gpu: bool) -> list[dict[str, object]]:
    """Lightning-style rows: one per logging call, other keys empty; val rows from Lightning carry ``epoch`` and
    the step before the optimizer step (9 for the evaluation after step 10)."""
    rows: list[dict[str, object]] = [{"step": 0, "val/loss": 5.5, "val/ppl": math.exp(5.5)}]
    for s in range(10, steps + 1, 10):
        loss = 5.0 * math.exp(-s / 60) + 1.5
        row: dict[str, object] = {
            "step": s, "train/loss": loss, "train/lr": 6e-4 * min(1.0, s / 30), "train/grad_norm": 2.0 / (1 + s / 50),
            "train/tokens_seen": s * TOKENS_PER_STEP, "perf/tokens_per_s": 50_000 + 100 * (s % 30),
            "perf/tokens_per_s_per_device": 25_000 + 50 * (s % 30), "perf/data_wait_share": 0.02 + 0.01 * (s % 20 == 0),
        }
        if gpu:
            row.update({"perf/mfu": 0.38 + 0.01 * (s % 3), "memory/allocated_bytes": 3.2e9 + 1e7 * s})
        rows.append(row)
        rows.append({"step": s, "system/cpu_percent": 40 + s % 7, "system/process_rss_bytes": 2.1e9 + 1e6 * s})
        if s % 20 == 0:
            rows.append({"epoch": 0, "step": s - 1, "val/loss": loss + 0.2, "val/ppl": math.exp(loss + 0.2)})
    return rows


def write_metrics(run_dir: Path, rows: list[dict[str, object]], cut_last_row: bool = False) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HEADER, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    text = buf.getvalue()
    if cut_last_row:  # a crash in the middle of writing the last row
        text = text[: text.rstrip("\n").rfind(",")]
    (run_dir / "metrics.csv").write_text(text)


def make_run(run_dir: Path, steps: int = 120, gpu: bool = False, finished: bool = True, secret: str = "") -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_metrics(run_dir, metrics_rows(steps, gpu), cut_last_row=not finished)
    (run_dir / "config.yaml").write_text(
        f"run:\n  name: {run_dir.name}\n  seed: 7\nmodel:\n  name: gpt2-small\ndata:\n  hf_name: user/{secret}data\n"
        "distributed:\n  accelerator: auto\n")
    env = {"hostname": "node-17", "python": "3.11.7", "torch": "2.13.0", "lightning": "2.6.6",
           "transformers": "4.57.0", "cpu": "Test CPU @ 3 GHz", "cpu_count": 16, "ram_bytes": 128 * 2**30,
           "gpus": ["NVIDIA H100 80GB HBM3"] * 2 if gpu else [], "gpu_count": 2 if gpu else 0}
    (run_dir / "environment.json").write_text(json.dumps(env))
    samples = [{"step": s, "tokens": s * TOKENS_PER_STEP, "prompt": p, "text": p + f" <sample at step {s}> & more"}
               for s in range(20, steps + 1, 20) for p in ("def ", "\n")]
    (run_dir / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in samples))
    if finished:
        summary = {"steps": steps, "tokens_seen": steps * TOKENS_PER_STEP, "initial_val_loss": 5.5,
                   "best_val_loss": 2.1, "final_val_loss": 2.1, "final_train_loss": 1.9, "tokens_per_s": 50_500.0,
                   "wall_time_s": 321.0, "peak_memory_bytes": 3 * 2**30, "num_parameters": 124_439_808,
                   "stop_reason": "max_steps", "data": {"documents": 1200, "train_tokens": 9_500_000,
                                                        "val_tokens": 500_000, "split": "documents"},
                   "samples": {"def ": "def final_sample(x):"}}
        (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir
