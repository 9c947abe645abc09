"""The reconcile decision, pure: spec, last status and worker pods in; what to do and the new status out.

Restarts are counted where they cannot be lost or counted twice: a replacement pod carries the job's restart count
in an annotation, so an operator killed between creating a pod and writing the status recovers the count from the
pods (server-side state is the truth). The failure itself is not counted, the replacement is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import conditions as cond
from . import names
from .api import JobSpec
from .pods import PodView
from .scaling import scale

TERMINAL = ("Succeeded", "Failed")


@dataclass
class Plan:
    status: dict[str, Any]
    create: list[tuple[int, int]] = field(default_factory=list)  # (index, restart count for its annotation)
    delete: list[str] = field(default_factory=list)  # pod names
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


def timestamp(now: datetime) -> str:
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


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
    if phase in TERMINAL:
        st.setdefault("completionTime", now)
        plan.create = []  # nothing new for a finished job, also what this pass had planned before it failed
        plan.delete = [p.name for p in pods if not p.terminal and not p.deleting]
    if old_phase != phase:
        kind = "Warning" if phase == "Failed" else "Normal"
        plan.events.append((kind, reason, message or f"job is {phase}"))
    return plan


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
        return result
    if spec.suspend:
        result.delete = [p.name for p in pods if not p.deleting]
        return _finish(result, "Suspended", "JobSuspended", "spec.suspend is true: pods stopped, checkpoints kept",
                       stamp, generation, pods)
    started = _parse(st.get("startTime"))
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
    if stopped or st.get("stoppedWorkers"):
        st["stoppedWorkers"] = sorted(stopped)
    if not started and (result.create or pods):  # pods may predate this operator (restarted mid-creation)
        st["startTime"] = stamp
    # Pods leaving or joining through a resize are not a restart: only the job's own indices count here.
    gone = {p.name for p in resize.surplus} | {p.name for p in pods if p.index >= desired}
    replacing = bool([n for n in result.delete if n not in gone]
                     or [i for i in missing if i not in resize.new and started and not resuming]
                     or any(p.deleting and p.name not in gone for p in pods))
    if replacing:
        return _finish(result, "Restarting", "ReplacingWorkers", st.get("lastError") or "replacing worker pods",
                       stamp, generation, pods)
    if ready >= desired or (resize.active and st.get("phase") == "Running" and ready >= spec.min_replicas):
        return _finish(result, "Running", "AllWorkersRunning", f"{ready} worker pods training", stamp, generation,
                       pods)
    if st.get("phase") == "Restarting":  # replacements created, not yet running
        return result
    return _finish(result, "Pending", "WaitingForWorkers", f"{ready}/{desired} worker pods running", stamp,
                   generation, pods)


_STATUS_KEYS = ("phase", "conditions", "startTime", "completionTime", "restartCount", "step", "lastCheckpoint",
                "lastError", "worldSize", "stoppedWorkers")
