"""Pipeline speed against a bare PyTorch loop on the same model, batches, optimizer, schedule and precision.

    python scripts/benchmark.py --config config/default.yaml [section.key=value ...] [--steps 30 --warmup 5]
        [--variants pipeline,bare] [--rounds 1] [--json out.json] [--losses] [--sync-debug]

Prints one JSON line per variant (tokens/s, step time median/p90, MFU, peak memory, data-wait share) and, when
both ran, a ratio line (pipeline/bare median step time). The run's own console output goes to stderr.
See src/distributed_llm_trainer/training/bench.py.
"""

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout without installing

from distributed_llm_trainer.errors import ArgParser, run_cli  # noqa: E402


def main() -> int:
    p = ArgParser(prog="benchmark.py", description="Benchmark the training pipeline against a bare PyTorch loop.")
    p.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "config" / "default.yaml"))
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. training.batch_size=32")
    p.add_argument("--steps", type=int, default=30, help="timed optimizer steps per variant (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed optimizer steps first (default 5)")
    p.add_argument("--variants", default="pipeline,bare", help="comma-separated: pipeline, bare")
    p.add_argument("--rounds", type=int, default=1, help="repeat the variants, alternating their order (default 1)")
    p.add_argument("--json", type=Path, default=None, help="also write the lines to this file")
    p.add_argument("--losses", action="store_true", help="add each step's training loss to the lines")
    p.add_argument("--sync-debug", action="store_true",
                   help="CUDA: count host syncs inside the timed pipeline steps (sync debug mode)")
    p.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "dlt-bench-cache",
                   help="token cache kept between benchmarks when data.cache_dir is unset (outside the repo)")
    a = p.parse_intermixed_args()  # overrides may come before or after the options

    from distributed_llm_trainer.config import load_config
    from distributed_llm_trainer.training.bench import benchmark
    from distributed_llm_trainer.training.runner import quiet_lightning

    quiet_lightning()
    cfg = load_config(a.config, a.overrides)
    variants = tuple(v.strip() for v in a.variants.split(",") if v.strip())
    lines, _ = benchmark(cfg, a.config, a.steps, a.warmup, variants, with_losses=a.losses, cache_dir=a.cache_dir,
                         rounds=a.rounds, sync_debug=a.sync_debug)
    text = "".join(json.dumps(x) + "\n" for x in lines)
    sys.stdout.write(text)
    if a.json is not None:
        a.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
