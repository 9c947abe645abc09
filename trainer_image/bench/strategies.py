"""GPU check for the strategies one GPU allows: gpt2-small for a few dozen steps under each.

    python bench/strategies.py [--steps 40] [--data PATH]

Runs single device, DDP (1 process), FSDP2 (1 process) and DeepSpeed ZeRO-2 (if installed) through the
normal entry point and prints one JSON line per strategy (tokens/s, peak memory, final loss) and a table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STRATEGIES = {
    "single": ["distributed.strategy=auto"],
    "ddp-1": ["distributed.strategy=ddp"],
    "fsdp2-1": ["distributed.strategy=fsdp"],
    "deepspeed-zero2": ["distributed.strategy=deepspeed", "distributed.deepspeed.stage=2"],
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--data", default=None, help="text file (default: the embedded corpus)")
    a = p.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-strategies-"))
    rows = []
    for name, extra in STRATEGIES.items():
        if name.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
            rows.append({"strategy": name, "skipped": "deepspeed not installed"})
            continue
        cmd = [sys.executable, str(REPO / "scripts" / "run_training.py"),
               "--config", str(REPO / "config" / "gpt2-small.yaml"),
               f"run.output_dir={out}", f"run.name={name}", f"training.max_steps={a.steps}",
               f"training.batch_size={a.batch_size}", f"data.seq_len={a.seq_len}", "training.warmup_steps=10",
               "training.eval_interval=1000000", "training.eval_steps=1", "logging.interval=10",
               "logging.progress_bar=false", "logging.report=false", "logging.sample_tokens=0",
               "checkpoint.export_hf=false", "checkpoint.save_best=false", "data.num_workers=2", *extra]
        if a.data:
            cmd.append(f"data.path={a.data}")
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0:
            rows.append({"strategy": name, "error": proc.stderr.strip().splitlines()[-1:]})
            continue
        s = json.loads((out / name / "summary.json").read_text())
        rows.append({"strategy": name, "tokens_per_s": round(s["tokens_per_s"] or 0),
                     "peak_memory_gib": round(s["peak_memory_bytes"] / 2**30, 2),
                     "final_train_loss": s["final_train_loss"], "steps": s["steps"]})
    for r in rows:
        print(json.dumps(r))
    print(f"\n{'strategy':<18}{'tokens/s':>12}{'peak GiB':>10}{'loss':>9}")
    for r in rows:
        if "tokens_per_s" in r:
            print(f"{r['strategy']:<18}{r['tokens_per_s']:>12,}{r['peak_memory_gib']:>10}{r['final_train_loss']:>9.3f}")
        else:
            print(f"{r['strategy']:<18}  {r.get('skipped') or r.get('error')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
