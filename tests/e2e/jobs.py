"""Small helpers for end-to-end tests: read jobs, wait for phases, find a claim's folder on the test bed."""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from .conftest import EXAMPLE, OPERATOR_NS, operator_pod


def example(name: str = "tiny", **spec: Any) -> dict[str, Any]:
    """The README's example job (manifests/examples/job.yaml), renamed, with spec fields replaced."""
    job = yaml.safe_load(EXAMPLE.read_text())
    job["metadata"]["name"] = name
    out = copy.deepcopy(job)
    out["spec"].update(spec)
    return out


def apply(cluster, namespace: str, job: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(job), check=True)


def get_job(cluster, namespace: str, name: str) -> dict[str, Any] | None:
    return cluster.get(f"/apis/llmtj.dev/v1alpha1/namespaces/{namespace}/llmtrainingjobs/{name}")


def wait_phase(cluster, namespace: str, name: str, phases: tuple[str, ...], timeout: float = 300) -> dict[str, Any]:
    seen: list[str] = []

    def reached() -> bool:
        job = get_job(cluster, namespace, name) or {}
        phase = (job.get("status") or {}).get("phase")
        if phase and (not seen or seen[-1] != phase):
            seen.append(phase)
        return phase in phases

    try:
        cluster.wait(f"job {namespace}/{name} in {phases}", reached, timeout=timeout)
    except TimeoutError as e:
        status = (get_job(cluster, namespace, name) or {}).get("status")
        raise AssertionError(f"{e}; phases seen: {seen}; status: {status}\n{pod_logs(cluster, namespace)}") from None
    return get_job(cluster, namespace, name)


def pods(cluster, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    q = f"?labelSelector={selector}" if selector else ""
    return (cluster.get(f"/api/v1/namespaces/{namespace}/pods{q}") or {}).get("items", [])


def workers(cluster, namespace: str) -> list[dict[str, Any]]:
    """The worker pods (not the rendezvous store's)."""
    return pods(cluster, namespace, "llmtj.dev/role%3Dworker")


def claim_dir(cluster, namespace: str, claim: str) -> Path:
    pvc = cluster.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
    pv = cluster.get(f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")
    return Path(pv["spec"]["hostPath"]["path"])


def pod_logs(cluster, namespace: str, tail: int = 3000) -> str:
    """Every container log of the namespace's pods on the test bed's nodes (for failure messages)."""
    out = []
    for log in sorted(Path(cluster.dir, "nodes").glob(f"*/pods/{namespace}_*/*.log")):
        out.append(f"--- {log.parent.name}/{log.name}\n{log.read_text(errors='replace')[-tail:]}")
    return "\n".join(out)


def events(cluster, namespace: str) -> list[dict[str, Any]]:
    return (cluster.get(f"/api/v1/namespaces/{namespace}/events") or {}).get("items", [])


def wait_gone(cluster, path: str, timeout: float = 60) -> None:
    cluster.wait(f"{path} deleted", lambda: cluster.get(path) is None, timeout=timeout)


def poll(predicate, timeout: float = 60, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def sa_kubeconfig(cluster, path: Path) -> Path:
    """A kubeconfig with the operator ServiceAccount's token: the local operator gets exactly the RBAC it ships with."""
    token = cluster.kubectl("create", "token", "llm-training-operator", "-n", OPERATOR_NS, "--duration=1h",
                            check=True).stdout.strip()
    ca = cluster.dir / "pki" / "ca.crt"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "op",
        "clusters": [{"name": "tb", "cluster": {"server": cluster.server, "certificate-authority": str(ca)}}],
        "users": [{"name": "op", "user": {"token": token}}],
        "contexts": [{"name": "op", "context": {"cluster": "tb", "user": "op"}}],
    }))
    return path


def start_local_operator(kubeconfig: Path, log: Path, scope: tuple[str, ...] = ("--all-namespaces",),
                         **env: str) -> subprocess.Popen:
    exe = shutil.which("llmtj-operator", path=os.path.dirname(sys.executable)) or "llmtj-operator"
    full = {**os.environ, "KUBECONFIG": str(kubeconfig), "LLMTJ_RESYNC_SECONDS": "2", **env}
    full.pop("KUBERNETES_SERVICE_HOST", None)
    return subprocess.Popen([exe, *scope, "--health", "http://127.0.0.1:0/healthz", "--metrics", "127.0.0.1:0"],
                            env=full, stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True)


PEERING = "/apis/kopf.dev/v1/clusterkopfpeerings/llm-training-operator"


def peers(cluster) -> dict[str, dict]:
    """The replicas' live records in the peering object: pod name -> {priority, lifetime, lastseen}; a record not
    renewed within its lifetime is a dead replica's."""
    status = (cluster.get(PEERING) or {}).get("status") or {}
    now = datetime.now(timezone.utc)
    return {name: rec for name, rec in status.items() if isinstance(rec, dict) and rec.get("lifetime")
            and datetime.fromisoformat(rec["lastseen"]) + timedelta(seconds=rec["lifetime"]) > now}


def acting(cluster) -> str | None:
    """The replica that acts: the live peer of the highest priority (kopf pauses the others)."""
    live = peers(cluster)
    return max(live, key=lambda n: live[n]["priority"]) if live else None


def operator_pods(cluster) -> dict[str, dict]:
    selector = "app.kubernetes.io/name%3Dllm-training-operator"
    return {p["metadata"]["name"]: p for p in pods(cluster, OPERATOR_NS, selector)
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")}


def scrape(pod: dict[str, Any], port: int = 9450) -> dict[str, list]:
    """A pod's metrics endpoint (a worker's podIP:9450, an operator's :9451; docs/metrics.md): sample name ->
    [(labels, value)]; {} while it does not answer yet."""
    import urllib.request

    from ..metrics_doc import parse

    try:
        return parse(urllib.request.urlopen(f"http://{pod['status']['podIP']}:{port}/metrics", timeout=5).read()
                     .decode())
    except (OSError, KeyError):
        return {}


@contextlib.contextmanager
def deployed_operator_paused(cluster) -> Iterator[None]:
    """The Deployment of manifests/ (when applied) scaled to 0 meanwhile, so that another operator may act alone;
    back at 2 replicas, one running, afterwards."""
    deployed = cluster.get(f"/apis/apps/v1/namespaces/{OPERATOR_NS}/deployments/llm-training-operator") is not None
    if deployed:
        cluster.kubectl("scale", "deploy/llm-training-operator", "-n", OPERATOR_NS, "--replicas=0", check=True)
        assert poll(lambda: operator_pod(cluster) is None and not pods(cluster, OPERATOR_NS), timeout=60)
    try:
        yield
    finally:
        if deployed:
            cluster.kubectl("scale", "deploy/llm-training-operator", "-n", OPERATOR_NS, "--replicas=2", check=True)
            assert poll(lambda: operator_pod(cluster) is not None, timeout=120)
