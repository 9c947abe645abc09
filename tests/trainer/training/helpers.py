"""Helpers for end-to-end tests: run the CLI in-process and capture exit code / stderr."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from distributed_llm_trainer.errors import run_cli
from distributed_llm_trainer.training.runner import main

REPO = Path(__file__).resolve().parents[3] / "trainer_image"
DEBUG = str(REPO / "config" / "debug.yaml")
FAST = ["logging.progress_bar=false", "logging.tensorboard=false", "logging.report=false",
        "logging.sample_tokens=0"]


def cli(args: list[str], capsys: pytest.CaptureFixture | None = None) -> tuple[int, str]:
    """Run run_training's main in-process; (exit code, stderr)."""
    try:
        code = run_cli(lambda: main(args))
    except SystemExit as e:
        code = int(e.code or 0)
    err = capsys.readouterr().err if capsys is not None else ""
    return int(code or 0), err


def train_args(out: Path, name: str, *extra: str) -> list[str]:
    return ["--config", DEBUG, f"run.output_dir={out}", f"run.name={name}", *FAST, *extra]


def script(name: str, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=REPO)


def tree_digest(root: Path) -> dict[str, str]:
    """Path -> sha256 of every file under root (to prove nothing changed)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def assert_one_error_line(code: int, err: str, fragment: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2, err
    assert lines and lines[-1].startswith("error: "), err
    assert fragment in lines[-1], lines[-1]
    assert "Traceback" not in err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children first, then theirs)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [d for c in children for d in (int(c), *descendants(int(c)))]
