"""``kubectl scale`` on a running elastic job: 2 -> 3 -> 1 workers, training continues from the checkpoints the
leaving workers save, nothing counts as a restart; sizes outside [minReplicas, maxReplicas] are refused."""

from __future__ import annotations

import pytest

from .jobs import apply, events, example, get_job, pod_logs, poll, wait_phase, workers

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
STEPS = 600


def _scaling(job: dict) -> dict:
    return next((c for c in (job.get("status") or {}).get("conditions") or [] if c["type"] == "Scaling"), {})


def _settled(cluster, namespace: str, size: int) -> bool:
    job = get_job(cluster, namespace, "resized") or {}
    status = job.get("status") or {}
    live = [p for p in workers(cluster, namespace) if not p["metadata"].get("deletionTimestamp")]
    return (len(live) == size and status.get("readyReplicas") == size and status.get("worldSize") == size
            and _scaling(job).get("status") == "False")


def test_kubectl_scale_resizes_a_running_job_without_restarts(operator, namespace):
    job = example("resized", replicas=2, elastic={"minReplicas": 1, "maxReplicas": 3}, rendezvousPort=29417,
                  env=[{"name": "DLT_FAULT_STEP_SLEEP_S", "value": "0.05"}])  # a slower model: resizes land mid-run
    job["spec"]["config"]["training"].update(max_steps=STEPS, batch_size=2, global_batch_size=12)  # 1, 2, 3 divide
    job["spec"]["config"]["checkpoint"] = {"every_n_steps": 20}
    apply(operator, namespace, job)
    assert poll(lambda: (get_job(operator, namespace, "resized") or {}).get("status", {}).get("readyReplicas") == 2,
                timeout=240), pod_logs(operator, namespace)

    refused = operator.kubectl("scale", "llmtj/resized", "-n", namespace, "--replicas=4")
    assert refused.returncode != 0 and "replicas must be at most elastic.maxReplicas" in refused.stderr

    operator.kubectl("scale", "llmtj/resized", "-n", namespace, "--replicas=3", check=True)
    assert poll(lambda: _scaling(get_job(operator, namespace, "resized")).get("status") == "True", timeout=30)
    assert poll(lambda: _settled(operator, namespace, 3), timeout=240), \
        f"{get_job(operator, namespace, 'resized')['status']}\n{pod_logs(operator, namespace)}"
    assert get_job(operator, namespace, "resized")["status"]["phase"] == "Running"

    operator.kubectl("scale", "llmtj/resized", "-n", namespace, "--replicas=1", check=True)
    assert poll(lambda: _settled(operator, namespace, 1), timeout=240), \
        f"{get_job(operator, namespace, 'resized')['status']}\n{pod_logs(operator, namespace)}"
    assert poll(lambda: [p["metadata"]["name"] for p in workers(operator, namespace)] == ["resized-worker-0"],
                timeout=60)

    status = wait_phase(operator, namespace, "resized", ("Succeeded", "Failed"), timeout=600)["status"]
    assert status["phase"] == "Succeeded" and status["restartCount"] == 0, f"{status}\n{pod_logs(operator, namespace)}"
    assert status["step"] == STEPS and status["desiredReplicas"] == 1
    reasons = [e["reason"] for e in events(operator, namespace)]
    assert "ScalingUp" in reasons and "ScalingDown" in reasons and "WorkerFailed" not in reasons, reasons
    logs = pod_logs(operator, namespace, tail=10**7)
    for world in (2, 3, 1):  # the trainer re-formed at each size, keeping the global batch
        assert f"batch 2 x {world} devices x {12 // (2 * world)} accumulation" in logs, world
