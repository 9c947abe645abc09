"""Two operator replicas (manifests/03-operator.yaml), exactly one acting through kopf's peering: the acting one
SIGKILLed as a job is scaled -> the standby takes over within seconds and carries the change out, with no duplicate
pod and no restart of the job."""

from __future__ import annotations

import os
import signal
import time

import pytest

from .jobs import acting, apply, example, get_job, operator_pods, peers, pod_logs, poll, wait_phase, workers

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
def test_the_standby_takes_over_a_scale_when_the_acting_replica_is_killed(operator, namespace):
    assert poll(lambda: len(operator_pods(operator)) == 2 and set(peers(operator)) == set(operator_pods(operator)),
                timeout=120), (operator_pods(operator).keys(), peers(operator))
    job = example("ha", replicas=2, elastic={"minReplicas": 1, "maxReplicas": 3}, rendezvousPort=29420,
                  env=[{"name": "DLT_FAULT_STEP_SLEEP_S", "value": "0.05"}])
    job["spec"]["config"]["training"].update(max_steps=120, batch_size=2, global_batch_size=12)  # ~40 s at 3
    apply(operator, namespace, job)
    assert poll(lambda: (get_job(operator, namespace, "ha") or {}).get("status", {}).get("readyReplicas") == 2,
                timeout=240), pod_logs(operator, namespace)

    leader = acting(operator)
    standby = next(n for n in operator_pods(operator) if n != leader)
    pid = int(operator_pods(operator)[leader]["status"]["containerStatuses"][0]["containerID"].removeprefix("local://"))
    os.killpg(pid, signal.SIGKILL)  # no goodbye: its peering record stays until it expires
    killed = time.monotonic()
    operator.kubectl("scale", "llmtj/ha", "-n", namespace, "--replicas=3", check=True)
    assert poll(lambda: any(p["metadata"]["name"] == "ha-worker-2" for p in workers(operator, namespace)),
                timeout=60), f"{peers(operator)}\n{get_job(operator, namespace, 'ha')['status']}"
    takeover = time.monotonic() - killed
    assert takeover < 30, takeover  # the dead record's lifetime (10 s), a re-list and one reconcile
    assert acting(operator) == standby
    assert poll(lambda: (get_job(operator, namespace, "ha") or {}).get("status", {}).get("readyReplicas") == 3,
                timeout=180), get_job(operator, namespace, "ha")["status"]
    names = sorted(p["metadata"]["name"] for p in workers(operator, namespace))
    assert names == ["ha-worker-0", "ha-worker-1", "ha-worker-2"], names  # one pod per index, none orphaned

    status = wait_phase(operator, namespace, "ha", ("Succeeded", "Failed"), timeout=600)["status"]
    assert status["phase"] == "Succeeded" and status["restartCount"] == 0, f"{status}\n{pod_logs(operator, namespace)}"
    # the killed replica came back (kubelet restarts it) and waits as the standby
    assert poll(lambda: len(peers(operator)) == 2 and acting(operator) == standby, timeout=120), peers(operator)
