"""``llmtj-worker``: the pods' entry point (torchrun command from the operator's env, permanent bad input)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distributed_llm_trainer.train import termination_message, world_overrides
from distributed_llm_trainer.worker import torchrun_command

from ..training.helpers import descendants

DEBUG = str(Path(__file__).resolve().parents[3] / "trainer_image" / "config" / "debug.yaml")
FAST = ["logging.progress_bar=false", "logging.tensorboard=false", "logging.report=false", "logging.sample_tokens=0",
        "checkpoint.export_hf=false", "distributed.accelerator=cpu"]


def worker() -> str:
    return shutil.which("llmtj-worker", path=os.path.dirname(sys.executable)) or "llmtj-worker"


def test_operator_env_becomes_torchrun_with_resume_into_the_jobs_run_dir():
    env = {"LLMTJ_CONFIG": "/etc/llmtj/config.yaml", "LLMTJ_OUTPUT_DIR": "/checkpoints", "LLMTJ_RUN_NAME": "tiny",
           "PET_RDZV_ENDPOINT": "tiny-worker-0.tiny-workers.ns.svc:29400"}
    cmd, overrides = torchrun_command(env, ["training.max_steps=5"])
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and "--standalone" not in cmd
    assert cmd[3:] == ["-m", "distributed_llm_trainer.train", "--resume", "auto", "--config", "/etc/llmtj/config.yaml",
                       "run.output_dir=/checkpoints", "run.name=tiny", "training.max_steps=5"]
    by_hand, _ = torchrun_command({}, [])
    assert "--standalone" in by_hand


def test_world_comes_from_torchrun_after_rendezvous():
    assert world_overrides({}) == []
    env = {"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "6", "LOCAL_WORLD_SIZE": "2"}
    assert world_overrides(env) == ["distributed.num_nodes=3", "distributed.devices=2"]


def test_termination_message_is_small_json():
    msg = termination_message({"steps": 40, "checkpoint": "/c/tiny/checkpoints/last.ckpt", "stop_reason": "max_steps",
                               "final_train_loss": 2.5, "samples": {"x": "y" * 10000}})
    assert json.loads(msg) == {"step": 40, "checkpoint": "/c/tiny/checkpoints/last.ckpt", "stopReason": "max_steps",
                               "trainLoss": 2.5}


def test_bad_config_exits_2_before_torchrun(tmp_path):
    env = {**os.environ, "LLMTJ_CONFIG": DEBUG, "LLMTJ_OUTPUT_DIR": str(tmp_path), "LLMTJ_RUN_NAME": "bad"}
    proc = subprocess.run([worker(), "model.num_attention_heads=5", "model.hidden_size=64"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("error: ")
    assert not any(tmp_path.iterdir())  # nothing of a run was made


def test_runtime_bad_input_inside_torchrun_is_permanent_and_fast(tmp_path):
    env = {**os.environ, "LLMTJ_CONFIG": DEBUG, "LLMTJ_OUTPUT_DIR": str(tmp_path), "LLMTJ_RUN_NAME": "missing",
           "PET_MAX_RESTARTS": "3", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([worker(), f"data.path={tmp_path}/nothing-*.txt", *FAST], env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: data.path")


def test_a_run_by_hand_trains_and_leaves_the_termination_message(tmp_path):
    msg = tmp_path / "termination-log"
    env = {**os.environ, "LLMTJ_CONFIG": DEBUG, "LLMTJ_OUTPUT_DIR": str(tmp_path / "ckpt"), "LLMTJ_RUN_NAME": "hand",
           "LLMTJ_TERMINATION_MESSAGE_PATH": str(msg), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([worker(), "training.max_steps=6", "checkpoint.every_n_steps=3", *FAST], env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(msg.read_text())
    assert data["step"] == 6 and Path(data["checkpoint"]).parent == tmp_path / "ckpt" / "hand" / "checkpoints"
    again = subprocess.run([worker(), "training.max_steps=8", "checkpoint.every_n_steps=3", *FAST], env=env,
                           capture_output=True, text=True, timeout=240)  # a restarted pod resumes the same run
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(msg.read_text())["step"] == 8


def test_checkpoint_folder_that_cannot_be_written_is_a_permanent_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the checkpoint volume should be")
    env = {**os.environ, "LLMTJ_CONFIG": DEBUG, "LLMTJ_OUTPUT_DIR": str(blocker / "ckpt"), "LLMTJ_RUN_NAME": "ro",
           "PET_MAX_RESTARTS": "3", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([worker(), *FAST], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 2, proc.stderr[-2000:]  # no restart loop: the operator reads exit 2 as permanent
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: run.output_dir") and "writ" in last, last


def _can_unshare_pid() -> bool:
    try:
        return subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _can_unshare_pid(), reason="needs unshare --pid (root)")
def test_a_pod_deleted_before_torchrun_starts_stops_at_once_as_pid_1(tmp_path):
    """A container's PID 1 never sees a signal it has no handler for: the pod deleted while llmtj-worker still waits
    for the rendezvous host must end at once (143), not train on until the grace period's SIGKILL."""
    env = {**os.environ, "LLMTJ_CONFIG": DEBUG, "LLMTJ_OUTPUT_DIR": str(tmp_path), "LLMTJ_RUN_NAME": "early",
           "PET_RDZV_ENDPOINT": "nowhere.invalid:29400", "PET_NNODES": "1:2", "LLMTJ_RDZV_WAIT_S": "120"}
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", worker(), *FAST], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (inner := descendants(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert inner, "llmtj-worker did not start"
        time.sleep(2.0)  # well inside the wait for the rendezvous host
        os.kill(inner[0], signal.SIGTERM)  # PID 1 inside its namespace
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, proc.stdout.read()  # unshare exits with its child's code
    assert not any(tmp_path.iterdir())  # nothing of a run was made
