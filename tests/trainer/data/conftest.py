"""Fixtures for the data tests: configs whose cache lives under tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from distributed_llm_trainer.config import Config, load_config


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., Config]:
    """``make_cfg("data.path=...", ...)``: a Config with its cache under tmp_path and byte tokenizer default."""

    def make(*overrides: str) -> Config:
        base = [f"run.output_dir={tmp_path / 'runs'}", "tokenizer.type=byte", "data.seq_len=16", "data.num_workers=0"]
        return load_config(None, base + list(overrides))

    return make
