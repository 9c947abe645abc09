"""Platform latency and footprint on the test bed; prints one JSON object.

    .venv/bin/python bench/platform_latency.py [--dir /tmp/llmtj-bench] [--jobs 20] [--rss-jobs 50]

- ``create_to_pods_s``: job created -> all its worker pods exist (2 pods each; the pods cannot be scheduled, by a
  node selector, so that only the operator's side is timed), p50/p95 over ``--jobs`` jobs, created one at a time.
- ``create_to_first_step_s``: the README's example job (2 workers, CPU) from creation to the first training step
  in a worker's log, split into operator (pods exist), scheduling and process start (pods Running), the worker's
  start-up until the trainer's first line (imports, config check, torchrun, rendezvous, data), and the first step.
- ``operator_rss_mb``: resident memory of the operator process with ``--rss-jobs`` jobs present (each with one
  pending pod), after it has reconciled them all.

The operator runs as a local process with its own ServiceAccount's token (the Deployment is scaled to 0), so its
memory can be read from /proc.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.cluster.cluster import start  # noqa: E402
from tests.e2e.jobs import example, pods, sa_kubeconfig, start_local_operator  # noqa: E402

NS = "bench"
GROUP_PATH = f"/apis/llmtj.dev/v1alpha1/namespaces/{NS}/llmtrainingjobs"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(round(q * (len(s) - 1))))], 3)


def create(cluster, job: dict) -> None:
    status, body = cluster.request("POST", GROUP_PATH, job)
    if status != 201:
        raise SystemExit(f"error: creating {job['metadata']['name']}: HTTP {status}: {body}")


def wait(pred, timeout: float, interval: float = 0.01) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise SystemExit("error: benchmark step timed out")
        time.sleep(interval)
    return time.monotonic()


def pending_job(name: str, replicas: int) -> dict:
    return example(name, replicas=replicas, elastic={"minReplicas": 1, "maxReplicas": replicas},
                   nodeSelector={"llmtj.dev/bench": "nowhere"})


def bench_create(cluster, n: int) -> list[float]:
    out = []
    for i in range(n):
        name = f"lat-{i}"
        t0 = time.monotonic()
        create(cluster, pending_job(name, 2))
        t1 = wait(lambda: len(pods(cluster, NS, f"llmtj.dev/job-name%3D{name}")) == 2, timeout=60)
        out.append(t1 - t0)
    return out


def worker_logs(cluster, name: str) -> str:
    return "".join(p.read_text(errors="replace") for p in Path(cluster.dir, "nodes").glob(
        f"*/pods/{NS}_{name}-worker-*/trainer.log"))


def bench_first_step(cluster) -> dict:
    job = example("first-step", rendezvousPort=29450)
    job["spec"]["config"]["logging"].update(progress_bar=True, interval=1)
    t0 = time.monotonic()
    create(cluster, job)
    sel = "llmtj.dev/job-name%3Dfirst-step"
    t_pods = wait(lambda: len(pods(cluster, NS, sel)) == 2, 60)
    t_running = wait(lambda: [p["status"].get("phase") for p in pods(cluster, NS, sel)] == ["Running"] * 2, 120)
    t_trainer = wait(lambda: "\nrun " in "\n" + worker_logs(cluster, "first-step"), 300, 0.05)
    t_step = wait(lambda: "step 1/" in worker_logs(cluster, "first-step"), 300, 0.05)
    return {"total": round(t_step - t0, 2), "operator_creates_pods": round(t_pods - t0, 2),
            "scheduling_and_process_start": round(t_running - t_pods, 2),
            "worker_startup_to_trainer_header": round(t_trainer - t_running, 2),
            "first_step": round(t_step - t_trainer, 2)}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_rss(cluster, n: int, pid: int) -> float:
    for i in range(n):
        create(cluster, pending_job(f"rss-{i}", 1))
    wait(lambda: len(pods(cluster, NS, "llmtj.dev/role%3Dworker")) >= n, 300, 0.2)
    time.sleep(15)  # a few resync rounds over every job
    return round(rss_mb(pid), 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "llmtj-bench"))
    p.add_argument("--jobs", type=int, default=20)
    p.add_argument("--rss-jobs", type=int, default=50)
    a = p.parse_args()
    cluster = start(Path(a.dir), nodes=2, gpus_per_node=2)
    cluster.kubectl("apply", "-f", str(ROOT / "manifests"), check=True)
    cluster.kubectl("scale", "deploy/llm-training-operator", "-n", "llmtj-system", "--replicas=0", check=True)
    cluster.kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true", check=True)
    cluster.kubectl("create", "namespace", NS, check=True)
    cluster.wait("ServiceAccount bench/default",
                 lambda: cluster.get(f"/api/v1/namespaces/{NS}/serviceaccounts/default"))
    work = Path(a.dir) / "bench"
    work.mkdir(exist_ok=True)
    op = start_local_operator(sa_kubeconfig(cluster, work / "operator.kubeconfig"), work / "operator.log")
    try:
        time.sleep(3)
        created = bench_create(cluster, a.jobs)
        first = bench_first_step(cluster)
        rss = bench_rss(cluster, a.rss_jobs, op.pid)
    finally:
        os.killpg(op.pid, signal.SIGTERM)
        op.wait(timeout=30)
        cluster.kubectl("delete", "namespace", NS, "--wait=false")
    print(json.dumps({
        "machine": f"{os.cpu_count()} CPUs",
        "create_to_pods_s": {"jobs": a.jobs, "p50": pct(created, 0.5), "p95": pct(created, 0.95),
                             "mean": round(statistics.mean(created), 3)},
        "create_to_first_step_s": first,
        "operator_rss_mb": {"jobs": a.rss_jobs, "rss": rss},
    }))


if __name__ == "__main__":
    main()
