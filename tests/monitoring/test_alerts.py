"""The alert rules (helm/llm-training-operator/alerts/llmtj.rules.yaml) under promtool: valid, and each one fires on
the series it is meant for, at the time it should, and stays quiet on their healthy twins."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "helm" / "llm-training-operator" / "alerts" / "llmtj.rules.yaml"


def promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool not found: install Debian's prometheus package (.ci/run does)", pytrace=False)
    return tool


def _rules() -> dict[str, dict]:
    return {r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}


def _annotations(alert: str, namespace: str, job: str) -> dict[str, str]:
    """The rule's annotations as Prometheus renders them for these labels (they use no other template)."""
    values = {"namespace": namespace, "job": job}
    return {k: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: values[m.group(1)], v)
            for k, v in _rules()[alert]["annotations"].items()}


def _fires(alert: str, at: str, namespace: str = "team-a", job: str = "llm") -> dict:
    labels = {**_rules()[alert].get("labels", {}), "namespace": namespace, "job": job}
    return {"eval_time": at, "alertname": alert,
            "exp_alerts": [{"exp_labels": labels, "exp_annotations": _annotations(alert, namespace, job)}]}


def _quiet(alert: str, at: str) -> dict:
    return {"eval_time": at, "alertname": alert, "exp_alerts": []}


def _worker(name: str, job: str, values: str, rank: str = "0", pod: str = "") -> dict:
    pod = pod or f"{job}-worker-0"
    return {"series": f'{name}{{namespace="team-a", job="{job}", pod="{pod}", rank="{rank}"}}', "values": values}


def _operator(name: str, job: str, values: str, **extra: str) -> dict:
    labels = ", ".join(f'{k}="{v}"' for k, v in {"namespace": "team-a", "job": job, **extra,
                                                  "instance": "127.0.0.5:9451"}.items())
    return {"series": f"{name}{{{labels}}}", "values": values}


CASES = [
    # a failed job (its pods are gone: the operator's gauge tells), not a running one
    ([_operator("llmtj_operator_job_phase", "llm", "1x10", phase="Failed"),
      _operator("llmtj_operator_job_phase", "ok", "1x10", phase="Running")],
     [_fires("LLMTrainingJobFailed", "1m")]),
    # three replacements within 15 minutes; one replacement is not a loop
    ([_operator("llmtj_operator_job_restarts", "llm", "0 0 1 2 3 3 3"),
      _operator("llmtj_operator_job_restarts", "ok", "0 0 1 1 1 1 1")],
     [_quiet("LLMTrainingJobRestartLoop", "3m"), _fires("LLMTrainingJobRestartLoop", "5m")]),
    # per-rank throughput halves at 60m: pending for 10 minutes, then firing; a job that lost a rank (the per-rank
    # throughput unchanged) stays quiet
    ([_worker("llmtj_tokens_per_second", "llm", "1000x60 400x30"),
      _worker("llmtj_tokens_per_second", "ok", "1000x90"),
      _worker("llmtj_tokens_per_second", "ok", "1000x60", rank="1", pod="ok-worker-1")],
     [_quiet("LLMTrainingJobThroughputDrop", "65m"), _fires("LLMTrainingJobThroughputDrop", "72m")]),
    # GPUs below 5% for 15 minutes, not busy ones
    ([{"series": 'llmtj_gpu_utilization_ratio{namespace="team-a", job="llm", pod="llm-worker-0", gpu="0"}',
       "values": "0.01x30"},
      {"series": 'llmtj_gpu_utilization_ratio{namespace="team-a", job="ok", pod="ok-worker-0", gpu="0"}',
       "values": "0.9x30"}],
     [_quiet("LLMTrainingJobGPUsIdle", "10m"), _fires("LLMTrainingJobGPUsIdle", "20m")]),
    # 10 steps a minute, interval 20, never a checkpoint: 60 steps behind after 6 minutes, firing 5 minutes later;
    # a job that saves every 20 steps stays quiet
    ([_worker("llmtj_step", "llm", "0+10x30"), _worker("llmtj_checkpoint_step", "llm", "0x30"),
      _worker("llmtj_checkpoint_interval_steps", "llm", "20x30"),
      _worker("llmtj_step", "ok", "0+10x30"), _worker("llmtj_checkpoint_step", "ok", "0 0 20 20 40 40 60 60 80 80 "
                                                                                   "100 100 120 120 140 140 160"),
      _worker("llmtj_checkpoint_interval_steps", "ok", "20x30")],
     [_quiet("LLMTrainingJobCheckpointOverdue", "9m"), _fires("LLMTrainingJobCheckpointOverdue", "13m")]),
]


def test_the_rule_file_is_valid():
    out = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_fires_on_its_case_and_not_on_the_healthy_one(tmp_path: Path):
    tested = {t["alertname"] for _, tests in CASES for t in tests}
    assert tested == set(_rules()), f"untested rules: {set(_rules()) - tested}"
    spec = {"rule_files": [str(RULES)], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": tests} for series, tests in CASES]}
    (tmp_path / "alerts_test.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    out = subprocess.run([promtool(), "test", "rules", "alerts_test.yaml"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
