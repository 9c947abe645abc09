"""The operator under stress: killed in the middle of creating a job, and fed objects its schema never allowed."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import yaml

from .conftest import CRD
from .jobs import (
    acting,
    deployed_operator_paused,
    example,
    get_job,
    operator_pods,
    pod_logs,
    pods,
    poll,
    sa_kubeconfig,
    start_local_operator,
    wait_phase,
    workers,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture
def local_operator(operator, tmp_path):
    """The Deployment scaled to 0 so that a local operator process (same ServiceAccount) can be killed at will."""
    with deployed_operator_paused(operator):
        kubeconfig = sa_kubeconfig(operator, tmp_path / "operator.kubeconfig")
        procs: list[subprocess.Popen] = []

        def start(*scope: str, **env: str) -> subprocess.Popen:
            procs.append(start_local_operator(kubeconfig, tmp_path / "operator.log", scope or ("--all-namespaces",),
                                              **env))
            return procs[-1]

        yield start
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def test_operator_killed_mid_creation_makes_no_duplicates(operator, local_operator, namespace, tmp_path):
    first = local_operator(LLMTJ_CRASH_AFTER="pod-create:1")  # dies right after creating worker 0
    # all three must join: worker 0 alone waits in the rendezvous rather than finishing before the next operator is up
    job = example("crashy", replicas=3, elastic={"minReplicas": 3, "maxReplicas": 3}, rendezvousPort=29411)
    job["spec"]["config"]["training"].update(max_steps=4, global_batch_size=24)
    operator.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(job), check=True)
    assert first.wait(timeout=60) == 137, (tmp_path / "operator.log").read_text()[-3000:]
    assert [p["metadata"]["name"] for p in workers(operator, namespace)] == ["crashy-worker-0"]
    status = (get_job(operator, namespace, "crashy") or {}).get("status") or {}
    assert "startTime" not in status  # killed before it wrote any status
    local_operator("--namespace", namespace)  # this time watching a list of namespaces, not all
    assert poll(lambda: len(workers(operator, namespace)) == 3, timeout=60), \
        f"{get_job(operator, namespace, 'crashy').get('status')}\n{(tmp_path / 'operator.log').read_text()[-3000:]}"
    names = sorted(p["metadata"]["name"] for p in workers(operator, namespace))
    uids = {p["metadata"]["uid"] for p in workers(operator, namespace)}
    assert names == ["crashy-worker-0", "crashy-worker-1", "crashy-worker-2"] and len(uids) == 3
    done = wait_phase(operator, namespace, "crashy", ("Succeeded", "Failed"), timeout=300)["status"]
    assert done["phase"] == "Succeeded" and done["restartCount"] == 0, done
    assert sorted(p["metadata"]["name"] for p in workers(operator, namespace)) == names  # still no duplicates


def test_operator_killed_after_a_status_write_and_mid_scale_loses_nothing(operator, local_operator, namespace,
                                                                          tmp_path):
    """Killed right after its first status write, then right after deleting the worker a scale-down removes (before
    that status is written): each restarted operator puts status right within seconds, and no pod is re-made."""
    log = tmp_path / "operator.log"
    first = local_operator(LLMTJ_CRASH_AFTER="status-write:1")
    job = example("killed", replicas=2, elastic={"minReplicas": 1, "maxReplicas": 2}, rendezvousPort=29425,
                  env=[{"name": "DLT_FAULT_STEP_SLEEP_S", "value": "0.05"}])  # runs past both restarts
    job["spec"]["config"]["training"].update(max_steps=400, batch_size=2, global_batch_size=8)
    job["spec"]["config"]["checkpoint"] = {"every_n_steps": 20}
    operator.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(job), check=True)
    assert first.wait(timeout=60) == 137, log.read_text()[-3000:]
    made = {p["metadata"]["name"]: p["metadata"]["uid"] for p in workers(operator, namespace)}
    assert sorted(made) == ["killed-worker-0", "killed-worker-1"]

    second = local_operator(LLMTJ_CRASH_AFTER="pod-delete:1")
    assert poll(lambda: ((get_job(operator, namespace, "killed") or {}).get("status") or {}).get("readyReplicas")
                == 2, timeout=120), f"{get_job(operator, namespace, 'killed').get('status')}\n{log.read_text()[-3000:]}"
    operator.kubectl("scale", "llmtj/killed", "-n", namespace, "--replicas=1", check=True)
    assert second.wait(timeout=60) == 137, log.read_text()[-3000:]
    status = get_job(operator, namespace, "killed")["status"]
    assert status["desiredReplicas"] == 2, status  # killed before the scale-down reached status

    local_operator()

    def scaling(want: str) -> bool:
        status = (get_job(operator, namespace, "killed") or {}).get("status") or {}
        state = {c["type"]: c["status"] for c in status.get("conditions") or []}.get("Scaling")
        return status.get("desiredReplicas") == 1 and status.get("readyReplicas") == 1 and state == want

    # status catches up within seconds (the scale-down under way), then settles once worker 1 has left: deleted a
    # moment after it started, before torchrun ran, it must stop at once (PID 1 drops signals it has no handler for)
    assert poll(lambda: scaling("True") or scaling("False"), timeout=30), \
        f"{get_job(operator, namespace, 'killed')['status']}\n{log.read_text()[-3000:]}"
    assert poll(lambda: scaling("False"), timeout=120), "\n".join(
        [str(get_job(operator, namespace, "killed")["status"]), log.read_text()[-2000:], pod_logs(operator, namespace)])
    done = wait_phase(operator, namespace, "killed", ("Succeeded", "Failed"), timeout=300)["status"]
    assert done["phase"] == "Succeeded" and done["restartCount"] == 0 and done["desiredReplicas"] == 1, done
    # worker 0 is the pod made first (never replaced); worker 1 was deleted once and never made again
    assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in workers(operator, namespace)} == \
        {"killed-worker-0": made["killed-worker-0"]}


def test_operator_survives_objects_its_schema_never_allowed(operator, namespace):
    """An older, looser CRD (or a bug) lets garbage in: each object gets a Failed condition, the operator lives on."""
    loose = yaml.safe_load(CRD.read_text())
    version = loose["spec"]["versions"][0]
    version["schema"]["openAPIV3Schema"]["properties"]["spec"] = {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}
    version.pop("additionalPrinterColumns")
    loose["spec"]["versions"][0]["subresources"].pop("scale")
    def restarts() -> dict[str, int]:
        return {n: p["status"]["containerStatuses"][0]["restartCount"] for n, p in operator_pods(operator).items()}

    assert poll(lambda: acting(operator) in operator_pods(operator), timeout=60)  # one replica acts
    before = restarts()
    try:
        operator.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump(loose),
                         check=True)
        bad = {"strtype": {"replicas": "many"}, "listy": {"env": "PATH=/x"}, "deep": {"elastic": {"maxReplicas": -3}},
               "weird": {"checkpoint": ["not", "a", "map"]}}
        for name, spec in bad.items():
            body = {"apiVersion": "llmtj.dev/v1alpha1", "kind": "LLMTrainingJob", "metadata": {"name": name},
                    "spec": spec}
            operator.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body), check=True)
        for name, spec in bad.items():
            status = wait_phase(operator, namespace, name, ("Failed",), timeout=60)["status"]
            failed = {c["type"]: c for c in status["conditions"]}["Failed"]
            assert failed["reason"] == "InvalidSpec" and failed["message"].startswith("spec."), failed
        assert pods(operator, namespace) == []
    finally:
        operator.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD), check=True)
    assert restarts() == before  # the same processes: neither replica crashed or restarted
