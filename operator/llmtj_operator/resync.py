"""The periodic resync: one loop for the whole operator, not a kopf timer per job.

Every ``RESYNC_SECONDS`` the acting replica lists the jobs it watches (one request), refreshes the cache with them
and queues a reconcile of each: deadlines,
TTLs, a failed reconcile retried, anything a missed watch event hid; every ``HEAL_SECONDS`` a job's existing children
are also re-applied (a Service deleted by hand comes back). A kopf timer would do this per job, but it makes kopf add
a finalizer to every job: a PATCH that races the operator's own status writes (kopf retries it on every conflict),
and a second one at deletion, which then waits for the operator. This loop needs neither. A standby replica skips
its turns: it reads the peering object and applies kopf's rule (``peering.acting``), as kopf's own watches do, and
sets or clears the ``acting`` flag by which the pod watch's triggers are let through.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from .cache import Cache
from .kube import Kube
from .peering import acting

log = logging.getLogger(__name__)
RESYNC_SECONDS = float(os.environ.get("LLMTJ_RESYNC_SECONDS", "5"))
HEAL_SECONDS = 60.0  # how often a job's existing children are re-applied too


class Resync:
    def __init__(self, kube: Callable[[], Kube], cache: Cache, reconcile: Callable[[str, str, bool], None],
                 last_pass: Callable[[str, str], float | None], active: threading.Event, *,
                 namespaces: list[str] | None, peering: str | None, identity: str, priority: int | None) -> None:
        """``reconcile``: queues one (namespace, name, heal); ``last_pass``: when the job's latest reconcile (for any
        trigger) began; ``active``: set while this replica acts; ``namespaces``: the watched ones (None: all);
        ``peering``: the peering object's name (None: alone)."""
        self.kube, self.cache, self.reconcile, self.last_pass, self.active = kube, cache, reconcile, last_pass, active
        self.namespaces, self.peering, self.identity, self.priority = namespaces, peering, identity, priority
        self.healed: dict[tuple[str, str], float] = {}
        self.stop = threading.Event()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="resync", daemon=True)
        thread.start()
        return thread

    def acting(self) -> bool:
        if self.peering is None or self.priority is None:
            return True
        kube = self.kube()
        return all(acting(kube.peering_records(self.peering, ns), self.identity, self.priority)
                   for ns in (self.namespaces or [None]))

    def run(self) -> None:
        while not self.stop.wait(RESYNC_SECONDS):
            try:
                self.tick()
            except Exception:  # the API server away (a restart): the next turn tries again
                log.exception("resync failed; next try in %.0f s", RESYNC_SECONDS)

    def tick(self) -> None:
        if not self.acting():
            self.active.clear()
            return
        self.active.set()
        jobs = []
        for body in self.kube().list_jobs(self.namespaces):
            self.cache.put_job(body)
            jobs.append((body["metadata"]["namespace"], body["metadata"]["name"]))
        now = time.monotonic()
        self.healed = {key: self.healed.get(key, now) for key in jobs}  # not at once: a new job's were just made
        for key in jobs:
            heal = now - self.healed[key] > HEAL_SECONDS
            recent = self.last_pass(*key)
            if not heal and recent is not None and now - recent < RESYNC_SECONDS:
                continue  # a watch event's pass just looked at it: in a burst, the events keep the jobs current
            if heal:
                self.healed[key] = now
            self.reconcile(*key, heal)
