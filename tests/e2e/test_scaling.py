"""``kubectl scale`` on a running elastic job: 2 -> 3 -> 1 workers, training continues from the checkpoints the
leaving workers save, nothing counts as a restart; sizes outside [minReplicas, maxReplicas] are refused."""

from __future__ import annotations

import pytest

from ..metrics_doc import check
from .jobs import (
    acting,
    apply,
    claim_dir,
    events,
    example,
    get_job,
    operator_pods,
    pod_logs,
    poll,
    scrape,
    wait_phase,
    workers,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
STEPS = 600


def _scaling(job: dict) -> dict:
    return next((c for c in (job.get("status") or {}).get("conditions") or [] if c["type"] == "Scaling"), {})


def _header(world: int) -> str:
    """The trainer's start-up line at a world size, global batch 12 (micro-batch 2)."""
    return f"batch 2 x {world} devices x {12 // (2 * world)} accumulation"


def _newest_step(cluster, namespace: str) -> int:
    """The newest periodic checkpoint's step on the job's claim (0 before the first)."""
    ckpts = claim_dir(cluster, namespace, "resized-checkpoints") / "resized" / "checkpoints"
    return max((int(p.name[5:13]) for p in ckpts.glob("step-*.ckpt")), default=0)


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

    # each worker pod serves its rank's metrics on its own address (docs/metrics.md), labelled with job and pod
    def steps_served() -> dict[str, float]:
        out = {}
        for pod in workers(operator, namespace):
            for labels, value in scrape(pod).get("llmtj_step", []):
                assert (labels["job"], labels["namespace"]) == ("resized", namespace), labels
                out[labels["pod"]] = value
        return out

    assert poll(lambda: len(steps_served()) == 2 and min(steps_served().values()) > 0, timeout=120), steps_served()
    # the operator copies progress from those endpoints into status (every 30 s), and kubectl get shows it
    assert poll(lambda: (get_job(operator, namespace, "resized")["status"].get("tokensPerSecond") or 0) > 0
                and get_job(operator, namespace, "resized")["status"].get("loss"), timeout=120), \
        get_job(operator, namespace, "resized")["status"]
    table = operator.kubectl("get", "llmtj/resized", "-n", namespace, check=True).stdout.splitlines()
    assert table[0].split()[:6] == ["NAME", "PHASE", "WORKERS", "STEP", "LOSS", "TOKENS/S"], table

    refused = operator.kubectl("scale", "llmtj/resized", "-n", namespace, "--replicas=4")
    assert refused.returncode != 0 and "replicas must be at most elastic.maxReplicas" in refused.stderr

    operator.kubectl("scale", "llmtj/resized", "-n", namespace, "--replicas=3", check=True)
    # Scaling is True until the new pod runs: seconds here, so its Event is the evidence when a poll misses that
    assert poll(lambda: _scaling(get_job(operator, namespace, "resized")).get("status") == "True"
                or "ScalingUp" in [e["reason"] for e in events(operator, namespace)], timeout=30)
    assert poll(lambda: _settled(operator, namespace, 3), timeout=240), \
        f"{get_job(operator, namespace, 'resized')['status']}\n{pod_logs(operator, namespace)}"
    assert get_job(operator, namespace, "resized")["status"]["phase"] == "Running"
    # the pods run; the trainer re-forms at 3 once the new agent joins (the others save on SIGTERM first) and trains
    assert poll(lambda: _header(3) in pod_logs(operator, namespace, tail=10**7), timeout=180), \
        pod_logs(operator, namespace)
    formed_at = _newest_step(operator, namespace)
    assert poll(lambda: _newest_step(operator, namespace) > formed_at, timeout=120)  # a checkpoint made at 3

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
    assert _header(1) in pod_logs(operator, namespace, tail=10**7)  # keeping the global batch at each size

    # the acting operator replica counted it all (docs/metrics.md, "Operator")
    served = scrape(operator_pods(operator)[acting(operator)], port=9451)
    check("Operator", served, "llmtj_operator_")
    count = {(s[0].get("namespace"), s[0].get("direction") or s[0].get("role") or s[0].get("phase")): s[1]
             for name in ("llmtj_operator_scale_events_total", "llmtj_operator_pod_creations_total",
                          "llmtj_operator_jobs") for s in served[name]}
    assert count[(namespace, "up")] >= 1 and count[(namespace, "down")] >= 1, count
    assert count[(namespace, "worker")] >= 3 and count[(namespace, "Succeeded")] >= 1, count
    assert served["llmtj_operator_reconcile_duration_seconds_count"][0][1] > 0


def test_a_horizontal_pod_autoscaler_resizes_a_job_through_its_scale_subresource(operator, namespace):
    """The controller manager's real HPA controller (no metrics API on the test bed: it scales by its minReplicas
    bound, which it applies before reading any metric) reads the job's /scale and writes spec.replicas; the operator
    carries the resize out."""
    job = example("hpa", replicas=1, elastic={"minReplicas": 1, "maxReplicas": 3},
                  nodeSelector={"llmtj.dev/no-such-node": "x"})  # the pods stay Pending: only the resize matters
    job["spec"]["config"]["training"].update(batch_size=2, global_batch_size=12)  # whole at 1, 2 and 3 workers
    apply(operator, namespace, job)
    assert poll(lambda: [p["metadata"]["name"] for p in workers(operator, namespace)] == ["hpa-worker-0"],
                timeout=60), ((get_job(operator, namespace, "hpa") or {}).get("status"), events(operator, namespace))
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "hpa"},
           "spec": {"scaleTargetRef": {"apiVersion": "llmtj.dev/v1alpha1", "kind": "LLMTrainingJob", "name": "hpa"},
                    "minReplicas": 2, "maxReplicas": 3,
                    "metrics": [{"type": "Resource", "resource": {
                        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}}
    status, body = operator.request("POST", f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers",
                                    hpa)
    assert status == 201, body
    assert poll(lambda: (get_job(operator, namespace, "hpa") or {}).get("spec", {}).get("replicas") == 2,
                timeout=90), operator.get(f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/hpa")
    assert poll(lambda: [p["metadata"]["name"] for p in workers(operator, namespace)] == ["hpa-worker-0",
                                                                                         "hpa-worker-1"], timeout=60)
    assert poll(lambda: (get_job(operator, namespace, "hpa") or {}).get("status", {}).get("desiredReplicas") == 2,
                timeout=30)
    rescaled = [e for e in events(operator, namespace) if e.get("reason") == "SuccessfulRescale"]
    assert rescaled and "New size: 2" in rescaled[0]["message"], rescaled
