"""Chaos: a seeded random schedule of faults during one job (LLMTJ_CHAOS_SEED, default 17), each kind at least once:
workers SIGKILLed or deleted, the acting operator replica SIGKILLed, the API server restarted. The job still ends
Succeeded at max_steps, every checkpoint on the claim is whole, and the steps trained twice are at most (faults) x
(checkpoint interval). The workers never notice the API server's restart (they talk to each other and to the
rendezvous store): when another fault follows it, no worker was replaced in between."""

from __future__ import annotations

import collections
import json
import os
import random
import signal

import pytest

from distributed_llm_trainer.training.checkpoint_io import verify_checkpoint

from .jobs import acting, apply, claim_dir, events, example, get_job, operator_pods, pod_logs, poll, wait_phase, workers
from .test_worker_faults import checkpoints

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
STEPS, EVERY, FAULTS = 400, 10, 5
KINDS = ("kill-worker", "delete-worker", "kill-operator", "restart-apiserver")


def _pid(pod: dict) -> int:
    return int(pod["status"]["containerStatuses"][0]["containerID"].removeprefix("local://"))


def _newest(cluster, namespace: str) -> int:
    """The newest periodic checkpoint's step (0 before the first, and before the claim is even bound)."""
    return max((int(name[5:13]) for name in checkpoints(cluster, namespace, "chaos")), default=0)


def _running_workers(cluster, namespace: str) -> list[dict]:
    return [p for p in workers(cluster, namespace) if p["status"].get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp") and p["status"].get("containerStatuses")]


def _fault(cluster, namespace: str, kind: str, rng: random.Random) -> str:
    if kind == "restart-apiserver":
        cluster.restart_apiserver(downtime=rng.uniform(0, 3))
        return kind
    if kind == "kill-operator":
        name = acting(cluster)
        os.killpg(_pid(operator_pods(cluster)[name]), signal.SIGKILL)
        # the standby takes over (the dead record expires, or the restarted replica rejoins below it): the next
        # operator fault hits the replica in charge, not a standby
        assert poll(lambda: acting(cluster) not in (None, name), timeout=60), "no takeover"
        return f"{kind} {name}"
    victim = rng.choice(sorted(_running_workers(cluster, namespace), key=lambda p: p["metadata"]["name"]))
    if kind == "kill-worker":
        os.killpg(_pid(victim), signal.SIGKILL)
    else:
        cluster.kubectl("delete", "pod", victim["metadata"]["name"], "-n", namespace, "--wait=false", check=True)
    return f"{kind} {victim['metadata']['name']}"


def test_a_seeded_schedule_of_faults_still_ends_succeeded_with_bounded_lost_work(operator, namespace):
    seed = int(os.environ.get("LLMTJ_CHAOS_SEED", "17"))
    rng = random.Random(seed)
    schedule = rng.sample(KINDS, len(KINDS)) + [rng.choice(KINDS) for _ in range(FAULTS - len(KINDS))]  # each kind
    job = example("chaos", rendezvousPort=29422, backoffLimit=2 * FAULTS, env=[
        {"name": "DLT_FAULT_STEP_SLEEP_S", "value": "0.1"},  # a slower model: the faults land mid-run
        {"name": "DLT_TRACE_BATCHES", "value": "/checkpoints/chaos-trace"}])  # which steps ran, and how often
    job["spec"]["config"]["training"]["max_steps"] = STEPS
    job["spec"]["config"]["checkpoint"]["every_n_steps"] = EVERY
    apply(operator, namespace, job)
    done: list[str] = []
    before: set[str] = set()  # the worker pods' uids when the latest fault began
    for kind in schedule:
        # each fault once training has made progress since the last one: a checkpoint newer than before, and (for a
        # worker fault) a running worker to hit
        since = _newest(operator, namespace)
        assert poll(lambda: _newest(operator, namespace) > since and len(_running_workers(operator, namespace)) == 2
                    and acting(operator) in operator_pods(operator), timeout=300, interval=0.5), \
            f"seed {seed}, after {done}: {(get_job(operator, namespace, 'chaos') or {}).get('status')}\n" \
            f"{pod_logs(operator, namespace)}"
        if _newest(operator, namespace) >= STEPS - 3 * EVERY:
            break  # too close to the end for another fault to land mid-run
        if done and done[-1] == "restart-apiserver":  # the workers never noticed: none replaced, none failed
            assert {p["metadata"]["uid"] for p in workers(operator, namespace)} == before, (seed, done)
        before = {p["metadata"]["uid"] for p in workers(operator, namespace)}
        done.append(_fault(operator, namespace, kind, rng))

    status = wait_phase(operator, namespace, "chaos", ("Succeeded", "Failed"), timeout=600)["status"]
    assert status["phase"] == "Succeeded" and status["step"] == STEPS, \
        f"seed {seed}, faults {done}: {status}\n{pod_logs(operator, namespace)}"
    assert len(done) >= 3, done  # the schedule really ran
    root = claim_dir(operator, namespace, "chaos-checkpoints")
    for ckpt in sorted((root / "chaos" / "checkpoints").glob("*.ckpt")):
        verify_checkpoint(ckpt)  # raises on a half-written or corrupt file
    records = [json.loads(line) for f in (root / "chaos-trace").glob("trace-*.jsonl")
               for line in f.read_text().splitlines() if line.endswith("}")]  # a killed writer: half a line
    attempts = collections.Counter(s for s, _ in {(r["step"], r["group"]) for r in records})
    assert sorted(attempts) == list(range(1, STEPS + 1)), "every step trained"
    redone = sum(n - 1 for n in attempts.values())
    assert redone <= len(done) * EVERY, (seed, done, redone, {s: n for s, n in attempts.items() if n > 1})
    assert status["restartCount"] <= len(done), (done, status)
    print(json.dumps({"seed": seed, "faults": done, "redone_steps": redone, "restarts": status["restartCount"],
                      "events": collections.Counter(e["reason"] for e in events(operator, namespace))}))
