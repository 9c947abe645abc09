"""scripts/prepare_data.py as a subprocess: one JSON line on success, one ``error:`` line and exit 2 on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .data_corpora import DOCS, write_jsonl

SCRIPT = Path(__file__).resolve().parents[3] / "trainer_image" / "scripts" / "prepare_data.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


def test_prepare_script_prints_one_json_line_then_hits_the_cache(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", DOCS * 4)
    args = [f"run.output_dir={tmp_path / 'runs'}", f"data.path={path}", "tokenizer.type=char", "data.seq_len=8"]
    first = _run(*args)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.strip().splitlines()
    assert len(lines) == 1
    stats = json.loads(lines[0])
    assert stats["documents"] == len(DOCS) * 4 and stats["tokens"] > 0 and stats["bytes"] > 0
    assert stats["cache_hit"] is False and stats["seconds"] >= 0
    again = json.loads(_run(*args).stdout)
    assert again["cache_hit"] is True and again["tokens"] == stats["tokens"]


def test_prepare_script_bad_input_is_one_error_line(tmp_path: Path) -> None:
    res = _run(f"run.output_dir={tmp_path / 'runs'}", f"data.path={tmp_path}/nothing/*.txt")
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert lines == [f"error: data.path: no files match '{tmp_path}/nothing/*.txt'; check the glob"]
    assert "Traceback" not in res.stderr and res.stdout == ""
