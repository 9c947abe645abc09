"""Gang start on the test bed (2 nodes x 2 GPUs): a job whose minReplicas cannot all be placed holds no GPU, says
why in the scheduler's own words, and starts by itself once the capacity is there. Its pods carry Kueue's labels."""

from __future__ import annotations

import json

import pytest

from .jobs import apply, events, example, get_job, pod_logs, poll, wait_phase, workers

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _scheduled(job: dict | None) -> dict:
    return next((c for c in ((job or {}).get("status") or {}).get("conditions") or [] if c["type"] == "Scheduled"), {})


def _holding(cluster, namespace: str) -> list[str]:
    """Worker pods bound to a node and not on their way out: the ones that hold GPUs."""
    return [p["metadata"]["name"] for p in workers(cluster, namespace)
            if p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp")
            and p["status"].get("phase") not in ("Succeeded", "Failed")]


def _state(cluster, namespace: str) -> str:
    """The job's status and where each pod stands, for failure messages."""
    pods = [(p["metadata"]["name"], p["spec"].get("nodeName"), p["status"].get("phase"),
             [c.get("message") for c in p["status"].get("conditions") or [] if c["type"] == "PodScheduled"])
            for p in (cluster.get(f"/api/v1/namespaces/{namespace}/pods") or {}).get("items", [])]
    return f"{(get_job(cluster, namespace, 'gang') or {}).get('status')}\n{pods}\n{pod_logs(cluster, namespace)}"


def test_a_job_that_cannot_place_min_replicas_holds_no_gpu_and_starts_when_capacity_frees(operator, namespace):
    blocker = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "blocker", "namespace": namespace},
               "spec": {"nodeName": operator.nodes[0], "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "main", "image": "python:3",
                                        "command": ["python3", "-c", "import time; time.sleep(900)"],
                                        "resources": {"limits": {"nvidia.com/gpu": 2}}}]}}
    operator.kubectl("apply", "-f", "-", input=json.dumps(blocker), check=True)
    job = example("gang", replicas=2, elastic={"minReplicas": 2, "maxReplicas": 2}, nprocPerNode=1,
                  rendezvousPort=29418, resources={"limits": {"nvidia.com/gpu": 2}})  # only one fits beside the blocker
    job["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "research"}
    apply(operator, namespace, job)

    assert poll(lambda: _scheduled(get_job(operator, namespace, "gang")).get("status") == "False", timeout=60), \
        _state(operator, namespace)
    status = get_job(operator, namespace, "gang")["status"]
    message = _scheduled(get_job(operator, namespace, "gang"))["message"]
    assert status["phase"] == "Pending" and "Insufficient nvidia.com/gpu" in message, status  # the scheduler's words
    assert "cannot place the 2 worker pods the job needs at least" in message and status["gangRetry"]["attempts"] >= 1
    assert "PodsReleased" in [e["reason"] for e in events(operator, namespace)]
    # released: the one pod that was placed gives its GPUs back, and none is placed while the gang cannot be
    assert poll(lambda: _holding(operator, namespace) == [], timeout=60), workers(operator, namespace)
    for p in workers(operator, namespace):  # Kueue's plain pod group, from the job's label
        assert p["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "research"
        assert p["metadata"]["labels"]["kueue.x-k8s.io/pod-group-name"] == "gang"
        assert p["metadata"]["annotations"]["kueue.x-k8s.io/pod-group-total-count"] == "2"

    operator.kubectl("delete", "pod", "blocker", "-n", namespace, "--wait=false", check=True)
    status = wait_phase(operator, namespace, "gang", ("Succeeded", "Failed"), timeout=300)["status"]
    assert status["phase"] == "Succeeded" and status["restartCount"] == 0, f"{status}\n{pod_logs(operator, namespace)}"
    assert _scheduled(get_job(operator, namespace, "gang"))["status"] == "True" and not status.get("gangRetry")
