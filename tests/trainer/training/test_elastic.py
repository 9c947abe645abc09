"""Elastic training on loopback, without Kubernetes: ``llmtj-worker`` agents (torchrun ``--nnodes=1:3``, c10d
rendezvous on a standalone ``llmtj-rendezvous`` store) join and die mid-run, and the run goes on from the newest
checkpoint reading exactly the windows an uninterrupted run reads."""

from __future__ import annotations

import collections
import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .helpers import DEBUG, FAST, REPO, descendants, free_port

pytestmark = pytest.mark.slow
MAX_STEPS, EVERY = 180, 10
PACE = {"DLT_FAULT_STEP_SLEEP_S": "0.15"}  # a slower model, so that each change lands mid-run
ARGS = [f"training.max_steps={MAX_STEPS}", "training.global_batch_size=12", "training.batch_size=2",
        f"training.lr_decay_steps={MAX_STEPS}", "logging.interval=1", "training.eval_interval=60",
        "run.deterministic=true",
        # keep_last=1: each new world resumes the only step checkpoint left, which its next save then prunes
        f"checkpoint.every_n_steps={EVERY}", "checkpoint.keep_last=1", "checkpoint.export_hf=false",
        "distributed.accelerator=cpu",
        "distributed.timeout_s=60", *FAST]
BIN = Path(sys.executable).parent






class Agent:
    """One node: ``llmtj-worker`` as a pod runs it (torchrun's settings in ``PET_*``), output in a log file."""

    def __init__(self, name: str, out: Path, env: dict[str, str]) -> None:
        self.name, self.log = name, out / f"{name}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([str(BIN / "llmtj-worker"), *ARGS], stdout=log, stderr=subprocess.STDOUT,
                                         env=env, cwd=REPO, start_new_session=True)

    def kill(self) -> None:
        """SIGKILL the agent and its workers at once, as a lost node (nothing gets to clean up)."""
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait(timeout=30)

    def tail(self) -> str:
        return f"--- {self.name} (exit {self.proc.poll()})\n" + self.log.read_text(errors="replace")[-4000:]


def _records(trace: Path) -> list[dict]:
    out = []
    for f in trace.glob("trace-*.jsonl"):
        for line in f.read_text().splitlines():
            if line.endswith("}"):  # a killed writer may leave half a line
                out.append(json.loads(line))
    return out


def _windows_per_step(records: list[dict]) -> dict[int, collections.Counter]:
    """Step -> multiset of the windows its last attempt read (a redone step's earlier attempt is dropped)."""
    last = {}
    for r in records:
        last[r["step"]] = max(last.get(r["step"], 0.0), r["group"])
    per_step: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in records:
        if r["group"] == last[r["step"]]:
            per_step[r["step"]].update(r["rows"])
    return per_step


def _wait(what: str, check: Callable[[], bool], agents: list[Agent], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        failed = [a for a in agents if a.proc.poll() not in (None, 0)]
        ended = agents and all(a.proc.poll() is not None for a in agents)
        if failed or ended or time.monotonic() > deadline:
            pytest.fail(f"waiting for {what}: " + "\n".join(a.tail() for a in agents))
        time.sleep(0.2)


def _losses(run: Path, key: str) -> dict[int, float]:
    with open(run / "metrics.csv", newline="") as f:
        return {int(float(r["step"])): float(r[key]) for r in csv.DictReader(f) if r.get(key)}


@pytest.fixture
def store(tmp_path: Path):
    """A standalone ``llmtj-rendezvous`` store, and the ``PET_*`` settings that point agents at it."""
    port = free_port()
    log = tmp_path / "store.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(BIN / "llmtj-rendezvous"), "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "ready" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    yield {"PET_NNODES": "1:3", "PET_NPROC_PER_NODE": "1", "PET_RDZV_BACKEND": "c10d",
           "PET_RDZV_ENDPOINT": f"127.0.0.1:{port}", "PET_RDZV_ID": "elastic", "PET_MAX_RESTARTS": "5",
           # no agent hosts the store; short rendezvous windows keep the tests quick (the defaults are 30 s / 5 s)
           "PET_RDZV_CONF": "is_host=false,last_call_timeout=3,keep_alive_interval=1,keep_alive_max_attempt=3"}
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def test_agents_join_and_die_mid_run(tmp_path: Path, store: dict[str, str]) -> None:
    """2 agents -> a third joins (the others checkpoint on SIGTERM and re-form at 3) -> two are SIGKILLed, among
    them the first (rank 0) -> the survivor re-forms alone from the newest checkpoint and finishes at max_steps."""
    base = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1", "LLMTJ_CONFIG": DEBUG,
            "LLMTJ_OUTPUT_DIR": str(tmp_path)}
    (tmp_path / "ref-trace").mkdir()
    (tmp_path / "trace").mkdir()

    env = {**base, "LLMTJ_RUN_NAME": "elastic", "DLT_TRACE_BATCHES": str(tmp_path / "trace"), **store, **PACE}
    agents: list[Agent] = []
    try:
        agents += [Agent("a", tmp_path, env), Agent("b", tmp_path, env)]

        def reached(world: int, step: int) -> Callable[[], bool]:
            return lambda: any(r["world"] == world and r["step"] >= step for r in _records(tmp_path / "trace"))

        _wait("2 workers training", reached(2, 5), agents)
        agents.append(Agent("c", tmp_path, env))
        _wait("the world to grow to 3", reached(3, 1), agents)
        grown_at = min(r["step"] for r in _records(tmp_path / "trace") if r["world"] == 3)
        _wait("3 workers training", reached(3, grown_at + 8), agents)
        agents[0].kill()  # the first agent: rank 0, and the store's host in torchrun's default set-up
        agents[1].kill()
        _wait("the survivor to finish", lambda: agents[2].proc.poll() is not None, agents[2:], timeout=600)
        assert agents[2].proc.returncode == 0, agents[2].tail()
    finally:
        for a in agents:
            if a.proc.poll() is None:
                a.kill()
    # the uninterrupted run: one process (torchrun --standalone), all steps
    reference = Agent("reference", tmp_path, {**base, "LLMTJ_RUN_NAME": "ref",
                                              "DLT_TRACE_BATCHES": str(tmp_path / "ref-trace")})
    assert reference.proc.wait(timeout=600) == 0, reference.tail()

    records = _records(tmp_path / "trace")
    worlds = [w for w, _ in sorted({(r["world"], r["group"]) for r in records}, key=lambda x: x[1])]
    assert worlds[0] == 2 and 3 in worlds and worlds[-1] == 1, worlds
    ref, got = _windows_per_step(_records(tmp_path / "ref-trace")), _windows_per_step(records)
    assert sorted(got) == sorted(ref) == list(range(1, MAX_STEPS + 1))
    assert all(got[s] == ref[s] for s in ref), [s for s in ref if got[s] != ref[s]]  # the same windows, step by step
    # The grow costs nothing (a checkpoint on SIGTERM at a step boundary); the kill at most one checkpoint interval.
    attempts = collections.Counter(s for s, _ in {(r["step"], r["group"]) for r in records})
    redone = sum(n - 1 for n in attempts.values())
    assert redone <= EVERY, attempts

    summary = json.loads((tmp_path / "elastic" / "summary.json").read_text())
    assert summary["steps"] == MAX_STEPS and summary["world_size"] == 1 and summary["accumulation"] == 6
    logs = "".join((tmp_path / f"{n}.log").read_text() for n in "abc")
    assert "skipping checkpoint" not in logs  # no start found a checkpoint half-written or pruned under it
    assert len(list((tmp_path / "elastic" / "checkpoints").glob("step-*.ckpt"))) == 1  # keep_last held
    train_ref, train = _losses(tmp_path / "ref", "train/loss"), _losses(tmp_path / "elastic", "train/loss")
    assert all(abs(train[s] - train_ref[s]) < 1e-3 for s in train_ref), (train_ref, train)
    val_ref, val = _losses(tmp_path / "ref", "val/loss"), _losses(tmp_path / "elastic", "val/loss")
    assert abs(val[MAX_STEPS] - val_ref[MAX_STEPS]) < 1e-3, (val_ref, val)


def test_a_sigterm_to_one_agent_stops_it_cleanly_and_the_other_goes_on(tmp_path: Path, store: dict[str, str]) -> None:
    """Pod deletion, eviction, drain: SIGTERM to one node -> every rank saves at the next step boundary; the
    signalled node exits 143 (stopped on purpose), the other re-forms alone from that checkpoint: no step is lost."""
    (tmp_path / "trace").mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1", "LLMTJ_CONFIG": DEBUG,
           "LLMTJ_OUTPUT_DIR": str(tmp_path), "LLMTJ_RUN_NAME": "elastic", "DLT_TRACE_BATCHES": str(tmp_path / "trace"),
           **store, **PACE}
    agents = [Agent("a", tmp_path, env), Agent("b", tmp_path, env)]
    try:
        _wait("2 workers training", lambda: any(r["world"] == 2 and r["step"] >= 15
                                                for r in _records(tmp_path / "trace")), agents)
        agents[1].proc.send_signal(signal.SIGTERM)  # to llmtj-worker, as the kubelet does
        assert agents[1].proc.wait(timeout=120) == 143, agents[1].tail()
        _wait("the other to finish", lambda: agents[0].proc.poll() is not None, agents[:1], timeout=600)
        assert agents[0].proc.returncode == 0, agents[0].tail()
    finally:
        for a in agents:
            if a.proc.poll() is None:
                a.kill()
    records = _records(tmp_path / "trace")
    attempts = collections.Counter(s for s, _ in {(r["step"], r["group"]) for r in records})
    assert sorted(attempts) == list(range(1, MAX_STEPS + 1)) and set(attempts.values()) == {1}, attempts  # none redone
    worlds = [w for w, _ in sorted({(r["world"], r["group"]) for r in records}, key=lambda x: x[1])]
    assert worlds == [2, 1], worlds
    # global rank 0 says it, on whichever node the rendezvous gave rank 0 (not necessarily the signalled one)
    assert "SIGTERM received: saving a checkpoint" in "".join(a.log.read_text() for a in agents)
    summary = json.loads((tmp_path / "elastic" / "summary.json").read_text())
    assert summary["steps"] == MAX_STEPS and summary["world_size"] == 1


def test_a_sigterm_that_lands_while_the_group_finishes_only_marks_the_stop(tmp_path: Path, store: dict[str, str]
                                                                          ) -> None:
    """Deleting a job SIGTERMs its pods a moment apart: the first signal stops the group at a step boundary, and the
    second lands on a node whose ranks are already finishing (here held there for 5 s). It must not kill them
    between their last collective and rank 0's summary: both nodes exit 143 and the run's end is written."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LLMTJ_CONFIG": DEBUG, "LLMTJ_OUTPUT_DIR": str(tmp_path),
           "LLMTJ_RUN_NAME": "elastic", "DLT_TRACE_BATCHES": str(tmp_path / "trace"), "DLT_FAULT_FINISH_SLEEP_S": "5",
           **store, **PACE}
    (tmp_path / "trace").mkdir()
    agents = [Agent("a", tmp_path, env), Agent("b", tmp_path, env)]
    try:
        _wait("2 workers training", lambda: any(r["world"] == 2 and r["step"] >= 15
                                                for r in _records(tmp_path / "trace")), agents)
        agents[1].proc.send_signal(signal.SIGTERM)
        said = "SIGTERM received: saving a checkpoint"
        _wait("the group to stop", lambda: any(said in a.log.read_text() for a in agents), agents, timeout=120)
        time.sleep(1)  # every rank is past its checkpoint and in the 5 s pause at the start of the run's end
        agents[0].proc.send_signal(signal.SIGTERM)
        assert [a.proc.wait(timeout=120) for a in agents] == [143, 143], "\n".join(a.tail() for a in agents)
    finally:
        for a in agents:
            if a.proc.poll() is None:
                a.kill()
    summary = json.loads((tmp_path / "elastic" / "summary.json").read_text())
    assert summary["stop_reason"] == "SIGTERM" and summary["world_size"] == 2, summary
