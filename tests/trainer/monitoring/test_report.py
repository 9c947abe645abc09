"""report.html / loss.png: from metrics.csv alone (running or crashed run) up to a finished run; self-contained."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from distributed_llm_trainer.monitoring.report import write_report
from distributed_llm_trainer.monitoring.report_data import read_metrics_csv

from .report_runs import HEADER, make_run, metrics_rows, write_metrics

REPO = Path(__file__).resolve().parents[3] / "trainer_image"
SECRET = "ZZsecretvalueZZ42"


def images(html: str) -> list[str]:
    return re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', html)


def assert_self_contained(html: str) -> None:
    """Opens offline: no external script, stylesheet, font or image."""
    assert not re.search(r"<(script|link|iframe)\b", html, re.IGNORECASE)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html, re.IGNORECASE)
    assert "url(" not in html and "@import" not in html


def test_metrics_csv_parsing_handles_lightning_rows_resume_and_a_cut_row(tmp_path: Path) -> None:
    rows = metrics_rows(40, gpu=False)
    rows.append({"step": 30, "train/loss": 9.0})  # a resumed run logs step 30 again: the newer value wins
    rows.append({"step": 40, "train/loss": 1.0, "train/lr": 1e-4, "val/loss": 3.0})
    write_metrics(tmp_path, rows, cut_last_row=True)
    notes: list[str] = []
    series = read_metrics_csv(tmp_path / "metrics.csv", notes)
    assert [s for s, _ in series["val/loss"]] == [0, 20, 40]  # Lightning's val rows (steps 19, 39) line up
    assert dict(series["train/loss"])[30] == 9.0
    assert dict(series["train/loss"])[40] != 1.0  # a row cut mid-write is dropped whole
    assert "epoch" not in series and notes == [notes[0]] and "incomplete" in notes[0]
    (tmp_path / "metrics.csv").write_text(",".join(HEADER) + "\n" + "1,2\n" + ",".join(["x"] * 20) + "\n")
    assert read_metrics_csv(tmp_path / "metrics.csv", notes) == {} and "2 malformed" in notes[-1]


def test_report_from_metrics_csv_alone(tmp_path: Path) -> None:
    """A run that crashed early: only a partly written metrics.csv, no summary/config/environment/samples."""
    write_metrics(tmp_path, metrics_rows(50, gpu=False), cut_last_row=True)
    path = write_report(tmp_path)
    html = path.read_text()
    assert path == tmp_path / "report.html" and (tmp_path / "loss.png").stat().st_size > 5000
    assert "in progress or stopped early" in html and "last logged step 50" in html
    assert images(html) == ["loss vs tokens", "learning rate", "throughput", "memory", "data wait",
                            "gradient norm", "utilization"]
    assert "MFU: n/a on CPU" in html  # absent metric annotated, not plotted
    assert "no summary.json" in html and "no config.yaml" in html
    assert_self_contained(html)


def test_report_of_a_finished_gpu_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", SECRET)
    run = make_run(tmp_path / "gpu-run", steps=200, gpu=True, secret=SECRET)
    html = write_report(run).read_text()
    assert "finished: max_steps" in html
    assert "MFU" in images(html) and "n/a on CPU" not in html
    assert "39.0 %" in html or "38.0 %" in html or "40.0 %" in html  # MFU median in the summary table
    for text in ("node-17", "NVIDIA H100 80GB HBM3", "2.13.0", "4.57.0", "Test CPU @ 3 GHz"):  # environment
        assert text in html
    assert "9,500,000" in html and "documents" in html  # data statistics
    assert "def final_sample(x):" in html  # end-of-run sample from summary.json
    assert "&lt;sample at step 200&gt; &amp; more" in html  # samples.jsonl, escaped
    assert "step 60" in html and "step 40" not in html and "<td class=num>60<" in html  # the newest 8 of 10
    assert "2 earlier evaluation(s)" in html
    assert "model:\n  name: gpt2-small" in html  # the config
    assert SECRET not in html
    assert_self_contained(html)


def test_report_script(tmp_path: Path) -> None:
    script = [sys.executable, str(REPO / "scripts" / "report.py")]
    bad = subprocess.run([*script, str(tmp_path / "missing")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: run_dir: ")
    empty = subprocess.run([*script, str(tmp_path)], capture_output=True, text=True)
    assert empty.returncode == 2 and "holds no run" in empty.stderr and "Traceback" not in empty.stderr
    run = make_run(tmp_path / "r", steps=40)
    ok = subprocess.run([*script, str(run)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == str(run / "report.html") and (run / "loss.png").is_file()
