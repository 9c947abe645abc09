"""kopf wiring: every trigger (the job's and its pods' watch events) only runs a reconcile of the job it concerns;
the periodic resync is resync.py's loop."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import kopf

from . import names
from .api import GROUP, PLURAL, VERSION
from .defaults import JobDefaults
from .kube import Kube, load_config
from .peering import LIFETIME_SECONDS
from .reconcile import forget, reconcile

log = logging.getLogger(__name__)
# handler threads: a reconcile mostly waits on the API server, so a burst of new jobs goes faster with more of them
# than asyncio's default (CPUs + 4)
WORKERS = 16
DEFAULTS = JobDefaults()  # the cluster's job defaults; __main__ loads them from --job-defaults before kopf starts
_kube: Kube | None = None
_generations: dict[tuple[str, str], int | None] = {}  # the generation each job was last reconciled for, by event
_passed: dict[tuple[str, str], float] = {}


def kube() -> Kube:
    global _kube
    if _kube is None:
        load_config(os.environ.get("KUBECONFIG") or None)
        _kube = Kube()
    return _kube


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
    settings.execution.max_workers = WORKERS
    kube()


def run(namespace: str | None, name: str | None, resync: bool = False) -> None:
    """Reconcile one job; ``resync``: also re-apply its existing children."""
    if namespace and name:
        _passed[(namespace, name)] = time.monotonic()
        reconcile(kube(), namespace, name, DEFAULTS, resync=resync)


def last_pass(namespace: str, name: str) -> float | None:
    """When a reconcile of the job last began (monotonic seconds), if one did."""
    return _passed.get((namespace, name))


@kopf.on.event(GROUP, VERSION, PLURAL)
def job_event(type: str | None, body: dict[str, Any], namespace: str, name: str, **_: Any) -> None:
    """The job's raw watch events, so that kopf writes no bookkeeping of its own on the job (no progress or
    diff-base annotations: PATCHes and extra events per job). What starts a reconcile: the listing at start (type
    None; also after a standby takes over), a new job, a new generation (the spec changed: an edit, a scale), a
    deletion begun. The status writes' own events do not. A reconcile that fails is retried by the resync loop."""
    key = (namespace, name)
    if type == "DELETED":
        _generations.pop(key, None)
        _passed.pop(key, None)
        forget(namespace, name)
        return
    meta = body.get("metadata") or {}
    if type is None or type == "ADDED" or _generations.get(key) != meta.get("generation") \
            or meta.get("deletionTimestamp"):
        _generations[key] = meta.get("generation")
        run(namespace, name)


@kopf.on.event("v1", "pods", labels={names.JOB_LABEL: kopf.PRESENT})
def pod_changed(namespace: str, labels: dict[str, str], type: str | None, **_: Any) -> None:
    if type is None:  # the initial listing: the jobs' own listing covers it
        return
    run(namespace, labels.get(names.JOB_LABEL))


@kopf.on.probe(id="reconciler")
def ready(**_: Any) -> bool:
    return _kube is not None
