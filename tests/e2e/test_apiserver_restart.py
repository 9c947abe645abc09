"""The API server restarted while a job trains: the operator's watches reconnect, the workers never notice (they
talk to each other and to the rendezvous store, not to the API server), and status keeps up afterwards."""

from __future__ import annotations

import pytest

from .jobs import apply, events, get_job, pod_logs, poll, wait_phase, workers
from .test_worker_faults import checkpoints, long_job

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_training_is_unaffected_by_an_api_server_restart(operator, namespace):
    job = long_job("apirestart", 29421, 200)
    apply(operator, namespace, job)
    assert poll(lambda: len(checkpoints(operator, namespace, "apirestart")) >= 1, timeout=240), \
        pod_logs(operator, namespace)
    uids = {p["metadata"]["uid"] for p in workers(operator, namespace)}
    operator.restart_apiserver(downtime=5)
    # the operator is back at work: a change made after the restart is acted on (a resize to the lower bound)
    operator.kubectl("scale", "llmtj/apirestart", "-n", namespace, "--replicas=1", check=True)
    assert poll(lambda: (get_job(operator, namespace, "apirestart") or {}).get("status", {}).get("desiredReplicas")
                == 1, timeout=60), get_job(operator, namespace, "apirestart")["status"]
    status = wait_phase(operator, namespace, "apirestart", ("Succeeded", "Failed"), timeout=420)["status"]
    assert status["phase"] == "Succeeded" and status["step"] == 200, f"{status}\n{pod_logs(operator, namespace)}"
    assert status["restartCount"] == 0 and "WorkerFailed" not in [e["reason"] for e in events(operator, namespace)]
    assert {p["metadata"]["uid"] for p in workers(operator, namespace)} <= uids  # no worker was replaced
