"""Tokenize ahead of time: ``python scripts/prepare_data.py [--config FILE] [section.key=value ...]``.

Builds (or reuses) the token cache the training run will use and prints one JSON line:
``{"documents": ..., "tokens": ..., "bytes": ..., "seconds": ..., "cache_hit": ..., ...}``.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout without installing

from distributed_llm_trainer.errors import ArgParser, run_cli  # noqa: E402


def main() -> int:
    p = ArgParser(description="Tokenize the configured data into the token cache and print its stats as JSON.")
    p.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. data.path=data/*.txt")
    a = p.parse_args()

    from distributed_llm_trainer.config import load_config
    from distributed_llm_trainer.data.pipeline import prepare_data

    cfg = load_config(a.config, a.overrides)
    s = prepare_data(cfg).stats
    keys = (
        "documents",
        "train_documents",
        "val_documents",
        "tokens",
        "train_tokens",
        "val_tokens",
        "bytes",
        "seconds",
        "cache_hit",
        "cache_key",
        "cache_dir",
        "split",
    )
    print(json.dumps({k: s[k] for k in keys if k in s}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
