"""A real debug training run with every monitoring output on: CSV, TensorBoard, W&B (offline), system metrics,
samples at each evaluation, the report, the console hint, and no secret anywhere in the run directory."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from distributed_llm_trainer.config import load_config
from distributed_llm_trainer.monitoring import loggers as loggers_mod
from distributed_llm_trainer.monitoring.report import write_report

REPO = Path(__file__).resolve().parents[3] / "trainer_image"
FAKE_KEY = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from distributed_llm_trainer.training.runner import train

    out = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_API_KEY", FAKE_KEY)  # auto mode would go online...
        mp.delenv("WANDB_MODE", raising=False)
        mp.setattr(loggers_mod, "wandb_reachable", lambda timeout=3.0: False)  # ...but there is no network
        cfg = load_config(REPO / "config" / "debug.yaml", [
            f"run.output_dir={out}", "run.name=mon", "logging.tensorboard=true", "logging.wandb.enabled=true",
            "logging.progress_bar=true", "logging.sample_prompts=[\"\\n\", \"the \"]", "checkpoint.export_hf=false"])
        try:
            summary = train(cfg, str(REPO / "config" / "debug.yaml"))
        finally:
            import wandb

            if wandb.run is not None:  # a failed run must not leave its W&B run to the next test
                wandb.finish()
    return {"dir": out / "mon", "summary": summary}


def test_metrics_csv_has_training_validation_and_system_rows(run: dict) -> None:
    with open(run["dir"] / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    train_steps = [int(float(r["step"])) for r in rows if r.get("train/loss")]
    val_steps = [int(float(r["step"])) for r in rows if r.get("val/loss")]
    assert train_steps == [5, 10, 15, 20] and val_steps == [0, 10, 20]
    assert all(r.get("perf/tokens_per_s") for r in rows if r.get("train/loss"))
    assert any(r.get("system/cpu_percent") for r in rows) and any(r.get("system/process_rss_bytes") for r in rows)
    assert not any(r.get("perf/mfu") for r in rows)  # CPU: no peak FLOP/s, so no MFU


def test_samples_at_each_evaluation(run: dict) -> None:
    recs = [json.loads(line) for line in (run["dir"] / "samples.jsonl").read_text().splitlines()]
    assert [(r["step"], r["prompt"]) for r in recs] == [(10, "\n"), (10, "the "), (20, "\n"), (20, "the ")]
    assert all(r["text"].startswith(r["prompt"]) and len(r["text"]) > len(r["prompt"]) for r in recs)


def test_tensorboard_and_wandb_outputs(run: dict) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run["dir"] / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("val/loss")] == [0, 10, 20]
    assert {"train/loss", "perf/tokens_per_s", "system/cpu_percent"} <= set(acc.Tags()["scalars"])
    offline = list((run["dir"] / "wandb").glob("offline-run-*/*.wandb"))
    assert len(offline) == 1 and offline[0].stat().st_size > 0


def test_report_and_console(run: dict) -> None:
    html = (run["dir"] / "report.html").read_text()
    assert "finished: max_steps" in html and "MFU: n/a on CPU" in html
    assert html.count('src="data:image/png;base64,') == 7 and (run["dir"] / "loss.png").is_file()
    assert "&#x27;the &#x27;" in html  # samples section
    assert run["summary"]["steps"] == 20


def test_report_of_the_run_without_its_summary(run: dict, tmp_path: Path) -> None:
    """The same run as if it had crashed before the end: no summary.json."""
    copy = tmp_path / "crashed"
    shutil.copytree(run["dir"], copy, ignore=shutil.ignore_patterns("checkpoints", "wandb", "tensorboard"))
    (copy / "summary.json").unlink()
    html = write_report(copy).read_text()
    assert "in progress or stopped early" in html and html.count("data:image/png;base64,") == 7


def test_no_api_key_in_the_run_directory(run: dict) -> None:
    files = [p for p in run["dir"].rglob("*") if p.is_file()]
    assert any("wandb" in p.parts for p in files)
    for p in files:
        assert FAKE_KEY.encode() not in p.read_bytes(), p
