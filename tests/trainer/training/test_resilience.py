"""Crash, preemption and divergence: SIGKILLs with bitwise resume, interrupted saves, NaN/spike handling."""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from distributed_llm_trainer.training.checkpoint_io import (
    AtomicCheckpointIO,
    load_checkpoint_file,
    newest_valid_checkpoint,
)

from .helpers import DEBUG, FAST, REPO, cli, script, train_args

RESUME_ARGS = ["training.max_steps=24", "checkpoint.every_n_steps=4", "training.eval_interval=8"]


@pytest.mark.slow
def test_three_sigkills_resume_bitwise(tmp_path: Path) -> None:
    proc = script("check_resume.py", "--config", DEBUG, *RESUME_ARGS, "--kills", "3", "--seed", "3",
                  "--workdir", str(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["bitwise_equal"] and report["max_weight_diff"] == 0.0
    assert len(report["kills"]) == 3 and report["steps_compared"] >= 4


@pytest.mark.slow
def test_sigkill_resume_with_workers_across_epoch_boundary(tmp_path: Path) -> None:
    # 30 documents of ~1k bytes -> few windows: several epochs in 24 steps, kills mid-epoch and at a boundary
    proc = script("check_resume.py", "--config", DEBUG, *RESUME_ARGS, "data.max_documents=12", "data.num_workers=2",
                  "--kill-at", "6", "--kill-at", "15", "--workdir", str(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["bitwise_equal"], report


def _save_then_die(path: str, target: str) -> None:
    """Child: start saving a large checkpoint over ``target`` and get SIGKILLed mid-write."""
    import distributed_llm_trainer.utils.fs as fs

    real_fsync = os.fsync

    def dying_fsync(fd: int) -> None:  # the bytes are in the temp file, the rename has not happened
        os.kill(os.getpid(), signal.SIGKILL)
        real_fsync(fd)

    fs.os.fsync = dying_fsync  # type: ignore[attr-defined]
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.full((256, 256), 2.0)}, "global_step": 2},
                                         target)


def test_kill_during_save_keeps_previous_checkpoint(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    good = tmp_path / "step-00000001.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, good)
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=_save_then_die, args=(str(tmp_path), str(tmp_path / "step-00000002.ckpt")))
    p.start()
    p.join(60)
    assert p.exitcode == -signal.SIGKILL
    assert not (tmp_path / "step-00000002.ckpt").exists()
    assert newest_valid_checkpoint(tmp_path) == good
    assert load_checkpoint_file(good)["global_step"] == 1
    # an interrupted overwrite of the same name leaves the old bytes, detected as stale by the checksum at worst
    p = ctx.Process(target=_save_then_die, args=(str(tmp_path), str(good)))
    p.start()
    p.join(60)
    try:
        assert load_checkpoint_file(good)["global_step"] == 1
    except Exception:
        assert newest_valid_checkpoint(tmp_path) is None  # never a silently trusted half state


def test_a_resumed_run_does_not_save_its_first_step_again_mid_accumulation(tmp_path: Path) -> None:
    """Resumed at a checkpoint step with accumulation 2: Lightning's ModelCheckpoint saved that step again after the
    first micro-batch (step-00000002-v1.ckpt and last.ckpt, mid-step); a resume from those skipped its windows."""
    common = ["training.global_batch_size=8", "training.batch_size=4", "checkpoint.every_n_steps=2",
              "checkpoint.export_hf=false", "distributed.accelerator=cpu"]
    assert cli(train_args(tmp_path, "acc", "training.max_steps=2", *common))[0] == 0
    assert cli([*train_args(tmp_path, "acc", "training.max_steps=3", *common), "--resume", str(tmp_path / "acc")]
               )[0] == 0
    names = sorted(p.name for p in (tmp_path / "acc" / "checkpoints").glob("*.ckpt"))
    assert names == ["best.ckpt", "last.ckpt", "step-00000002.ckpt"], names


def test_nan_steps_are_skipped_and_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLT_FAULT_NAN_AT_STEPS", "5,6")
    args = train_args(tmp_path, "nan", "training.max_steps=8", "checkpoint.every_n_steps=4", "logging.interval=1",
                      "checkpoint.export_hf=false", "run.deterministic=true")
    assert cli(args)[0] == 0
    import csv

    with open(tmp_path / "nan" / "metrics.csv", newline="") as f:
        rows = {int(float(r["step"])): r for r in csv.DictReader(f) if r.get("train/skipped_steps")}
    assert float(rows[5]["train/skipped_steps"]) == 1.0 and float(rows[6]["train/skipped_steps"]) == 1.0
    assert float(rows[4]["train/skipped_steps"]) == 0.0 and float(rows[7]["train/skipped_steps"]) == 0.0
    # step 4's weights are untouched by the NaN steps: compare a run that stops at 4 with the NaN run's step-4
    # checkpoint, then check the LR still advanced (the schedule counts skipped steps).
    w4 = load_checkpoint_file(tmp_path / "nan" / "checkpoints" / "step-00000004.ckpt")["state_dict"]
    w8 = load_checkpoint_file(tmp_path / "nan" / "checkpoints" / "last.ckpt")["state_dict"]
    assert all(torch.isfinite(v).all() for v in w8.values())
    assert any(not torch.equal(w4[k], w8[k]) for k in w4)


def test_nan_weights_untouched_on_skipped_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLT_FAULT_NAN_AT_STEPS", "3")
    common = ["training.max_steps=3", "checkpoint.every_n_steps=1", "checkpoint.export_hf=false",
              "run.deterministic=true", "training.lr_decay_steps=10"]
    assert cli(train_args(tmp_path, "nan", *common))[0] == 0
    ckpts = tmp_path / "nan" / "checkpoints"
    w2 = load_checkpoint_file(ckpts / "step-00000002.ckpt")
    w3 = load_checkpoint_file(ckpts / "step-00000003.ckpt")
    for k in w2["state_dict"]:
        assert torch.equal(w2["state_dict"][k], w3["state_dict"][k]), k
    s2, s3 = w2["optimizer_states"][0]["state"], w3["optimizer_states"][0]["state"]
    for i in s2:
        assert torch.equal(s2[i]["exp_avg"], s3[i]["exp_avg"])


def test_consecutive_bad_steps_roll_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLT_FAULT_NAN_AT_STEPS", "9,10,11")
    args = train_args(tmp_path, "rb", "training.max_steps=14", "checkpoint.every_n_steps=4", "logging.interval=1",
                      "training.max_bad_steps=3", "checkpoint.export_hf=false")
    assert cli(args)[0] == 0
    log = [json.loads(line) for line in (tmp_path / "rb" / "rollbacks.jsonl").read_text().splitlines()]
    assert log[0]["bad_step"] == 11 and log[0]["restart_step"] == 8
    assert log[0]["skipped_samples_per_rank"] == (11 - 8) * 4
    summary = json.loads((tmp_path / "rb" / "summary.json").read_text())
    assert summary["steps"] == 14


def test_loss_spike_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLT_FAULT_SPIKE_AT_STEPS", "16")
    args = train_args(tmp_path, "sp", "training.max_steps=18", "checkpoint.every_n_steps=5",
                      "training.spike_factor=1.3", "checkpoint.export_hf=false", "training.learning_rate=0.01")
    assert cli(args)[0] == 0
    log = [json.loads(line) for line in (tmp_path / "sp" / "rollbacks.jsonl").read_text().splitlines()]
    assert log[0]["bad_step"] == 16 and log[0]["restart_step"] == 15 and "running mean" in log[0]["reason"]


def test_loss_spike_with_accumulation_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Accumulation 2: the bad data is in the step's first micro-batch, and Lightning hands the guard each loss
    divided by 2; the guard still sees the step's true loss (and keeps its running mean on that scale)."""
    monkeypatch.setenv("DLT_FAULT_SPIKE_AT_STEPS", "16")
    args = train_args(tmp_path, "spa", "training.max_steps=18", "checkpoint.every_n_steps=5",
                      "training.spike_factor=1.3", "checkpoint.export_hf=false", "training.learning_rate=0.01",
                      "training.global_batch_size=8", "logging.interval=1")
    assert cli(args)[0] == 0
    run = tmp_path / "spa"
    log = [json.loads(line) for line in (run / "rollbacks.jsonl").read_text().splitlines()]
    assert log[0]["bad_step"] == 16 and log[0]["restart_step"] == 15 and "running mean" in log[0]["reason"]
    assert log[0]["skipped_samples_per_rank"] == (16 - 15) * 4 * 2
    assert json.loads((run / "summary.json").read_text())["accumulation"] == 2
    state = load_checkpoint_file(run / "checkpoints" / "last.ckpt")["callbacks"]["SpikeGuard"]
    with open(run / "metrics.csv") as f:  # every step's loss (logging.interval=1), as the module logs it
        losses = {int(float(r["step"])): float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")}
    assert sorted(losses) == list(range(1, 19)) and state["seen"] == 18
    mean = losses[1]
    for step in range(2, 19):  # the guard's running mean (decay 0.9) is over these true step losses
        mean = 0.9 * mean + 0.1 * losses[step]
    assert state["mean"] == pytest.approx(mean, rel=1e-5), (state, mean)


@pytest.mark.slow
def test_sigterm_saves_and_exits_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(REPO / "scripts" / "run_training.py"), *train_args(tmp_path, "pre", *FAST),
           "training.max_steps=100000", "checkpoint.every_n_steps=100000", "checkpoint.export_hf=false"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "pre" / "metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "pre" / "tokenizer").exists():
        time.sleep(0.5)
    time.sleep(4)  # inside the training loop
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "SIGTERM received" in out
    ckpt = load_checkpoint_file(tmp_path / "pre" / "checkpoints" / "last.ckpt")
    summary = json.loads((tmp_path / "pre" / "summary.json").read_text())
    assert summary["stop_reason"] == "SIGTERM" and ckpt["global_step"] == summary["steps"] > 0
    assert metrics.exists()
