"""Workers lost and stopped on the test bed: a SIGKILLed pod is replaced and counted; a deleted job's workers save
a checkpoint on SIGTERM before they go."""

from __future__ import annotations

import json
import os
import signal

import pytest

from distributed_llm_trainer.training.checkpoint_io import load_checkpoint_file

from .jobs import apply, claim_dir, events, example, get_job, pod_logs, pods, poll, wait_phase, workers

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def long_job(name: str, port: int, steps: int) -> dict:
    job = example(name, rendezvousPort=port)
    job["spec"]["config"]["training"].update(max_steps=steps)
    job["spec"]["config"]["checkpoint"]["every_n_steps"] = 10
    return job


def checkpoints(cluster, namespace: str, name: str) -> list[str]:
    pvc = cluster.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}-checkpoints")
    if not pvc or not pvc["spec"].get("volumeName"):
        return []
    d = claim_dir(cluster, namespace, f"{name}-checkpoints") / name / "checkpoints"
    return sorted(p.name for p in d.glob("step-*.ckpt")) if d.is_dir() else []


def running_pid(pod: dict) -> int:
    cs = pod["status"]["containerStatuses"][0]
    return int(cs["containerID"].removeprefix("local://"))


WANDB_KEY = "llmtj0test0wandb0key0never0to0be0seen0anywhere"  # a stand-in key: W&B itself is out of reach here


def test_a_killed_worker_0_is_replaced_counted_once_and_training_finishes(operator, namespace):
    """Worker 0 (rank 0, and in torchrun's default set-up the rendezvous store's host) loses its processes: the
    store pod keeps the rendezvous, so one replacement is all it costs. The job logs to W&B with its key in a
    Secret: the restarted run continues the same W&B run, and the key shows up nowhere."""
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "wandb", "namespace": namespace},
              "stringData": {"api-key": WANDB_KEY}}
    operator.kubectl("apply", "-f", "-", input=json.dumps(secret), check=True)
    job = long_job("killed", 29412, 300)
    job["spec"]["backoffLimit"] = 6
    job["spec"]["wandb"] = {"apiKeySecret": {"name": "wandb", "key": "api-key"}}
    job["spec"]["config"]["logging"] = {**job["spec"]["config"].get("logging", {}), "wandb": {"enabled": True}}
    apply(operator, namespace, job)
    assert poll(lambda: len(checkpoints(operator, namespace, "killed")) >= 1, timeout=240), \
        pod_logs(operator, namespace)
    victim = next(p for p in pods(operator, namespace) if p["metadata"]["name"] == "killed-worker-0")
    os.killpg(running_pid(victim), signal.SIGKILL)  # the pod's processes die, as on an OOM kill or a crash
    replaced = poll(lambda: any(p["metadata"]["name"] == "killed-worker-0" and p["metadata"]["uid"] !=
                                victim["metadata"]["uid"] for p in pods(operator, namespace)), timeout=120)
    assert replaced, get_job(operator, namespace, "killed")["status"]
    status = wait_phase(operator, namespace, "killed", ("Succeeded", "Failed"), timeout=420)["status"]
    assert status["phase"] == "Succeeded", f"{status}\n{pod_logs(operator, namespace)}"
    assert status["restartCount"] == 1 and status["step"] == 300, status
    new = next(p for p in pods(operator, namespace) if p["metadata"]["name"] == "killed-worker-0")
    assert int(new["metadata"]["annotations"]["llmtj.dev/restart-count"]) >= 1
    warned = [e["message"] for e in events(operator, namespace) if e["reason"] == "WorkerFailed"]
    assert any("killed-worker-0" in m and "killed by SIGKILL" in m for m in warned), warned

    # one W&B run (offline here: no network) across the restart, named after the job, its id on the claim
    run = claim_dir(operator, namespace, "killed-checkpoints") / "killed"
    run_id = (run / "wandb" / "run_id").read_text().strip()
    starts = sorted((run / "wandb").glob("offline-run-*"))  # one per start of rank 0
    assert len(starts) >= 2 and {d.name.rsplit("-", 1)[1] for d in starts} == {run_id}, starts
    # the key: by reference in the pods, and in nothing the job, its pods or its run left behind
    for pod in workers(operator, namespace):
        env = {e["name"]: e for e in pod["spec"]["containers"][0].get("env", [])}
        assert env["WANDB_API_KEY"] == {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {
            "name": "wandb", "key": "api-key"}}}, env["WANDB_API_KEY"]
    seen = [json.dumps(get_job(operator, namespace, "killed")), json.dumps(pods(operator, namespace)),
            pod_logs(operator, namespace, tail=10**7), json.dumps(events(operator, namespace))]
    assert not [i for i, text in enumerate(seen) if WANDB_KEY in text]
    leaked = [str(f) for f in run.rglob("*") if f.is_file() and WANDB_KEY.encode() in f.read_bytes()]
    assert not leaked, leaked


def test_a_worker_stopped_by_sigterm_saves_and_is_replaced_without_counting(operator, namespace):
    """As the kubelet stops a pod it evicts: SIGTERM -> every rank checkpoints at the next step boundary -> the pod
    exits 143 (stopped on purpose) -> a replacement, not counted; the other worker re-forms with it."""
    job = long_job("evicted", 29416, 200)
    job["spec"]["backoffLimit"] = 0  # any counted restart would fail the job
    apply(operator, namespace, job)
    assert poll(lambda: len(checkpoints(operator, namespace, "evicted")) >= 1, timeout=240), \
        pod_logs(operator, namespace)
    victim = next(p for p in pods(operator, namespace) if p["metadata"]["name"] == "evicted-worker-1")
    os.killpg(running_pid(victim), signal.SIGTERM)
    status = wait_phase(operator, namespace, "evicted", ("Succeeded", "Failed"), timeout=420)["status"]
    assert status["phase"] == "Succeeded" and status["restartCount"] == 0, f"{status}\n{pod_logs(operator, namespace)}"
    assert status["step"] == 200 and not status.get("stoppedWorkers"), status
    stopped = [e["message"] for e in events(operator, namespace) if e["reason"] == "WorkerStopped"]
    assert any("evicted-worker-1" in m and "exit code 143" in m for m in stopped), stopped
    assert "SIGTERM received: saving a checkpoint" in pod_logs(operator, namespace, tail=10**6)


def test_deleting_a_running_job_saves_a_checkpoint_on_sigterm(operator, namespace):
    apply(operator, namespace, long_job("stopped", 29413, 100000))
    assert poll(lambda: len(checkpoints(operator, namespace, "stopped")) >= 1, timeout=240), \
        pod_logs(operator, namespace)
    operator.kubectl("delete", "llmtj", "stopped", "-n", namespace, "--wait=false", check=True)
    last_logs = ""  # the pods' logs go with them: keep the last read, for the message below

    def gone() -> bool:
        nonlocal last_logs
        last_logs = pod_logs(operator, namespace, tail=6000) or last_logs
        return not any(operator.get(f"/api/v1/namespaces/{namespace}/pods/stopped-worker-{i}") for i in (0, 1))

    assert poll(gone, timeout=150, interval=0.3), last_logs
    run = claim_dir(operator, namespace, "stopped-checkpoints") / "stopped"
    assert (run / "summary.json").is_file(), last_logs
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stop_reason"] == "SIGTERM", summary
    assert load_checkpoint_file(run / "checkpoints" / "last.ckpt")["global_step"] == summary["steps"] > 0
    assert operator.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/stopped-checkpoints") is not None
