"""Gang start: a job trains only with at least minReplicas worker pods placed at once, so it never holds some GPUs
while it waits, without end, for the rest.

The stock scheduler places pods one at a time. When it reports that it cannot place a worker (PodScheduled False,
reason Unschedulable) while some but fewer than minReplicas are placed, the operator releases the job: every live
worker is deleted (the placed ones give their GPUs back) and comes back behind a scheduling gate, which the scheduler
skips. After a backoff (10 s doubling to 5 min) the gates are lifted on all of them together and the scheduler tries
again. When none can be placed, none holds anything: they stay with the scheduler. Either way the job stays Pending
with a ``Scheduled`` condition quoting the scheduler. A released pod is not a failure: its replacement is not
counted against backoffLimit. A gang scheduler (Volcano, scheduler-plugins' coscheduling)
never places part of a group, so under one this never fires.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .clock import parse, timestamp
from .pods import PodView

BACKOFF_SECONDS = (10, 20, 40, 80, 160, 300)
# The scheduler's words for a pod that waits for its volume, not for capacity: a claim of an Immediate storage class
# the provisioner has not bound yet (the checkpoint claim, made just before the pods). The scheduler tries such a pod
# again as soon as the claim is bound, so releasing the gang for it would only cost the backoff.
WAITING_FOR_VOLUME = ("unbound immediate PersistentVolumeClaims",)


@dataclass(frozen=True)
class Gang:
    release: list[PodView] = field(default_factory=list)  # live workers to delete: the gang cannot be placed
    ungate: list[str] = field(default_factory=list)  # gated workers to hand to the scheduler now
    gate_new: bool = False  # create missing workers behind the gate (a retry is pending)
    blocked: str = ""  # why the job cannot start now; "" when nothing holds it back
    state: dict[str, Any] = field(default_factory=dict)  # status.gangRetry: attempts, retryAt, reason


def gang(min_replicas: int, pods: list[PodView], state: dict[str, Any], now: datetime) -> Gang:
    live = [p for p in pods if not p.terminal and not p.deleting]
    placed = [p for p in live if p.node]
    gated = [p.name for p in live if p.gated]
    if len(placed) >= min_replicas:  # enough to train: the rest join when they can (scale-up rules)
        return Gang(ungate=gated)
    offered = [p for p in live if not p.gated]
    refused = [p for p in offered if not p.node and p.unschedulable and not _waiting_for_volume(p)]
    attempts = int(state.get("attempts") or 0)
    judged = refused and all(p.node or p in refused for p in offered)  # the scheduler has judged every offered pod
    if judged and not placed:  # nothing held, nothing to release: the scheduler places them as capacity frees up
        return Gang(state=state, blocked=f"the scheduler cannot place any of the {min_replicas} worker pods the job "
                                         f"needs at least (elastic.minReplicas): {refused[0].unschedulable}")
    if judged:
        delay = BACKOFF_SECONDS[min(attempts, len(BACKOFF_SECONDS) - 1)]
        state = {"attempts": attempts + 1, "retryAt": timestamp(now + timedelta(seconds=delay)),
                 "reason": refused[0].unschedulable}
        return Gang(release=live, gate_new=True, state=state, blocked=_why(min_replicas, len(placed), state))
    retry_at = parse(state.get("retryAt"))
    if retry_at is not None and now < retry_at:
        return Gang(gate_new=True, state=state, blocked=_why(min_replicas, None, state))
    return Gang(ungate=gated, state=state)


def _waiting_for_volume(pod: PodView) -> bool:
    return any(words in pod.unschedulable for words in WAITING_FOR_VOLUME)


def _why(min_replicas: int, placed: int | None, state: dict[str, Any]) -> str:
    got = f" (only {placed} could)" if placed is not None else ""
    return (f"the scheduler cannot place the {min_replicas} worker pods the job needs at least (elastic.minReplicas)"
            f"{got}: {state.get('reason')}; its pods are released so that they hold no GPUs, next try at "
            f"{state.get('retryAt')}")
