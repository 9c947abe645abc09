"""The operator under load on hollow nodes; prints one JSON object.

    .venv/bin/python bench/platform_load.py [--dir /tmp/llmtj-load] [--nodes 50] [--jobs 25,100] [--workers 4]

A test bed with ``--nodes`` hollow nodes (8 GPUs each; pods go Running there without running anything, as KWOK
does) and the operator as a local process with its ServiceAccount's token and its default resync period. For each
round (a number of jobs, ``--jobs``), one after the other:

- apply: the jobs are created back to back, each with ``--workers`` worker pods of one GPU; ``apply_to_pods_s`` is
  each job's creation -> all its worker pods exist (p50/p99), ``settled_s`` until every worker is Running.
- scale: every job is scaled to half its workers at once; ``scale_s`` is each job's patch -> the surplus pods gone.
- delete: every job is deleted; ``delete_s`` until the last of their pods is gone.

The benchmark follows the pods with one watch (as a controller would), not by polling LISTs, so that its own view
costs the API server it measures next to nothing. Each time is taken when the watch delivers the event that completes
it (the creation of a job's last worker pod, the end of its last surplus pod), not when the benchmark next looks:
it looks only after the last job is created or scaled, seconds after the first. ``requests`` counts the operator's
API requests in the round from the API server's audit log (every request by the operator's ServiceAccount, by verb),
with ``per_job``: no request storms means that stays flat as the number of jobs grows. ``operator_cpu_s`` is the CPU
time the operator process used in the round; ``operator_peak_rss_mb`` its peak resident memory over the whole run
(VmHWM).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.cluster.cluster import start, stop  # noqa: E402
from tests.cluster.components import OPERATOR_USER  # noqa: E402
from tests.e2e.jobs import example, sa_kubeconfig, start_local_operator  # noqa: E402

NS = "load"
JOBS = f"/apis/llmtj.dev/v1alpha1/namespaces/{NS}/llmtrainingjobs"
HOLLOW_TOLERATION = {"key": "llmtj.dev/hollow", "operator": "Exists", "effect": "NoSchedule"}


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(round(q * (len(s) - 1))))], 3) if s else float("nan")


def load_job(name: str, workers: int) -> dict:
    job = example(name, replicas=workers, elastic={"minReplicas": 1, "maxReplicas": workers},
                  resources={"limits": {"nvidia.com/gpu": 1}}, nprocPerNode=1, tolerations=[HOLLOW_TOLERATION])
    job["spec"]["config"]["training"].update(batch_size=1, global_batch_size=12)  # 1..4 workers divide it
    return job


class PodWatch:
    """The jobs' pods as one watch sees them: job -> {pod: (role, phase)}, and when each job's number of worker pods
    changed: job -> [(monotonic time of the event, count)]. The benchmark's own view must not load the API server it
    measures, as polling LISTs of hundreds of pods several times a second would."""

    def __init__(self, cluster) -> None:
        from kubernetes import client

        self.api = client.CoreV1Api(cluster.api_client())
        self.lock = threading.Lock()
        self.pods: dict[str, dict[str, tuple[str, str]]] = {}
        self.counts: dict[str, list[tuple[float, int]]] = {}
        threading.Thread(target=self._follow, daemon=True).start()

    def _set(self, pod, gone: bool = False) -> None:
        labels = pod.metadata.labels or {}
        job = labels.get("llmtj.dev/job-name", "")
        with self.lock:
            mine = self.pods.setdefault(job, {})
            if gone:
                mine.pop(pod.metadata.name, None)
            else:
                mine[pod.metadata.name] = (labels.get("llmtj.dev/role", ""), pod.status.phase or "Pending")
            count = sum(1 for role, _ in mine.values() if role == "worker")
            history = self.counts.setdefault(job, [])
            if not history or history[-1][1] != count:
                history.append((time.monotonic(), count))

    def reached(self, job: str, count: int, since: float) -> float | None:
        """When the job first had ``count`` worker pods at or after ``since`` (None: not yet)."""
        with self.lock:
            history = list(self.counts.get(job, []))
        before = [c for t, c in history if t < since]
        if before and before[-1] == count:
            return since
        return next((t for t, c in history if t >= since and c == count), None)

    def _follow(self) -> None:
        from kubernetes import watch

        selector = "llmtj.dev/job-name"
        while True:
            try:
                listed = self.api.list_namespaced_pod(NS, label_selector=selector)
                with self.lock:
                    self.pods = {}
                for pod in listed.items:
                    self._set(pod)
                for event in watch.Watch().stream(self.api.list_namespaced_pod, NS, label_selector=selector,
                                                  resource_version=listed.metadata.resource_version,
                                                  timeout_seconds=300):
                    self._set(event["object"], gone=event["type"] == "DELETED")
            except Exception:  # a watch that expired or broke: list and watch again
                time.sleep(0.2)

    def workers(self) -> dict[str, dict[str, str]]:
        """job -> {worker pod: phase}"""
        with self.lock:
            out = {job: {n: phase for n, (role, phase) in pods.items() if role == "worker"}
                   for job, pods in self.pods.items()}
        return {job: pods for job, pods in out.items() if pods}

    def any_pods(self) -> bool:
        with self.lock:
            return any(self.pods.values())


def until(what: str, pred, timeout: float, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit(f"error: timed out waiting for {what}")
        time.sleep(interval)


def audit_requests(log: Path, start_at: int) -> tuple[Counter[str], int]:
    """The operator's requests in the audit log from byte ``start_at`` on, by verb, and the new end offset."""
    verbs: Counter[str] = Counter()
    with log.open("rb") as f:
        f.seek(start_at)
        data = f.read()
    for line in data.splitlines():
        event = json.loads(line)
        if event.get("user", {}).get("username") == OPERATOR_USER:
            ref = event.get("objectRef", {})
            sub = f"/{ref['subresource']}" if "subresource" in ref else ""
            verbs[f"{event['verb']} {ref.get('resource', '')}{sub}"] += 1
    return verbs, start_at + len(data)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def run_round(cluster, watch: PodWatch, n: int, workers: int, pid: int, audit: Path, offset: int) -> tuple[dict, int]:
    cpu0 = cpu_seconds(pid)
    names = [f"load-{n}-{i}" for i in range(n)]
    created: dict[str, float] = {}
    for name in names:
        status, body = cluster.request("POST", JOBS, load_job(name, workers))
        if status != 201:
            raise SystemExit(f"error: creating {name}: HTTP {status}: {body}")
        created[name] = time.monotonic()
    t0 = min(created.values())
    all_pods: dict[str, float] = {}

    def pods_created() -> bool:
        for name in names:
            at = all_pods.get(name) or watch.reached(name, workers, created[name])
            if at is not None:
                all_pods[name] = at
        return len(all_pods) == n

    until("every job's worker pods", pods_created, timeout=600)
    until("every worker Running", lambda: sum(
        1 for ps in watch.workers().values() for phase in ps.values() if phase == "Running") == n * workers,
        timeout=600)
    settled = time.monotonic() - t0

    half = max(1, workers // 2)
    patched: dict[str, float] = {}
    for name in names:
        status, body = cluster.request("PATCH", f"{JOBS}/{name}/scale", {"spec": {"replicas": half}},
                                       content_type="application/merge-patch+json")  # as kubectl scale, an HPA
        if status != 200:
            raise SystemExit(f"error: scaling {name}: HTTP {status}: {body}")
        patched[name] = time.monotonic()
    scaled: dict[str, float] = {}

    def shrunk() -> bool:
        for name in names:
            at = scaled.get(name) or watch.reached(name, half, patched[name])
            if at is not None:
                scaled[name] = at
        return len(scaled) == n

    until("every job scaled down", shrunk, timeout=600)

    t_del = time.monotonic()
    cluster.kubectl("delete", "llmtj", "--all", "-n", NS, "--wait=false", check=True)
    until("every job's pods gone", lambda: not watch.any_pods(), timeout=600)
    deleted = time.monotonic() - t_del
    time.sleep(2)  # the audit log's last lines
    verbs, offset = audit_requests(audit, offset)
    total = sum(verbs.values())
    return {
        "jobs": n, "workers_per_job": workers,
        "apply_to_pods_s": {"p50": pct([all_pods[k] - created[k] for k in names], 0.5),
                            "p99": pct([all_pods[k] - created[k] for k in names], 0.99)},
        "created_all_s": round(max(created.values()) - t0, 2),  # the creation loop: first job -> last job
        "settled_s": round(settled, 2),
        "scale_s": {"p50": pct([scaled[k] - patched[k] for k in names], 0.5),
                    "p99": pct([scaled[k] - patched[k] for k in names], 0.99)},
        "delete_s": round(deleted, 2),
        "requests": {"total": total, "per_job": round(total / n, 1), "by_verb": dict(verbs.most_common())},
        "operator_cpu_s": round(cpu_seconds(pid) - cpu0, 1),
    }, offset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "llmtj-load"))
    p.add_argument("--nodes", type=int, default=50)
    p.add_argument("--jobs", default="25,100", help="rounds: numbers of jobs, comma-separated")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--resync-seconds", default="5", help="the operator's LLMTJ_RESYNC_SECONDS (its default: 5)")
    p.add_argument("--keep", action="store_true", help="leave the test bed running (a later run reuses it)")
    a = p.parse_args()
    cluster = start(Path(a.dir), nodes=0, gpus_per_node=8, hollow_nodes=a.nodes)
    cluster.wait(f"{a.nodes} hollow nodes Ready", lambda: sum(
        1 for n in (cluster.get("/api/v1/nodes") or {}).get("items", []) if any(
            c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))) == a.nodes,
        timeout=120)
    cluster.kubectl("apply", "-f", str(ROOT / "manifests"), check=True)
    cluster.kubectl("scale", "deploy/llm-training-operator", "-n", "llmtj-system", "--replicas=0", check=True)
    cluster.kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true", check=True)
    cluster.kubectl("create", "namespace", NS, check=True)
    cluster.wait(f"ServiceAccount {NS}/default",
                 lambda: cluster.get(f"/api/v1/namespaces/{NS}/serviceaccounts/default"))
    work = Path(a.dir) / "load"
    work.mkdir(exist_ok=True)
    audit = Path(a.dir) / "audit.log"
    op = start_local_operator(sa_kubeconfig(cluster, work / "operator.kubeconfig"), work / "operator.log",
                              LLMTJ_RESYNC_SECONDS=a.resync_seconds,  # not the tests' 2 s
                              MALLOC_ARENA_MAX="2")  # as the Deployment sets it
    rounds = []
    watch = PodWatch(cluster)
    try:
        time.sleep(3)
        offset = audit.stat().st_size
        for n in (int(x) for x in a.jobs.split(",")):
            result, offset = run_round(cluster, watch, n, a.workers, op.pid, audit, offset)
            rounds.append(result)
        peak = peak_rss_mb(op.pid)
    finally:
        os.killpg(op.pid, signal.SIGTERM)
        op.wait(timeout=30)
        if not a.keep:
            stop(Path(a.dir))
    print(json.dumps({"machine": f"{os.cpu_count()} CPUs", "hollow_nodes": a.nodes,
                      "resync_seconds": float(a.resync_seconds), "rounds": rounds,
                      "operator_peak_rss_mb": peak}))


if __name__ == "__main__":
    main()
