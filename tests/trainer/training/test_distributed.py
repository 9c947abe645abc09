"""Multi-process training on CPU with gloo: DDP and FSDP2 (full, hybrid, CPU offload) match one process,
2-node torchrun, failures."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distributed_llm_trainer.training.checkpoint_io import load_checkpoint_file

from .helpers import DEBUG, FAST, REPO, descendants, free_port, script

pytestmark = pytest.mark.slow
SAME = ["training.max_steps=10", "training.global_batch_size=8", "training.batch_size=4", "logging.interval=1",
        "training.eval_interval=5", "run.deterministic=true", "checkpoint.export_hf=false",
        "distributed.accelerator=cpu", *FAST]


def _run(out: Path, name: str, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = script("run_training.py", "--config", DEBUG, f"run.output_dir={out}", f"run.name={name}", *SAME, *extra,
                  env=env)
    return proc


def _losses(run: Path, key: str = "train/loss") -> dict[int, float]:
    with open(run / "metrics.csv", newline="") as f:
        return {int(float(r["step"])): float(r[key]) for r in csv.DictReader(f) if r.get(key)}


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("single")
    proc = _run(out, "one")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "one"


@pytest.mark.parametrize(("strategy", "tol"), [("ddp", 1e-5), ("fsdp", 1e-4)])
def test_two_processes_match_one(single: Path, tmp_path: Path, strategy: str, tol: float) -> None:
    proc = _run(tmp_path, strategy, "distributed.devices=2", f"distributed.strategy={strategy}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = _losses(single), _losses(tmp_path / strategy)
    assert sorted(one) == sorted(two) == list(range(1, 11))
    for step in one:
        assert abs(one[step] - two[step]) <= tol, (step, one[step], two[step])
    v1, v2 = _losses(single, "val/loss"), _losses(tmp_path / strategy, "val/loss")
    assert v1.keys() == v2.keys() and all(abs(v1[s] - v2[s]) <= tol for s in v1)
    summary = json.loads((tmp_path / strategy / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["accumulation"] == 1 and summary["global_batch_size"] == 8
    if strategy == "fsdp":  # full sharding: one mesh dimension over both ranks, no offload
        assert summary["fsdp"] == {"mesh": {"data_parallel": 2}, "placements": ["Shard(dim=0)"],
                                   "cpu_offload": False, "pin_memory": False}, summary["fsdp"]
    else:
        assert "fsdp" not in summary


def test_ddp_with_accumulation_matches_one_process(single: Path, tmp_path: Path) -> None:
    """2 processes x micro-batch 2 x accumulation 2 (Lightning's no_sync), the default static_graph config.
    Validation reads eval_steps batches of the micro-batch size, so only the training losses are comparable."""
    proc = _run(tmp_path, "acc", "distributed.devices=2", "distributed.strategy=ddp", "training.batch_size=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "acc" / "summary.json").read_text())["accumulation"] == 2
    _assert_matches_single(single, tmp_path / "acc", tol=1e-5, val=False)


def test_fsdp_sharded_checkpoint_resumes(tmp_path: Path) -> None:
    common = ["distributed.devices=2", "distributed.strategy=fsdp", "checkpoint.every_n_steps=5",
              "training.lr_decay_steps=10"]
    assert _run(tmp_path, "straight", *common).returncode == 0
    first = _run(tmp_path, "split", *common, "training.max_steps=5")
    assert first.returncode == 0, first.stderr[-3000:]
    shard_dir = tmp_path / "split" / "checkpoints" / "last.ckpt"
    assert shard_dir.is_dir() and (shard_dir / ".metadata").is_file()  # a torch.distributed.checkpoint folder
    again = _run(tmp_path, "split", *common, "--resume", str(tmp_path / "split"))
    assert again.returncode == 0, again.stderr[-3000:]
    a, b = _losses(tmp_path / "straight"), _losses(tmp_path / "split")
    assert a.keys() == b.keys()
    assert all(abs(a[s] - b[s]) <= 1e-5 for s in a), (a, b)




def _torchrun_two_nodes(out: Path, *extra: str, per_node: int = 1, name: str = "twonode",
                        strategy: str = "ddp", timeout: float = 240) -> list[subprocess.CompletedProcess]:
    """Launch both nodes' torchrun agents; their output goes to files (never a pipe that nobody drains).

    When one node fails, the other is stopped after a short grace: otherwise its agent would sit in torchelastic's
    exit barrier (300 s) waiting for an agent that skips it after a failure.
    """
    port = free_port()
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    logs = out / "torchrun-logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs, files = [], []
    for node in (0, 1):
        cmd = [torchrun, "--nnodes=2", f"--node-rank={node}", f"--nproc-per-node={per_node}",
               "--master-addr=127.0.0.1", f"--master-port={port}", str(REPO / "scripts" / "run_training.py"),
               "--config", DEBUG, f"run.output_dir={out}", f"run.name={name}", *SAME, "distributed.num_nodes=2",
               f"distributed.devices={per_node}", f"distributed.strategy={strategy}", "checkpoint.every_n_steps=5",
               *extra]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}  # stacks on a crash or SIGABRT
        stdout = open(logs / f"{name}-node{node}-{port}.out", "w+")
        stderr = open(logs / f"{name}-node{node}-{port}.err", "w+")
        files.append((stdout, stderr))
        procs.append(subprocess.Popen(cmd, stdout=stdout, stderr=stderr, text=True, env=env, cwd=REPO))
    deadline, failed_at = time.monotonic() + timeout, None
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        if failed_at is None and any(p.poll() not in (None, 0) for p in procs):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() > failed_at + 20:
            break
        time.sleep(0.2)
    results = []
    for p, (stdout, stderr) in zip(procs, files):
        note = ""
        if p.poll() is None:
            _dump_stacks_and_kill(p)
            note = f"\n[test harness: killed after {'a peer failed' if failed_at else f'{timeout:.0f} s'}]"
        p.wait()
        stdout.seek(0)
        stderr.seek(0)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, stdout.read(), stderr.read() + note))
        stdout.close()
        stderr.close()
    return results




def _dump_stacks_and_kill(proc: subprocess.Popen) -> None:
    """SIGABRT the agent and its workers first: with PYTHONFAULTHANDLER they print every thread's stack."""
    pids = [proc.pid, *descendants(proc.pid)]
    for sig in (signal.SIGABRT, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def _tails(results: list[subprocess.CompletedProcess]) -> str:
    def tail(text: str, n: int) -> str:
        return "\n".join(ln for ln in text.splitlines() if not ln.startswith("Extension modules:"))[-n:]

    return "\n".join(f"--- node {i}: exit {r.returncode}\nstdout: {tail(r.stdout, 1500)}\n"
                     f"stderr: {tail(r.stderr, 8000)}" for i, r in enumerate(results))


def test_two_node_torchrun_trains_checkpoints_and_resumes(tmp_path: Path) -> None:
    first = _torchrun_two_nodes(tmp_path, "training.max_steps=5")
    assert all(r.returncode == 0 for r in first), _tails(first)
    run = tmp_path / "twonode"
    assert load_checkpoint_file(run / "checkpoints" / "last.ckpt")["global_step"] == 5
    second = _torchrun_two_nodes(tmp_path, "training.max_steps=10", "--resume", str(run))
    assert all(r.returncode == 0 for r in second), _tails(second)
    assert load_checkpoint_file(run / "checkpoints" / "last.ckpt")["global_step"] == 10
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["resumed"] and summary["steps"] == 10


def _assert_matches_single(single: Path, run: Path, tol: float = 1e-4, val: bool = True) -> None:
    one, many = _losses(single), _losses(run)
    assert sorted(one) == sorted(many) == list(range(1, 11))
    for step in one:
        assert abs(one[step] - many[step]) <= tol, (step, one[step], many[step])
    if not val:
        return
    v1, v2 = _losses(single, "val/loss"), _losses(run, "val/loss")
    assert v1.keys() == v2.keys() and all(abs(v1[s] - v2[s]) <= tol for s in v1), (v1, v2)


def test_fsdp_hybrid_two_nodes_matches_one_process(single: Path, tmp_path: Path) -> None:
    """HSDP over 2 nodes x 2 processes (torchrun on loopback): a 2-D (replicate=2, shard=2) mesh, same losses."""
    # half the micro-batch, so twice the val batches: the same 8 val windows as the single process
    results = _torchrun_two_nodes(tmp_path, "distributed.fsdp.sharding=hybrid", "training.batch_size=2",
                                  "training.eval_steps=4", per_node=2, name="hybrid", strategy="fsdp")
    assert all(r.returncode == 0 for r in results), _tails(results)
    run = tmp_path / "hybrid"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 4 and summary["accumulation"] == 1 and summary["global_batch_size"] == 8
    # read back from the trained parameters: replicated across the 2 nodes, sharded over the 2 ranks of a node
    assert summary["fsdp"]["mesh"] == {"replicate": 2, "shard": 2}, summary["fsdp"]
    assert summary["fsdp"]["placements"] == ["Replicate()", "Shard(dim=0)"], summary["fsdp"]
    _assert_matches_single(single, run)


def test_fsdp_cpu_offload_matches_one_process(single: Path, tmp_path: Path) -> None:
    """cpu_offload on a CPU run: torch's offload policy really runs (unpinned: pinning needs a GPU), same losses."""
    proc = _run(tmp_path, "offload", "distributed.devices=2", "distributed.strategy=fsdp",
                "distributed.fsdp.cpu_offload=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "offload" / "summary.json").read_text())
    assert summary["fsdp"] == {"mesh": {"data_parallel": 2}, "placements": ["Shard(dim=0)"], "cpu_offload": True,
                               "pin_memory": False}, summary["fsdp"]
    _assert_matches_single(single, tmp_path / "offload")


def test_killed_rank_ends_the_job(tmp_path: Path) -> None:
    env = {"DLT_FAULT_KILL_AT_STEP": "3", "DLT_FAULT_KILL_RANK": "1"}
    start = time.time()
    proc = script("run_training.py", "--config", DEBUG, f"run.output_dir={tmp_path}", "run.name=k", *SAME,
                  "training.max_steps=100000", "distributed.devices=2", "distributed.strategy=ddp",
                  "distributed.timeout_s=60", env=env, timeout=240)
    assert proc.returncode != 0
    assert "rank 1" in proc.stderr and "died" in proc.stderr, proc.stderr[-2000:]
    assert time.time() - start < 120


def test_ddp_sigkill_resume_is_bitwise(tmp_path: Path) -> None:
    proc = script("check_resume.py", "--config", DEBUG, "training.max_steps=12", "checkpoint.every_n_steps=4",
                  "distributed.devices=2", "distributed.strategy=ddp", "distributed.accelerator=cpu",
                  "--kill-at", "7", "--workdir", str(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["bitwise_equal"]


def test_fsdp_checkpoint_reshards_as_the_world_grows_and_shrinks(tmp_path: Path) -> None:
    """torch.distributed.checkpoint reshards FSDP2 checkpoints: 2 -> 3 -> 1 processes read each step's windows and
    reach the losses of one process that ran all 10 steps (global batch 12: accumulation 3, 2, then 6)."""
    common = ["distributed.strategy=fsdp", "training.global_batch_size=12", "training.batch_size=2",
              "training.lr_decay_steps=10", "checkpoint.every_n_steps=100"]

    def run(name: str, devices: int, steps: int, *extra: str) -> None:
        trace = tmp_path / f"{name}-trace"
        trace.mkdir(exist_ok=True)
        proc = _run(tmp_path, name, *common, f"distributed.devices={devices}", f"training.max_steps={steps}", *extra,
                    env={"DLT_TRACE_BATCHES": str(trace)})
        assert proc.returncode == 0, proc.stderr[-3000:]

    run("one", 1, 10)
    run("ws", 2, 4)
    run("ws", 3, 7, "--resume", str(tmp_path / "ws"))
    run("ws", 1, 10, "--resume", str(tmp_path / "ws"))
    summary = json.loads((tmp_path / "ws" / "summary.json").read_text())
    assert summary["steps"] == 10 and summary["world_size"] == 1 and summary["accumulation"] == 6

    def windows(name: str) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for f in (tmp_path / f"{name}-trace").glob("trace-*.jsonl"):
            for line in f.read_text().splitlines():
                r = json.loads(line)
                out.setdefault(r["step"], []).extend(r["rows"])
        return {k: sorted(v) for k, v in out.items()}

    assert windows("ws") == windows("one")  # the same windows in every step, whatever the world size
    one, ws = _losses(tmp_path / "one"), _losses(tmp_path / "ws")
    assert sorted(ws) == list(range(1, 11))
    assert all(abs(one[s] - ws[s]) <= 1e-4 for s in one), (one, ws)
    v1, v2 = _losses(tmp_path / "one", "val/loss"), _losses(tmp_path / "ws", "val/loss")
    assert abs(v1[10] - v2[10]) <= 1e-4, (v1, v2)
