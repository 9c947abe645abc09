"""The reconcile decision without a cluster: phases, restarts against backoffLimit, permanent errors, conditions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from llmtj_operator import conditions as cond
from llmtj_operator.api import JobSpec
from llmtj_operator.plan import plan
from llmtj_operator.pods import view

from .jobs import pod

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=timezone.utc)
STARTED = {"startTime": "2026-12-02T11:59:00Z", "phase": "Running"}


def run(spec: dict, status: dict, pods: list[dict], now: datetime = NOW):
    return plan("tiny", JobSpec.model_validate(spec), 1, status, [view(p) for p in pods], now)


def test_a_new_job_creates_every_worker_once_and_is_pending():
    p = run({"replicas": 2}, {}, [])
    assert p.create == [(0, 0), (1, 0)] and p.delete == []
    assert p.status["phase"] == "Pending" and p.status["startTime"] == "2026-12-02T12:00:00Z"
    assert p.status["selector"] == "llmtj.dev/job-name=tiny,llmtj.dev/role=worker"


def test_an_operator_restarted_mid_creation_creates_only_the_missing_pod_without_counting_it():
    p = run({"replicas": 3}, {}, [pod(0, "Pending", ready=False)])
    assert p.create == [(1, 0), (2, 0)] and p.status["restartCount"] == 0


def test_all_running_is_running_with_a_true_condition_and_event():
    p = run({"replicas": 2}, {"startTime": "2026-12-02T11:59:00Z", "phase": "Pending"}, [pod(0), pod(1)])
    assert p.status["phase"] == "Running" and p.status["workers"] == "2/2" and p.create == []
    assert cond.is_true(p.status["conditions"], "Running") and not cond.is_true(p.status["conditions"], "Failed")
    assert ("Normal", "AllWorkersRunning", "2 worker pods training") in p.events


def test_a_failed_worker_is_deleted_then_replaced_and_counted_once():
    failed = pod(1, "Failed", ready=False, exit_code=137, message="killed")
    first = run({"replicas": 2}, STARTED, [pod(0), failed])
    assert first.delete == ["tiny-worker-1"] and first.create == [] and first.status["phase"] == "Restarting"
    assert first.status["restartCount"] == 0 and "killed" in first.status["lastError"]
    second = run({"replicas": 2}, first.status, [pod(0)])
    assert second.create == [(1, 1)] and second.status["restartCount"] == 1
    # the operator died before writing status: the replacement's annotation still carries the count
    third = run({"replicas": 2}, first.status, [pod(0), pod(1, "Pending", ready=False, restarts=1)])
    assert third.create == [] and third.status["restartCount"] == 1


def test_a_worker_stopped_on_purpose_is_replaced_without_counting():
    """SIGTERM (llmtj-worker exits 143 after the checkpoint) or a kubelet eviction: not a failure, not counted."""
    stopped = pod(1, "Failed", ready=False, exit_code=143)
    evicted = pod(0, "Failed", ready=False, exit_code=137)
    evicted["status"]["reason"] = "Evicted"
    first = run({"replicas": 2, "backoffLimit": 0}, STARTED, [evicted, stopped])
    assert sorted(first.delete) == ["tiny-worker-0", "tiny-worker-1"] and first.status["phase"] == "Restarting"
    assert first.status["stoppedWorkers"] == ["tiny-worker-0", "tiny-worker-1"] and "lastError" not in first.status
    assert [e[:2] for e in first.events if e[1] == "WorkerStopped"] == [("Normal", "WorkerStopped")] * 2
    second = run({"replicas": 2, "backoffLimit": 0}, first.status, [])
    assert second.create == [(0, 0), (1, 0)] and second.status["restartCount"] == 0
    assert second.status["stoppedWorkers"] == [] and second.status["phase"] != "Failed"
    # a SIGKILL after the grace period is a failure: counted (and here over the limit)
    killed = run({"replicas": 2, "backoffLimit": 0}, STARTED, [pod(0), pod(1, "Failed", ready=False, exit_code=137)])
    assert run({"replicas": 2, "backoffLimit": 0}, killed.status, [pod(0)]).status["phase"] == "Failed"


ELASTIC = {"elastic": {"minReplicas": 1, "maxReplicas": 3}}


def test_scale_up_adds_the_new_index_without_counting_and_keeps_training_meanwhile():
    running = {**STARTED, "desiredReplicas": 2}
    up = run({"replicas": 3, **ELASTIC}, running, [pod(0), pod(1)])
    assert up.create == [(2, 0)] and up.delete == [] and up.status["restartCount"] == 0
    assert up.status["phase"] == "Running" and cond.get(up.status["conditions"], "Scaling")["reason"] == "ScalingUp"
    assert [e[1] for e in up.events] == ["ScalingUp"] and "2 -> 3" in up.events[0][2]
    stuck = pod(2, "Pending", ready=False)
    stuck["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                      "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."}]
    waiting = run({"replicas": 3, **ELASTIC}, up.status, [pod(0), pod(1), stuck])
    scaling = cond.get(waiting.status["conditions"], "Scaling")
    assert waiting.status["phase"] == "Running" and waiting.create == [] and scaling["status"] == "True"
    assert scaling["reason"] == "WaitingForPods" and "Insufficient nvidia.com/gpu" in scaling["message"]
    assert "training goes on with 2 worker pods" in scaling["message"] and waiting.events == []
    done = run({"replicas": 3, **ELASTIC}, waiting.status, [pod(0), pod(1), pod(2)])
    assert cond.get(done.status["conditions"], "Scaling")["status"] == "False" and done.status["phase"] == "Running"


def test_scale_down_removes_the_highest_indices_gracefully_without_a_restart():
    running = {**STARTED, "desiredReplicas": 3}
    down = run({"replicas": 1, **ELASTIC}, running, [pod(0), pod(1), pod(2)])
    assert sorted(down.delete) == ["tiny-worker-1", "tiny-worker-2"] and down.create == []
    assert down.status["phase"] == "Running" and down.status["restartCount"] == 0
    assert cond.get(down.status["conditions"], "Scaling")["reason"] == "ScalingDown"
    leaving = run({"replicas": 1, **ELASTIC}, down.status, [pod(0), pod(1, deleting=True), pod(2, deleting=True)])
    assert leaving.delete == [] and leaving.status["phase"] == "Running"  # not Restarting: nothing failed
    assert cond.is_true(leaving.status["conditions"], "Scaling")
    gone = run({"replicas": 1, **ELASTIC}, leaving.status, [pod(0)])
    assert not cond.is_true(gone.status["conditions"], "Scaling") and gone.status["restartCount"] == 0


def test_a_job_that_finishes_mid_resize_ends_its_scaling_condition():
    running = {**STARTED, "desiredReplicas": 2}
    down = run({"replicas": 1, **ELASTIC}, running, [pod(0), pod(1)])
    assert cond.is_true(down.status["conditions"], "Scaling")
    done = run({"replicas": 1, **ELASTIC}, down.status, [pod(0, "Succeeded", ready=False, exit_code=0),
                                                         pod(1, deleting=True)])
    assert done.status["phase"] == "Running"  # worker 1 still leaving
    finished = run({"replicas": 1, **ELASTIC}, down.status, [pod(0, "Succeeded", ready=False, exit_code=0)])
    scaling = cond.get(finished.status["conditions"], "Scaling")
    assert finished.status["phase"] == "Succeeded" and scaling["status"] == "False"
    assert scaling["reason"] == "JobSucceeded"


def test_no_scaling_condition_before_any_resize():
    p = run({"replicas": 2}, {**STARTED, "desiredReplicas": 2}, [pod(0), pod(1)])
    assert cond.get(p.status["conditions"], "Scaling") is None


def test_backoff_limit_exhausted_fails_with_the_last_error():
    status = {**STARTED, "restartCount": 2, "lastError": "tiny-worker-1: error: out of memory"}
    p = run({"replicas": 2, "backoffLimit": 2}, status, [pod(0)])
    assert p.status["phase"] == "Failed" and p.create == [] and p.delete == ["tiny-worker-0"]
    failed = cond.get(p.status["conditions"], "Failed")
    assert failed["reason"] == "BackoffLimitExceeded" and "out of memory" in failed["message"]
    assert p.events[-1][0] == "Warning"


def test_backoff_reached_midway_creates_nothing():
    status = {**STARTED, "restartCount": 2}
    p = run({"replicas": 3, "backoffLimit": 3}, status, [pod(0)])  # two missing, one restart left
    assert p.status["phase"] == "Failed" and p.create == [] and p.delete == ["tiny-worker-0"]


def test_exit_code_2_is_permanent_with_the_trainer_error_line():
    log = "loading config\nerror: model.num_attention_heads: 5 does not divide hidden_size 64; choose heads\n"
    p = run({"replicas": 2}, STARTED, [pod(0), pod(1, "Failed", ready=False, exit_code=2, message=log)])
    assert p.status["phase"] == "Failed" and p.create == [] and p.delete == ["tiny-worker-0"]
    failed = cond.get(p.status["conditions"], "Failed")
    assert failed["reason"] == "InvalidInput" and "error: model.num_attention_heads: 5 does not divide" in \
        failed["message"]


def test_success_reads_step_and_checkpoint_from_the_termination_message():
    msg = '{"step": 40, "checkpoint": "/checkpoints/tiny/checkpoints/last.ckpt", "stopReason": "max_steps"}'
    done = [pod(0, "Succeeded", ready=False, exit_code=0, message=msg), pod(1, "Succeeded", ready=False, exit_code=0)]
    p = run({"replicas": 2}, STARTED, done)
    assert p.status["phase"] == "Succeeded" and p.status["step"] == 40 and p.create == []
    assert p.status["lastCheckpoint"] == {"path": "/checkpoints/tiny/checkpoints/last.ckpt", "step": 40}
    assert p.status["completionTime"] == "2026-12-02T12:00:00Z"


def test_one_finished_worker_stops_replacements():
    p = run({"replicas": 2}, STARTED, [pod(0, "Succeeded", ready=False, exit_code=0), pod(1)])
    assert p.create == [] and p.status["phase"] == "Running"


def test_terminal_phases_are_sticky():
    status = {**STARTED, "phase": "Failed", "completionTime": "2026-12-02T11:59:30Z"}
    p = run({"replicas": 2}, status, [])
    assert p.create == [] and p.status["phase"] == "Failed"


def test_suspend_deletes_pods_and_resume_recreates_them():
    p = run({"replicas": 2, "suspend": True}, STARTED, [pod(0), pod(1)])
    assert sorted(p.delete) == ["tiny-worker-0", "tiny-worker-1"] and p.status["phase"] == "Suspended"
    waiting = run({"replicas": 2}, p.status, [pod(0, deleting=True)])
    assert waiting.create == [] and waiting.status["phase"] == "Suspended"
    again = run({"replicas": 2}, {**p.status, "restartCount": 1}, [])
    assert again.create == [(0, 1), (1, 1)] and again.status["restartCount"] == 1  # resuming is not a restart
    assert again.status["phase"] == "Pending"


def test_active_deadline_fails_the_job():
    p = run({"replicas": 1, "activeDeadlineSeconds": 30}, STARTED, [pod(0)], now=NOW + timedelta(seconds=1))
    assert p.status["phase"] == "Failed" and cond.get(p.status["conditions"], "Failed")["reason"] == "DeadlineExceeded"


def test_condition_transition_time_moves_only_on_flips():
    first = cond.upsert([], "Running", True, "A", "", "t1", 1)
    same = cond.upsert(first, "Running", True, "B", "m", "t2", 2)
    flipped = cond.upsert(same, "Running", False, "C", "", "t3", 2)
    assert same[0]["lastTransitionTime"] == "t1" and same[0]["reason"] == "B"
    assert flipped[0]["lastTransitionTime"] == "t3" and flipped[0]["observedGeneration"] == 2


def test_error_line_prefers_the_trainers_line_then_the_exception_then_the_signal():
    def line(code, msg):
        return view(pod(1, "Failed", ready=False, exit_code=code, message=msg)).error_line()

    assert line(2, "noise\nerror: data.path: no files match; fix the glob\nmore") == \
        "error: data.path: no files match; fix the glob"
    assert line(1, "Traceback\n  File x\ntorch.distributed.DistStoreError: wait timeout\nwarning: x\n") == \
        "torch.distributed.DistStoreError: wait timeout (exit code 1)"
    assert line(137, "/x.py:1: FutureWarning: deprecated\n") == "exit code 137: killed by SIGKILL"


def test_a_finished_job_ignores_suspend_and_scale_with_one_warning_per_change():
    done = {"phase": "Succeeded", "desiredReplicas": 2, "observedGeneration": 1, "readyReplicas": 0}
    p = plan("tiny", JobSpec.model_validate({"replicas": 1, "suspend": True}), 2, done, [], NOW)
    assert p.create == [] and p.delete == [] and p.status["phase"] == "Succeeded"
    assert p.status["desiredReplicas"] == 2 and p.status["workers"] == "0/2"
    (kind, reason, message), = p.events
    assert (kind, reason) == ("Warning", "JobFinished")
    assert message.startswith("spec.replicas=1 and spec.suspend=true ignored: the job is Succeeded and never runs")
    assert plan("tiny", JobSpec.model_validate({"replicas": 1, "suspend": True}), 2, p.status, [], NOW).events == []
