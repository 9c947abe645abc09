"""What a membership change costs an elastic run on CPU (loopback, no Kubernetes); prints one JSON object.

    .venv/bin/python trainer_image/bench/elastic_restart.py [--dir DIR] [--rdzv-conf is_host=false,...]

Two ``llmtj-worker`` agents (torchrun ``--nnodes=1:3``, c10d rendezvous on an ``llmtj-rendezvous`` store, one
process each) train the debug model with a checkpoint every ``--every`` steps. Then, in turn:

- ``kill rank 0``: the first agent is SIGKILLed with its worker (a lost node), halfway through a checkpoint
  interval;
- ``join``: a new agent joins (the running workers save on SIGTERM and the group re-forms larger);
- ``stop``: one agent gets SIGTERM (pod deletion, eviction): every rank saves, the others re-form without it.

``--worker0`` also measures torchrun's default set-up for comparison: no store process, the first agent hosts the
rendezvous store (worker 0's in a PyTorchJob); SIGKILL that agent and time how the survivor ends.

Each change is timed to the first optimizer step of the new world and split into ``rendezvous`` (the change ->
the new worker processes start: failure detection, the agents' restart, the rendezvous round), ``start``
(process start -> trainer built: imports, data, model), ``restore`` (process group, checkpoint load, Lightning's
restore) and ``first_step``. ``redone_steps`` counts optimizer steps trained again, against ``checkpoint_every``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO.parent))

from tests.trainer.training.helpers import descendants, free_port  # noqa: E402

BIN = Path(sys.executable).parent
DEFAULT_CONF = "is_host=false,last_call_timeout=5,keep_alive_interval=2,keep_alive_max_attempt=3"  # the operator's






def records(trace: Path, prefix: str) -> list[dict]:
    out = []
    for f in trace.glob(f"{prefix}-*.jsonl"):
        out += [json.loads(line) for line in f.read_text().splitlines() if line.endswith("}")]
    return out


class Run:
    def __init__(self, out: Path, every: int, rdzv_conf: str, store: bool = True) -> None:
        self.out, self.trace = out, out / "trace"
        self.trace.mkdir(parents=True)
        self.port = port = free_port()
        self.store = subprocess.Popen([str(BIN / "llmtj-rendezvous"), "--port", str(port)],
                                      stdout=open(out / "store.log", "w"), stderr=subprocess.STDOUT) if store else None
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "LLMTJ_CONFIG": str(REPO / "config" / "debug.yaml"),
                    "LLMTJ_OUTPUT_DIR": str(out), "LLMTJ_RUN_NAME": "bench", "DLT_TRACE_BATCHES": str(self.trace),
                    "PET_NNODES": "1:3", "PET_NPROC_PER_NODE": "1", "PET_RDZV_BACKEND": "c10d",
                    "PET_RDZV_ENDPOINT": f"127.0.0.1:{port}", "PET_RDZV_ID": "bench", "PET_MAX_RESTARTS": "10",
                    "PET_RDZV_CONF": rdzv_conf}
        self.args = ["training.max_steps=100000", "training.global_batch_size=12", "training.batch_size=2",
                     "logging.interval=1", "training.eval_interval=100000", f"checkpoint.every_n_steps={every}",
                     "checkpoint.export_hf=false", "distributed.accelerator=cpu", "logging.progress_bar=false",
                     "logging.report=false", "logging.sample_tokens=0", "distributed.timeout_s=60"]
        self.agents: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> None:
        log = open(self.out / f"{name}.log", "w")
        self.agents[name] = subprocess.Popen([str(BIN / "llmtj-worker"), *self.args], stdout=log,
                                             stderr=subprocess.STDOUT, env=self.env, cwd=REPO, start_new_session=True)

    def kill(self, name: str) -> None:
        proc = self.agents.pop(name)
        for pid in [proc.pid, *descendants(proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        proc.wait()

    def stop(self, name: str) -> None:
        proc = self.agents.pop(name)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)

    def step(self) -> tuple[int, int, float]:
        """(newest step, its world size, its group) from the batch trace."""
        recs = records(self.trace, "trace")
        if not recs:
            return 0, 0, 0.0
        last = max(recs, key=lambda r: (r["group"], r["step"]))
        return last["step"], last["world"], last["group"]

    def wait(self, what: str, check, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in self.agents.values()):
                tails = {n: (self.out / f"{n}.log").read_text()[-2000:] for n in self.agents}
                raise SystemExit(f"timed out waiting for {what}: {json.dumps(tails, indent=1)}")
            time.sleep(0.1)

    def close(self) -> None:
        for name in list(self.agents):
            self.kill(name)
        if self.store is not None:
            self.store.terminate()
            self.store.wait(timeout=30)


def measure(run: Run, change: str, at: float, old_group: float, every: int) -> dict:
    """The phases of the first group formed after ``at``, and the steps it redid."""
    run.wait(f"the first step after {change}", lambda: run.step()[2] > old_group and any(
        e["event"] == "first_step" and e["t"] > at for e in records(run.trace, "events")))
    events = [e for e in records(run.trace, "events") if e["t"] > at or e["event"] == "process_start"]
    fresh = [e for e in events if e["event"] == "process_start" and e["t"] > at]
    first = {name: max(e["t"] for e in events if e["event"] == name and e["t"] > at)
             for name in ("built", "train_start", "first_step")}
    first["process_start"] = max(e["t"] for e in fresh)
    recs = records(run.trace, "trace")
    old_last = max(r["step"] for r in recs if r["group"] == old_group)
    new_group = min(r["group"] for r in recs if r["group"] > old_group)
    new_first = min(r["step"] for r in recs if r["group"] == new_group)
    world = max(r["world"] for r in recs if r["group"] == new_group)
    return {
        "change": change, "new_world": world,
        "rendezvous_s": round(first["process_start"] - at, 2),
        "start_s": round(first["built"] - first["process_start"], 2),
        "restore_s": round(first["train_start"] - first["built"], 2),
        "first_step_s": round(first["first_step"] - first["train_start"], 2),
        "total_s": round(first["first_step"] - at, 2),
        "redone_steps": max(0, old_last - (new_first - 1)), "checkpoint_every": every,
    }


def scenario(out: Path, every: int, rdzv_conf: str) -> list[dict]:
    run = Run(out, every, rdzv_conf)
    results = []
    try:
        run.start("a")
        run.start("b")
        run.wait("2 workers", lambda: run.step()[1] == 2 and run.step()[0] >= every + 2)
        # kill halfway through an interval: the expected loss of a crash is half an interval
        run.wait("mid-interval", lambda: run.step()[0] % every == every // 2)
        at, group = time.time(), run.step()[2]
        run.kill("a")  # the first agent: rank 0, which hosts the store in torchrun's default set-up
        results.append(measure(run, "kill rank 0", at, group, every))
        run.wait("a few steps", lambda: run.step()[0] % every == every // 2)
        at, group = time.time(), run.step()[2]
        run.start("c")
        results.append(measure(run, "join", at, group, every))
        run.wait("a few steps", lambda: run.step()[0] % every == every // 2)
        at, group = time.time(), run.step()[2]
        run.stop("c")
        results.append(measure(run, "stop", at, group, every))
    finally:
        run.close()
    return results


def worker0_endpoint(out: Path, every: int) -> dict:
    """torchrun's default: the first agent serves the store. Kill it: does the survivor re-form or end?"""
    run = Run(out, every, "last_call_timeout=5,keep_alive_interval=2,keep_alive_max_attempt=3", store=False)
    try:
        run.start("a")
        deadline = time.monotonic() + 120
        while True:  # a binds the endpoint's port first: it hosts the store
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", run.port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("agent a never served the rendezvous store")
            time.sleep(0.1)
        run.start("b")
        run.wait("2 workers", lambda: run.step()[1] == 2 and run.step()[0] >= every + every // 2)
        at, group = time.time(), run.step()[2]
        run.kill("a")
        survivor = run.agents["b"]
        try:
            code = survivor.wait(timeout=300)
        except subprocess.TimeoutExpired:
            code = None
        ended_s = round(time.time() - at, 2)
        return {"change": "kill the store's host (agent 0)", "survivor_exit_code": code,
                "survivor_ended_after_s": ended_s, "new_world_formed": run.step()[2] > group,
                "note": "every agent lost the rendezvous: on a cluster all worker pods fail and are replaced"}
    finally:
        run.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--every", type=int, default=20, help="checkpoint interval in optimizer steps")
    parser.add_argument("--worker0", action="store_true", help="also measure torchrun's default store host")
    parser.add_argument("--rdzv-conf", action="append", default=None,
                        help=f"torchrun --rdzv-conf to measure (repeatable; default: {DEFAULT_CONF!r})")
    args = parser.parse_args()
    confs = args.rdzv_conf or [DEFAULT_CONF]
    base = args.dir or Path(tempfile.mkdtemp(prefix="llmtj-elastic-bench-"))
    report = {"machine": f"{os.cpu_count()} CPUs", "model": "gpt-debug", "global_batch": 12, "runs": []}
    for i, conf in enumerate(confs):
        report["runs"].append({"rdzv_conf": conf, "changes": scenario(base / f"run{i}", args.every, conf)})
    if args.worker0:
        report["worker0_endpoint"] = worker0_endpoint(base / "worker0", args.every)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
