"""A node lost mid-training (its node agent stopped: no kubelet, its pods' processes gone): the node goes NotReady,
its pods are evicted after the job's short toleration, the operator removes them without waiting for a kubelet that
will never answer, and their replacements run on the other node; the job goes on and finishes."""

from __future__ import annotations

import pytest

from .conftest import OPERATOR_NS
from .jobs import acting, apply, events, get_job, operator_pods, pod_logs, poll, wait_phase, workers
from .test_worker_faults import checkpoints, long_job

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
STEPS = 400
SPREAD = {"spec": {"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
    "weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {
        "matchLabels": {"llmtj.dev/job-name": "nodelost", "llmtj.dev/role": "worker"}}}}]}}}}


def _node_of(cluster, namespace: str, name: str) -> str | None:
    pod = cluster.get(f"/api/v1/namespaces/{namespace}/pods/{name}") or {}
    return (pod.get("spec") or {}).get("nodeName")


def test_a_lost_node_s_workers_are_replaced_on_another_node_and_training_finishes(operator, namespace):
    assert poll(lambda: acting(operator) in operator_pods(operator), timeout=60)
    keep = _node_of(operator, OPERATOR_NS, acting(operator))
    lost = next(n for n in operator.nodes if n != keep)  # the acting operator's node stays (test_operator_ha: failover)
    job = long_job("nodelost", 29419, STEPS)
    job["spec"].update(backoffLimit=6, podTemplate=SPREAD, tolerations=[
        {"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}
        for k in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")])
    apply(operator, namespace, job)
    assert poll(lambda: len(checkpoints(operator, namespace, "nodelost")) >= 1 and
                (get_job(operator, namespace, "nodelost") or {}).get("status", {}).get("readyReplicas") == 2,
                timeout=240), pod_logs(operator, namespace)
    on_lost = [p["metadata"]["name"] for p in workers(operator, namespace) if p["spec"].get("nodeName") == lost]
    assert on_lost, [(p["metadata"]["name"], p["spec"].get("nodeName")) for p in workers(operator, namespace)]
    doomed = {p["metadata"]["uid"] for p in workers(operator, namespace) if p["spec"].get("nodeName") == lost}

    operator.stop_node(lost)
    try:
        def moved() -> bool:
            live = [p for p in workers(operator, namespace) if not p["metadata"].get("deletionTimestamp")]
            return (not doomed & {p["metadata"]["uid"] for p in workers(operator, namespace)}
                    and len(live) == 2 and all(p["spec"].get("nodeName") == keep for p in live)
                    and all(p["status"].get("phase") == "Running" for p in live))
        assert poll(moved, timeout=180, interval=1), \
            f"{get_job(operator, namespace, 'nodelost')['status']}\n{pod_logs(operator, namespace)}"
        lost_events = [e["message"] for e in events(operator, namespace) if e["reason"] == "NodeLost"]
        assert any(f"{on_lost[0]} was on node {lost}, which is not Ready" in m for m in lost_events), lost_events
        status = wait_phase(operator, namespace, "nodelost", ("Succeeded", "Failed"), timeout=420)["status"]
    finally:
        operator.start_node(lost)
    assert status["phase"] == "Succeeded" and status["step"] == STEPS, f"{status}\n{pod_logs(operator, namespace)}"
    assert 1 <= status["restartCount"] <= 6, status  # the lost workers count: a fault, not a stop on purpose
