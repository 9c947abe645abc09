"""The operator's runtime: kopf's wiring, the cache, the pod watch and the reconcile queue.

kopf delivers the jobs' watch events (and, with --peering, decides which replica acts); the pods' events come from
informer.py; both fill the cache. Every trigger only adds the job to the queue (workqueue.py), whose workers run
reconcile.py's pass; the periodic resync is resync.py's loop.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Hashable
from typing import Any

import kopf

from . import metrics
from .api import GROUP, PLURAL, VERSION
from .cache import Cache, Key
from .defaults import JobDefaults
from .informer import PodInformer
from .kube import Kube, load_config
from .peering import LIFETIME_SECONDS
from .reconcile import forget, reconcile
from .workqueue import WorkQueue

log = logging.getLogger(__name__)
# reconcile threads: a pass mostly waits on the API server, so a burst of new jobs goes faster with more of them
WORKERS = 16
DEFAULTS = JobDefaults()  # the cluster's job defaults; __main__ loads them from --job-defaults before kopf starts
CACHE = Cache()
ACTING = threading.Event()  # this replica acts: always when alone; with peering, while kopf's rule says so
_kube: Kube | None = None
_generations: dict[Key, int | None] = {}  # the generation each job was last queued for by its own event
_passed: dict[Key, float] = {}


def kube() -> Kube:
    global _kube
    if _kube is None:
        load_config(os.environ.get("KUBECONFIG") or None)
        _kube = Kube()
    return _kube


def _handle(key: Hashable, heal: bool) -> None:
    namespace, name = key  # type: ignore[misc]
    _passed[(namespace, name)] = time.monotonic()
    reconcile(kube(), CACHE, namespace, name, DEFAULTS, resync=heal)


QUEUE = WorkQueue(_handle, WORKERS)


def start(namespaces: list[str] | None, peering: bool) -> None:
    """Start the reconcile workers and the pod watches (one per namespace, or one for all)."""
    kube()  # the client, before any thread wants it
    if not peering:
        ACTING.set()
    metrics.QUEUE_DEPTH.set_function(QUEUE.pending)
    QUEUE.start()
    for namespace in namespaces or [None]:
        PodInformer(kube, CACHE, namespace, pods_changed).start()


def run(namespace: str | None, name: str | None, resync: bool = False) -> None:
    """Queue a reconcile of one job; ``resync``: its pass also re-applies the children that exist."""
    if namespace and name:
        QUEUE.add((namespace, name), resync)


def pods_changed(key: Key) -> None:
    """A pod of the job changed (the pod watch); a standby replica keeps its cache current and nothing more."""
    if ACTING.is_set():
        QUEUE.add(key)


def last_pass(namespace: str, name: str) -> float | None:
    """When a reconcile of the job last began (monotonic seconds), if one did."""
    return _passed.get((namespace, name))


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # where kopf would keep bookkeeping (the raw-event handlers need none, and no job gets a finalizer): annotations,
    # as the status schema declares only the API's own fields
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 60
    settings.networking.error_backoffs = [1, 2, 5, 10]
    settings.peering.lifetime = LIFETIME_SECONDS  # with --peering: how soon a standby replaces a dead replica
    settings.peering.stealth = True  # no log line per keep-alive
    kube()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def job_event(type: str | None, event: dict[str, Any], namespace: str, name: str, **_: Any) -> None:
    """The job's raw watch events, so that kopf writes no bookkeeping of its own on the job (no progress or
    diff-base annotations: PATCHes and extra events per job). Each one updates the cache. What queues a reconcile:
    the listing at start (type None; also after a standby takes over), a new job, a new generation (the spec changed:
    an edit, a scale), a deletion begun. The status writes' own events do not. kopf delivers these only to the
    replica that acts. Cheap and non-blocking, so it runs on kopf's event loop, not in a thread."""
    ACTING.set()
    key, job = (namespace, name), event["object"]
    if type == "DELETED":
        CACHE.drop_job(job)
        _generations.pop(key, None)
        _passed.pop(key, None)
        forget(namespace, name)
        return
    CACHE.put_job(job)
    meta = job.get("metadata") or {}
    if type is None or type == "ADDED" or _generations.get(key) != meta.get("generation") \
            or meta.get("deletionTimestamp"):
        _generations[key] = meta.get("generation")
        run(namespace, name)


@kopf.on.probe(id="reconciler")
def ready(**_: Any) -> bool:
    return _kube is not None
