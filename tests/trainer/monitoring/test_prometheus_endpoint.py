"""The pod's Prometheus endpoint, as a pod runs it: ``llmtj-worker`` with two training processes (ranks) on the CPU,
scraped over HTTP while it trains; what it serves is checked against ``docs/metrics.md``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from distributed_llm_trainer.worker import serve_metrics

from ...metrics_doc import check, parse
from ..training.helpers import DEBUG, FAST, free_port

pytestmark = pytest.mark.slow


def scrape(port: int) -> dict[str, list]:
    return parse(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode())


def test_a_pod_serves_its_ranks_metrics_as_documented(tmp_path):
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LLMTJ_CONFIG": DEBUG, "LLMTJ_OUTPUT_DIR": str(tmp_path),
           "LLMTJ_RUN_NAME": "promjob", "LLMTJ_NAMESPACE": "team-a", "LLMTJ_POD_NAME": "promjob-worker-0",
           "LLMTJ_RESTART_COUNT": "3", "LLMTJ_METRICS_PORT": str(port), "LLMTJ_METRICS_HOST": "127.0.0.1",
           "PET_NPROC_PER_NODE": "2",
           "DLT_FAULT_STEP_SLEEP_S": "0.1"}  # slow enough to scrape mid-run
    exe = shutil.which("llmtj-worker", path=os.path.dirname(sys.executable)) or "llmtj-worker"
    args = ["training.max_steps=400", "training.global_batch_size=8", "training.batch_size=2", "logging.interval=5",
            "training.eval_interval=10", "checkpoint.every_n_steps=10", "logging.peak_flops=1e12", *FAST]
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen([exe, *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, got = time.monotonic() + 300, {}
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                got = scrape(port)
            except OSError:
                got = {}
            steps = {s[0]["rank"]: s[1] for s in got.get("llmtj_step", [])}
            if (len(steps) == 2 and min(steps.values()) >= 25 and got.get("llmtj_checkpoint_last_timestamp_seconds")
                    and got.get("llmtj_validation_loss")):
                break
            time.sleep(1)
        assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        assert got.get("llmtj_validation_loss"), (dict(got), (tmp_path / "worker.log").read_text()[-3000:])
        final = scrape(port)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    check("Worker pods", final, "llmtj_")  # GPU rows need NVML: checked on a GPU machine only

    who = {"job": "promjob", "namespace": "team-a", "pod": "promjob-worker-0"}
    by_rank = {s[0]["rank"]: s for s in final["llmtj_step"]}
    assert set(by_rank) == {"0", "1"} and all({k: v for k, v in s[0].items() if k != "rank"} == who
                                              for s in by_rank.values())
    value = {name: {s[0]["rank"]: s[1] for s in final[name]} for name in
             ("llmtj_step", "llmtj_tokens_total", "llmtj_world_size", "llmtj_restarts", "llmtj_mfu_ratio",
              "llmtj_step_duration_seconds_count", "llmtj_train_loss", "llmtj_tokens_per_second")}
    assert value["llmtj_world_size"] == {"0": 2, "1": 2} and value["llmtj_restarts"] == {"0": 3, "1": 3}
    # each rank counts its share of the global batch (8 sequences of the debug config's seq_len)
    seq_len = yaml.safe_load(Path(DEBUG).read_text())["data"]["seq_len"]
    for rank in ("0", "1"):
        assert value["llmtj_tokens_total"][rank] == pytest.approx(value["llmtj_step"][rank] * 8 * seq_len / 2,
                                                                  abs=8 * seq_len), value
        assert 0 < value["llmtj_mfu_ratio"][rank] < 1 and value["llmtj_train_loss"][rank] > 0
        assert value["llmtj_step_duration_seconds_count"][rank] >= 20  # one observation per step
        assert value["llmtj_tokens_per_second"][rank] > 0
    saved = {s[0]["rank"]: s[1] for s in final["llmtj_checkpoint_save_duration_seconds"]}
    assert list(saved) == ["0"] and saved["0"] > 0  # DDP: rank 0 writes the file
    assert time.time() - final["llmtj_checkpoint_last_timestamp_seconds"][0][1] < 120
    info = final["llmtj_trainer_info"][0][0]
    assert info["model"] == "gpt-debug" and int(info["parameters"]) > 0 and info["version"]


def test_a_port_taken_costs_the_metrics_not_the_training(tmp_path, capsys):
    """Pods sharing a host's network: the endpoint binds the pod's own address, and a clash only loses metrics."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        env = {"LLMTJ_METRICS_PORT": str(taken.getsockname()[1]), "LLMTJ_METRICS_HOST": "127.0.0.1"}
        assert serve_metrics(env, tmp_path / "ranks") == {}  # the ranks write nothing
        assert "training goes on without it" in capsys.readouterr().err
    finally:
        taken.close()
    assert serve_metrics({}, tmp_path / "none") == {}  # not asked for: no endpoint
