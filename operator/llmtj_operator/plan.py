"""The reconcile decision, pure: spec, last status and worker pods in; what to do and the new status out.

Restarts are counted where they cannot be lost or counted twice: a replacement pod carries the job's restart count
in an annotation, so an operator killed between creating a pod and writing the status recovers the count from the
pods (server-side state is the truth). The failure itself is not counted, the replacement is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import conditions as cond
from . import names
from .api import JobSpec
from .clock import parse, timestamp
from .gang import gang
from .pods import PodView
from .scaling import scale

TERMINAL = ("Succeeded", "Failed")


@dataclass
class Plan:
    status: dict[str, Any]
    create: list[tuple[int, int]] = field(default_factory=list)  # (index, restart count for its annotation)
    delete: list[str] = field(default_factory=list)  # pod names
    ungate: list[str] = field(default_factory=list)  # pod names whose gang gate comes off
    gated: bool = False  # create the pods behind the gang gate
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


def _progress(status: dict[str, Any], pods: list[PodView]) -> None:
    """Step and newest checkpoint from the trainer's end-of-run messages (live progress comes from metrics)."""
    best = max((p.summary() for p in pods if p.summary().get("step") is not None),
               key=lambda s: s["step"], default=None)
    if best is None:
        return
    if best["step"] >= (status.get("step") or 0):
        status["step"] = best["step"]
        if best.get("checkpoint"):
            status["lastCheckpoint"] = {"path": best["checkpoint"], "step": best["step"]}


def _finish(plan: Plan, phase: str, reason: str, message: str, now: str, gen: int | None,
            pods: list[PodView]) -> Plan:
    st = plan.status
    old_phase = st.get("phase")
    st["phase"] = phase
    st["conditions"] = cond.for_phase(st.get("conditions") or [], phase, reason, message, now, gen)
    if (phase in TERMINAL or phase == "Suspended") and cond.is_true(st["conditions"], "Scaling"):  # none under way
        st["conditions"] = cond.upsert(st["conditions"], "Scaling", False, f"Job{phase}",
                                       f"the job is {phase}: no resize under way", now, gen)
    if phase in TERMINAL:
        st.setdefault("completionTime", now)
        plan.create = []  # nothing new for a finished job, also what this pass had planned before it failed
        plan.delete = [p.name for p in pods if not p.terminal and not p.deleting]
    if old_phase != phase:
        kind = "Warning" if phase == "Failed" else "Normal"
        plan.events.append((kind, reason, message or f"job is {phase}"))
    return plan


def _refuse_late_changes(result: Plan, spec: JobSpec, status: dict[str, Any], generation: int | None) -> None:
    """A finished job ignores suspend and resizes (there is nothing to stop or resize): a Warning Event per new
    generation says so, and status keeps the size the job finished at."""
    finished_at = status.get("desiredReplicas")
    if finished_at is not None:
        result.status["desiredReplicas"] = finished_at
        result.status["workers"] = f"{result.status['readyReplicas']}/{finished_at}"
    if generation is None or status.get("observedGeneration") == generation:
        return
    changes = [f"spec.replicas={spec.replicas}"] if finished_at is not None and spec.replicas != finished_at else []
    changes += ["spec.suspend=true"] if spec.suspend else []
    if changes:
        result.events.append(("Warning", "JobFinished", f"{' and '.join(changes)} ignored: the job is "
                              f"{status['phase']} and never runs again; to train further, create a new job with the "
                              "same checkpoint.claimName (it resumes from the newest checkpoint)"))


def plan(name: str, spec: JobSpec, generation: int | None, status: dict[str, Any], pods: list[PodView],
         now: datetime) -> Plan:
    st = {k: v for k, v in status.items() if k in _STATUS_KEYS}
    previous = status.get("desiredReplicas")
    stamp = timestamp(now)
    by_index = {p.index: p for p in pods}
    desired = spec.replicas
    restarts = max([st.get("restartCount") or 0, *(p.restart_count for p in pods)])
    st.update(restartCount=restarts, desiredReplicas=desired, selector=names.selector(name),
              observedGeneration=generation, replicas=len([p for p in pods if not p.terminal]))
    ready = len([p for p in pods if p.phase == "Running" and p.ready and not p.deleting])
    st["readyReplicas"] = ready
    st["workers"] = f"{ready}/{desired}"
    _progress(st, pods)
    result = Plan(status=st)
    if st.get("phase") in TERMINAL:  # sticky: a finished job never starts again
        result.delete = [p.name for p in pods if not p.terminal and not p.deleting]
        _refuse_late_changes(result, spec, status, generation)
        return result
    if spec.suspend:
        result.delete = [p.name for p in pods if not p.deleting]
        return _finish(result, "Suspended", "JobSuspended", "spec.suspend is true: pods stopped, checkpoints kept",
                       stamp, generation, pods)
    started = parse(st.get("startTime"))
    if started and spec.active_deadline_seconds and (now - started).total_seconds() > spec.active_deadline_seconds:
        return _finish(result, "Failed", "DeadlineExceeded",
                       f"ran longer than activeDeadlineSeconds={spec.active_deadline_seconds}", stamp, generation, pods)
    bad = next((p for p in pods if p.permanent_failure), None)
    if bad is not None:
        st["lastError"] = bad.error_line()
        return _finish(result, "Failed", "InvalidInput", f"{bad.name} exited 2 (permanent): {bad.error_line()}",
                       stamp, generation, pods)
    if any(p.phase == "Succeeded" for p in pods):  # training finished: no replacements from here on
        if all(p.terminal for p in pods):
            return _finish(result, "Succeeded", "TrainingFinished",
                           f"training finished at step {st.get('step', 'unknown')}", stamp, generation, pods)
        return result
    stopped = set(st.get("stoppedWorkers") or [])  # stopped on purpose: their replacements are not counted
    for p in pods:
        if p.phase == "Failed" and not p.deleting:
            result.delete.append(p.name)
            if p.stopped:
                stopped.add(p.name)
                result.events.append(("Normal", "WorkerStopped", f"{p.name} was stopped ({p.ending()}; reason: "
                                      f"{'disruption' if p.disrupted else 'SIGTERM'}) after saving a checkpoint; "
                                      "replacing it, not counted against backoffLimit"))
                continue
            st["lastError"] = f"{p.name}: {p.error_line()}"
            result.events.append(("Warning", "WorkerFailed", f"{p.name} failed: {p.error_line()}; replacing it"))
    held = gang(spec.min_replicas, [p for p in pods if p.name not in result.delete], st.get("gangRetry") or {}, now)
    if held.release:
        result.delete += [p.name for p in held.release if p.name not in result.delete]
        stopped |= {p.name for p in held.release}
        result.events.append(("Warning", "PodsReleased", held.blocked))
    result.ungate, result.gated = held.ungate, held.gate_new
    if held.state or st.get("gangRetry"):
        st["gangRetry"] = held.state or None
    if held.blocked or cond.get(st.get("conditions") or [], "Scheduled"):  # appears with the first shortfall
        st["conditions"] = cond.upsert(st.get("conditions") or [], "Scheduled", not held.blocked,
                                       "Unschedulable" if held.blocked else "MinReplicasScheduled",
                                       held.blocked or f"at least {spec.min_replicas} worker pods scheduled", stamp,
                                       generation)
    resize = scale(desired, previous, bool(started), pods, ready, st.get("conditions") or [])
    conditions = st.get("conditions") or []
    if resize.active or cond.get(conditions, "Scaling"):  # the condition appears with the first resize
        if resize.active and previous != desired:
            result.events.append(("Normal", resize.reason, f"{previous} -> {desired} worker pods: {resize.message}"))
        st["conditions"] = cond.upsert(conditions, "Scaling", resize.active, resize.reason, resize.message, stamp,
                                       generation)
    result.delete += [p.name for p in resize.surplus if p.name not in result.delete]
    missing = [i for i in range(desired) if i not in by_index]
    resuming = st.get("phase") == "Suspended"  # pods stopped on purpose come back without counting as restarts
    if resuming and any(p.deleting for p in pods):
        return result  # still Suspended until the stopped pods are gone
    for i in missing:
        if names.worker(name, i) in stopped:
            stopped.discard(names.worker(name, i))
        elif started and not resuming and i not in resize.new:  # a replacement: counts against backoffLimit
            if restarts + 1 > spec.backoff_limit:
                return _finish(result, "Failed", "BackoffLimitExceeded",
                               f"{restarts} restarts used up backoffLimit={spec.backoff_limit}; last error: "
                               f"{st.get('lastError') or 'a worker pod disappeared'}", stamp, generation, pods)
            restarts += 1
        result.create.append((i, restarts))
    st["restartCount"] = restarts
    stopped &= {names.worker(name, i) for i in range(desired)}  # a stopped pod above a new size never comes back
    if stopped or st.get("stoppedWorkers"):
        st["stoppedWorkers"] = sorted(stopped)
    if not started and (result.create or pods):  # pods may predate this operator (restarted mid-creation)
        st["startTime"] = stamp
    # Pods leaving or joining through a resize are not a restart: only the job's own indices count here.
    gone = {p.name for p in resize.surplus} | {p.name for p in pods if p.index >= desired}
    replacing = bool([n for n in result.delete if n not in gone]
                     or [i for i in missing if i not in resize.new and started and not resuming]
                     or any(p.deleting and p.name not in gone for p in pods))
    if held.blocked:
        return _finish(result, "Pending", "Unschedulable", held.blocked, stamp, generation, pods)
    if replacing:
        return _finish(result, "Restarting", "ReplacingWorkers", st.get("lastError") or "replacing worker pods",
                       stamp, generation, pods)
    if ready >= desired:
        return _finish(result, "Running", "AllWorkersRunning", f"{ready} worker pods training", stamp, generation,
                       pods)
    unplaced = [f"{p.name}: {p.unschedulable}" for p in pods if p.unschedulable and not p.deleting]
    if ready >= spec.min_replicas and ((resize.active and st.get("phase") == "Running") or unplaced):
        return _finish(result, "Running", "MinWorkersRunning", f"{ready} of {desired} worker pods training"
                       + (f"; waiting for {'; '.join(unplaced)}" if unplaced else ""), stamp, generation, pods)
    if st.get("phase") == "Restarting":  # replacements created, not yet running
        return result
    return _finish(result, "Pending", "WaitingForWorkers", f"{ready}/{desired} worker pods running", stamp,
                   generation, pods)


_STATUS_KEYS = ("phase", "conditions", "startTime", "completionTime", "restartCount", "step", "lastCheckpoint",
                "lastError", "worldSize", "stoppedWorkers", "gangRetry", "loss", "tokensPerSecond",
                "lastCheckpointTime")
