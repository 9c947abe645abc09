"""GPU-only: DeepSpeed ZeRO-2 (Lightning runs it on CUDA only) and bf16 FSDP2 train a few steps."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from .helpers import DEBUG, FAST, script

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("strategy", ["deepspeed", "fsdp", "ddp"])
def test_strategy_on_one_gpu(tmp_path: Path, strategy: str) -> None:
    if strategy == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        pytest.skip("deepspeed not installed (pip install '.[deepspeed]')")
    proc = script("run_training.py", "--config", DEBUG, f"run.output_dir={tmp_path}", "run.name=g", *FAST,
                  "training.max_steps=6", f"distributed.strategy={strategy}", "checkpoint.export_hf=false",
                  "distributed.accelerator=gpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["precision"].startswith("bf16")
