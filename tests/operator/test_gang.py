"""Gang start without a gang scheduler: fewer than minReplicas placeable -> release, gate, retry with backoff."""

from __future__ import annotations

from datetime import timedelta

from llmtj_operator import conditions as cond
from llmtj_operator import names
from llmtj_operator.render import build_pod

from .jobs import job, pod
from .test_plan import NOW, run

NO_GPU = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
SPEC = {"replicas": 3, "elastic": {"minReplicas": 2}}


def _waiting(i: int, **kw) -> dict:
    return pod(i, "Pending", ready=False, node=None, unschedulable=NO_GPU, **kw)


def test_fewer_placeable_than_min_releases_every_worker_and_quotes_the_scheduler():
    p = run(SPEC, {"phase": "Pending", "startTime": "2026-12-02T11:59:00Z"}, [pod(0), _waiting(1), _waiting(2)])
    assert sorted(p.delete) == ["tiny-worker-0", "tiny-worker-1", "tiny-worker-2"] and p.create == []
    assert p.status["phase"] == "Pending" and p.status["restartCount"] == 0
    scheduled = cond.get(p.status["conditions"], "Scheduled")
    assert scheduled["status"] == "False" and scheduled["reason"] == "Unschedulable" and NO_GPU in scheduled["message"]
    assert scheduled["message"].startswith("the scheduler cannot place the 2 worker pods the job needs at least "
                                           "(elastic.minReplicas) (only 1 could): 0/2 nodes are available")
    assert scheduled["message"].endswith("its pods are released so that they hold no GPUs, next try at "
                                         "2026-12-02T12:00:10Z")
    assert p.status["gangRetry"] == {"attempts": 1, "retryAt": "2026-12-02T12:00:10Z", "reason": NO_GPU}
    assert [e[1] for e in p.events] == ["PodsReleased"]  # already Pending: no phase event

    # the released pods are gone: they come back behind the gate, uncounted, until the retry time
    gone = run(SPEC, p.status, [])
    assert gone.create == [(0, 0), (1, 0), (2, 0)] and gone.gated and gone.status["restartCount"] == 0
    assert gone.status["phase"] == "Pending" and gone.ungate == []
    gated = [pod(i, "Pending", ready=False, node=None, gated=True) for i in range(3)]
    assert run(SPEC, gone.status, gated, now=NOW + timedelta(seconds=9)).ungate == []
    retry = run(SPEC, gone.status, gated, now=NOW + timedelta(seconds=10))
    assert retry.ungate == ["tiny-worker-0", "tiny-worker-1", "tiny-worker-2"] and not retry.gated
    assert retry.status["phase"] == "Pending" and retry.status["gangRetry"]["attempts"] == 1


def test_a_second_failed_try_doubles_the_backoff_and_a_placed_gang_clears_it():
    state = {"phase": "Pending", "startTime": "2026-12-02T11:59:00Z",
             "gangRetry": {"attempts": 1, "retryAt": "2026-12-02T11:59:50Z", "reason": NO_GPU}}
    again = run(SPEC, state, [pod(0), _waiting(1), _waiting(2)])
    assert again.status["gangRetry"]["attempts"] == 2 and again.status["gangRetry"]["retryAt"] == "2026-12-02T12:00:20Z"
    placed = run(SPEC, again.status, [pod(0), pod(1), _waiting(2)])
    assert placed.delete == [] and "gangRetry" not in {k for k, v in placed.status.items() if v is not None}
    assert cond.is_true(placed.status["conditions"], "Scheduled")
    # two of three train: Running at the size it has, saying what it waits for
    assert placed.status["phase"] == "Running" and NO_GPU in cond.get(placed.status["conditions"], "Running")["message"]


def test_nothing_is_released_while_the_scheduler_has_not_judged_every_pod():
    fresh = pod(2, "Pending", ready=False, node=None)  # not yet seen by the scheduler
    p = run(SPEC, {"phase": "Pending", "startTime": "2026-12-02T11:59:00Z"}, [pod(0), _waiting(1), fresh])
    assert p.delete == [] and p.status["phase"] == "Pending"


def test_a_running_job_scaled_beyond_capacity_keeps_training():
    spec = {"replicas": 3, "elastic": {"minReplicas": 1, "maxReplicas": 3}}
    p = run(spec, {"phase": "Running", "startTime": "2026-12-02T11:59:00Z", "desiredReplicas": 2},
            [pod(0), pod(1), _waiting(2)])
    assert p.delete == [] and p.status["phase"] == "Running" and cond.get(p.status["conditions"], "Scheduled") is None


def test_released_pods_of_a_running_job_are_not_restarts():
    """A lost node leaves one of two workers placed and its replacement unplaceable: both are released, uncounted."""
    p = run({"replicas": 2, "backoffLimit": 0}, {"phase": "Restarting", "startTime": "2026-12-02T11:59:00Z"},
            [pod(0), _waiting(1, restarts=0)])
    assert sorted(p.delete) == ["tiny-worker-0", "tiny-worker-1"] and p.status["phase"] == "Pending"
    back = run({"replicas": 2, "backoffLimit": 0}, p.status, [])
    assert back.create == [(0, 0), (1, 0)] and back.status["phase"] == "Pending"


def test_gated_pods_carry_the_gate_and_kueue_labels_come_from_the_job():
    j = job({"replicas": 4})
    assert build_pod(j, 0, gated=True)["spec"]["schedulingGates"] == [{"name": names.GANG_GATE}]
    assert "schedulingGates" not in build_pod(j, 0)["spec"]
    assert "kueue.x-k8s.io/queue-name" not in build_pod(j, 0)["metadata"]["labels"]
    from dataclasses import replace
    queued = build_pod(replace(j, queue="team-a-queue"), 3)["metadata"]
    assert queued["labels"]["kueue.x-k8s.io/queue-name"] == "team-a-queue"
    assert queued["labels"]["kueue.x-k8s.io/pod-group-name"] == "tiny"
    assert queued["annotations"]["kueue.x-k8s.io/pod-group-total-count"] == "4"


def test_when_none_can_be_placed_nothing_is_released_and_the_scheduler_keeps_trying():
    """Nothing is held: the pods stay with the scheduler (no gate, no backoff), the condition says why."""
    p = run(SPEC, {"phase": "Pending", "startTime": "2026-12-02T11:59:00Z"}, [_waiting(i) for i in range(3)])
    assert p.delete == [] and p.create == [] and not p.gated and "gangRetry" not in p.status
    scheduled = cond.get(p.status["conditions"], "Scheduled")
    assert scheduled["status"] == "False" and scheduled["message"] == (
        f"the scheduler cannot place any of the 2 worker pods the job needs at least (elastic.minReplicas): {NO_GPU}")
    assert p.status["phase"] == "Pending"


def test_a_pod_waiting_for_its_claim_to_be_bound_is_not_a_shortfall():
    """The checkpoint claim is made just before the pods: until the provisioner binds it, the scheduler refuses them
    for the unbound claim and retries once it is bound. That is no reason to release the gang."""
    unbound = ("0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. not found. preemption: "
               "0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
    p = run(SPEC, {"phase": "Pending", "startTime": "2026-12-02T11:59:00Z"},
            [pod(0), pod(1, "Pending", ready=False, node=None, unschedulable=unbound), _waiting(2)])
    assert p.delete == [] and not p.status.get("gangRetry") and "PodsReleased" not in [e[1] for e in p.events]
    assert cond.get(p.status.get("conditions") or [], "Scheduled") is None
