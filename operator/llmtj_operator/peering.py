"""Several operator replicas, exactly one acting: kopf's peering.

Each replica keeps a record (identity, priority, lifetime) in a shared peering object and renews it every few
seconds; a replica that sees a live peer of higher priority pauses all its watches, handlers and timers. Priority
is the start time, oldest first, so a replica that restarts always joins as a standby and the one in charge is never
displaced by a newcomer. When the acting replica stops it withdraws its record (a handover at once); when it dies
its record expires after ``LIFETIME_SECONDS`` and the next oldest resumes, re-lists every job and reconciles: the
names it creates are deterministic and creates are idempotent, so a handover mid-change makes no duplicates.
"""

from __future__ import annotations

import os
import random
import socket
import time
from datetime import datetime, timedelta, timezone

KOPF_GROUP = "kopf.dev"
KOPF_VERSION = "v1"
CLUSTER_PLURAL = "clusterkopfpeerings"  # the operator watches every namespace
NAMESPACED_PLURAL = "kopfpeerings"  # the operator watches a list of namespaces: one object in each
LIFETIME_SECONDS = 10  # a dead replica's record counts this long: the failover time


def priority(now: float | None = None) -> int:
    """Higher for an older start (ms resolution), with a random last three digits against ties: peers of equal
    priority all pause (kopf's rule), which would leave nobody acting."""
    started_ms = int((time.time() if now is None else now) * 1000)
    return (10**13 - started_ms) * 1000 + random.randrange(1000)


def peering_object(name: str, namespace: str | None = None) -> dict:
    kind = "KopfPeering" if namespace else "ClusterKopfPeering"
    meta = {"name": name, "labels": {"app.kubernetes.io/part-of": "llm-training-operator"}}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": f"{KOPF_GROUP}/{KOPF_VERSION}", "kind": kind, "metadata": meta}


def acting(records: dict, identity: str, own_priority: int, now: datetime | None = None) -> bool:
    """Whether this replica acts, by kopf's rule over a peering object's status (identity -> {priority, lifetime,
    lastseen}): no other live record of a higher or equal priority (equal ones all pause)."""
    now = now or datetime.now(timezone.utc)
    for peer, rec in (records or {}).items():
        if peer == identity or not isinstance(rec, dict):
            continue
        try:
            seen = datetime.fromisoformat(str(rec["lastseen"]))
            if seen.tzinfo is None:
                seen = seen.replace(tzinfo=timezone.utc)
            alive = seen + timedelta(seconds=int(rec.get("lifetime", 60))) > now
            if alive and int(rec.get("priority", 0)) >= own_priority:
                return False
        except (KeyError, TypeError, ValueError):
            continue  # not a record kopf wrote
    return True


def own_identity() -> str:
    """This replica's name in the peering object: the pod's name (POD_ID), else host@pid."""
    return os.environ.get("POD_ID") or f"{socket.gethostname()}@{os.getpid()}"
