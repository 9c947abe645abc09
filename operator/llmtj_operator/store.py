"""The rendezvous store pod's lifecycle, decided from what the cluster shows (pure).

- An active job (not finished, not suspended) has one store pod; a store that ended is replaced.
- A fresh start (workers about to be created while none is live: after every worker failed) gets a new store too:
  torchrun closes a rendezvous for good when an agent gives up (its max restarts used), and a new store forgets
  that. Survivors of a partial loss keep the store they are using.
- A finished or suspended job has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StoreAction:
    delete: bool = False
    create: bool = False


def _phase(pod: dict[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def _deleting(pod: dict[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def store_action(active: bool, store: dict[str, Any] | None, workers_live: bool, creating_workers: bool
                 ) -> StoreAction:
    if store is None:
        return StoreAction(create=active)
    if _deleting(store):
        return StoreAction()  # its deletion event brings the next reconcile, which creates the new one
    if not active or _phase(store) in ("Succeeded", "Failed"):
        return StoreAction(delete=True)
    if creating_workers and not workers_live:
        return StoreAction(delete=True)
    return StoreAction()
