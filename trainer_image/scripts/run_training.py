"""Train a language model: ``python scripts/run_training.py [--config FILE] [section.key=value ...]``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout without installing

from distributed_llm_trainer.errors import run_cli  # noqa: E402
from distributed_llm_trainer.training.runner import main, repo_default_config  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_cli(lambda: main(default_config=repo_default_config())))
