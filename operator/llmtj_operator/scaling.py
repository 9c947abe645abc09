"""Resizing a running job (``kubectl scale``, an HPA): which pods go, which indices are new, the Scaling condition.

Scale-down removes the highest indices (pods at index >= replicas), deleted with their grace period: their workers
save a checkpoint on SIGTERM and the others re-form without them (torchrun). Scale-up creates the new indices, which
join at the next rendezvous; until they run, the job keeps training at the size it has and the condition says why.
Neither counts against backoffLimit. The size a change started from is the last status's ``desiredReplicas``.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import conditions as cond
from .pods import PodView


@dataclass(frozen=True)
class Scale:
    surplus: list[PodView]  # live pods above the new size: removed gracefully
    new: set[int]  # indices the job never had before this change: created without counting a restart
    active: bool  # a change is under way (the Scaling condition is True)
    reason: str
    message: str


def scale(desired: int, previous: int | None, started: bool, pods: list[PodView], ready: int,
          conditions: list[dict]) -> Scale:
    surplus = [p for p in pods if p.index >= desired and not p.deleting and not p.terminal]
    leaving = [p for p in pods if p.index >= desired and not p.terminal]
    new = set(range(previous, desired)) if started and previous is not None and previous < desired else set()
    changed = started and previous is not None and previous != desired
    under_way = changed or (cond.is_true(conditions, "Scaling") and (ready != desired or bool(leaving)))
    if not under_way:
        return Scale(surplus, new, False, "Stable", f"{ready} of {desired} worker pods training")
    if leaving or (changed and desired < (previous or 0)):
        names = ", ".join(p.name for p in leaving) or "none left"
        return Scale(surplus, new, True, "ScalingDown", f"removing worker pods above {desired} ({names}); the "
                     "others re-form from the checkpoint they save on the way out")
    waiting = [p for p in pods if p.index < desired and not (p.phase == "Running" and p.ready)]
    unschedulable = [f"{p.name}: {p.unschedulable}" for p in waiting if p.unschedulable]
    if unschedulable:
        return Scale(surplus, new, True, "WaitingForPods", f"training goes on with {ready} worker pods while "
                     f"{'; '.join(unschedulable)}")
    return Scale(surplus, new, True, "ScalingUp", f"{ready} of {desired} worker pods running; the new ones join "
                 "at the next rendezvous")
