"""Job-level policies on the test bed: suspend (checkpoint, pods gone) and resume, ttlSecondsAfterFinished,
backoffLimit and activeDeadlineSeconds."""

from __future__ import annotations

import json

import pytest

from .jobs import apply, claim_dir, example, get_job, pod_logs, pods, poll, wait_gone, wait_phase

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def patch_spec(cluster, namespace: str, name: str, spec: dict) -> None:
    cluster.kubectl("patch", "llmtj", name, "-n", namespace, "--type=merge", "-p", json.dumps({"spec": spec}),
                    check=True)


def test_suspend_saves_and_removes_pods_and_resume_continues(operator, namespace):
    job = example("pause", rendezvousPort=29414)
    job["spec"]["config"]["training"]["max_steps"] = 400
    apply(operator, namespace, job)
    run = lambda: claim_dir(operator, namespace, "pause-checkpoints") / "pause"  # noqa: E731
    wait_phase(operator, namespace, "pause", ("Running",), timeout=180)
    assert poll(lambda: any((run() / "checkpoints").glob("step-*.ckpt")), timeout=240), pod_logs(operator, namespace)
    patch_spec(operator, namespace, "pause", {"suspend": True})
    status = wait_phase(operator, namespace, "pause", ("Suspended",), timeout=60)["status"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Suspended"] == "True"
    assert poll(lambda: pods(operator, namespace) == [], timeout=150)
    stopped = json.loads((run() / "summary.json").read_text())
    assert stopped["stop_reason"] == "SIGTERM" and 0 < stopped["steps"] < 400
    assert get_job(operator, namespace, "pause")["status"]["phase"] == "Suspended"

    patch_spec(operator, namespace, "pause", {"suspend": False})
    done = wait_phase(operator, namespace, "pause", ("Succeeded", "Failed"), timeout=420)["status"]
    assert done["phase"] == "Succeeded" and done["step"] == 400, f"{done}\n{pod_logs(operator, namespace)}"
    assert done["restartCount"] == 0  # stopping on purpose is not a failure
    final = json.loads((run() / "summary.json").read_text())
    assert final["resumed"] is True and final["steps"] == 400


def test_ttl_deletes_the_finished_job_and_keeps_the_claim(operator, namespace):
    job = example("short", rendezvousPort=29415, ttlSecondsAfterFinished=1)
    job["spec"]["config"]["training"]["max_steps"] = 6
    apply(operator, namespace, job)
    wait_gone(operator, f"/apis/llmtj.dev/v1alpha1/namespaces/{namespace}/llmtrainingjobs/short", timeout=300)
    for i in (0, 1):
        wait_gone(operator, f"/api/v1/namespaces/{namespace}/pods/short-worker-{i}")
    assert operator.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/short-checkpoints") is not None
    run = claim_dir(operator, namespace, "short-checkpoints") / "short"
    assert json.loads((run / "summary.json").read_text())["steps"] == 6


def test_active_deadline_fails_the_job_and_stops_its_pods(operator, namespace):
    job = example("deadline", rendezvousPort=29424, activeDeadlineSeconds=8)
    job["spec"]["config"]["training"]["max_steps"] = 100000
    apply(operator, namespace, job)
    status = wait_phase(operator, namespace, "deadline", ("Succeeded", "Failed"), timeout=120)["status"]
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["reason"] == "DeadlineExceeded" and failed["message"] == "ran longer than activeDeadlineSeconds=8"
    assert poll(lambda: all(p["metadata"].get("deletionTimestamp") or p["status"].get("phase") in
                            ("Succeeded", "Failed") for p in pods(operator, namespace)), timeout=60)
