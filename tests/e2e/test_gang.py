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

    # Scheduled False comes first, maybe as "cannot place any" while the placed pod's binding is still in flight (the
    # scheduler marks the second pod unschedulable before the first one's binding lands); then the release.
    assert poll(lambda: ((get_job(operator, namespace, "gang") or {}).get("status", {}).get("gangRetry") or {}).get(
        "attempts", 0) >= 1, timeout=60), _state(operator, namespace)
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


# scheduler-plugins' PodGroup CRD, cut to the fields the operator writes: its Go module is not served here, so its
# own manifest cannot be fetched. Enough for the API server to serve (and validate) the kind the operator creates.
POD_GROUP_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "podgroups.scheduling.x-k8s.io"},
    "spec": {"group": "scheduling.x-k8s.io", "scope": "Namespaced",
             "names": {"kind": "PodGroup", "listKind": "PodGroupList", "plural": "podgroups", "singular": "podgroup",
                       "shortNames": ["pg"]},
             "versions": [{"name": "v1alpha1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "properties": {
                                   "minMember": {"type": "integer", "format": "int32"},
                                   "minResources": {"type": "object", "additionalProperties": {
                                       "anyOf": [{"type": "integer"}, {"type": "string"}],
                                       "x-kubernetes-int-or-string": True}},
                                   "scheduleTimeoutSeconds": {"type": "integer", "format": "int32"}}},
                               "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]}}


def test_a_job_naming_a_gang_scheduler_gets_a_pod_group_when_its_crd_is_served(operator, namespace):
    path = f"/apis/scheduling.x-k8s.io/v1alpha1/namespaces/{namespace}/podgroups/grouped"
    operator.kubectl("apply", "-f", "-", input=json.dumps(POD_GROUP_CRD), check=True)
    try:
        operator.kubectl("wait", "--for=condition=Established", "crd/podgroups.scheduling.x-k8s.io", "--timeout=30s",
                         check=True)
        job = example("grouped", replicas=3, elastic={"minReplicas": 2, "maxReplicas": 3}, rendezvousPort=29426,
                      schedulerName="scheduler-plugins-scheduler", resources={"limits": {"nvidia.com/gpu": 1}})
        job["spec"]["config"]["training"].update(batch_size=2, global_batch_size=12)  # 2 and 3 divide it
        apply(operator, namespace, job)
        assert poll(lambda: operator.get(path) is not None and len(workers(operator, namespace)) == 3, timeout=60), \
            _state(operator, namespace)
        group = operator.get(path)
        assert group["spec"] == {"minMember": 2, "minResources": {"nvidia.com/gpu": "2"}}, group["spec"]
        owner = group["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("LLMTrainingJob", "grouped", True)
        for pod in workers(operator, namespace):
            assert pod["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] == "grouped"
            assert pod["spec"]["schedulerName"] == "scheduler-plugins-scheduler"
            assert not pod["spec"].get("nodeName")  # that scheduler (none runs here) places them, not the default one

        operator.kubectl("patch", "llmtj/grouped", "-n", namespace, "--type=merge",
                         "-p", json.dumps({"spec": {"elastic": {"minReplicas": 3}}}), check=True)
        assert poll(lambda: (operator.get(path) or {}).get("spec", {}).get("minMember") == 3, timeout=30), \
            operator.get(path)
        assert operator.get(path)["spec"]["minResources"] == {"nvidia.com/gpu": "3"}
        assert get_job(operator, namespace, "grouped")["status"]["phase"] == "Pending"
        operator.kubectl("delete", "llmtj/grouped", "-n", namespace, "--wait=true", check=True)
        assert poll(lambda: operator.get(path) is None, timeout=60)  # the garbage collector follows the owner
    finally:
        operator.kubectl("delete", "crd/podgroups.scheduling.x-k8s.io", "--ignore-not-found", "--wait=true",
                         check=True)
