"""kopf wiring: every trigger (the job, its pods, a timer) only schedules a reconcile of the job it concerns."""

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
RESYNC_SECONDS = float(os.environ.get("LLMTJ_RESYNC_SECONDS", "5"))
HEAL_SECONDS = 60.0  # how often the timer also re-applies existing children (a Service deleted by hand comes back)
DEFAULTS = JobDefaults()  # the cluster's job defaults; __main__ loads them from --job-defaults before kopf starts
_kube: Kube | None = None
_healed: dict[tuple[str, str], float] = {}


def kube() -> Kube:
    global _kube
    if _kube is None:
        load_config(os.environ.get("KUBECONFIG") or None)
        _kube = Kube()
    return _kube


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf keeps its bookkeeping in annotations: the status schema declares only the API's own fields.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 60
    settings.networking.error_backoffs = [1, 2, 5, 10]
    settings.peering.lifetime = LIFETIME_SECONDS  # with --peering: how soon a standby replaces a dead replica
    settings.peering.stealth = True  # no log line per keep-alive
    kube()


def _run(namespace: str | None, name: str | None, resync: bool = False) -> None:
    if namespace and name:
        reconcile(kube(), namespace, name, DEFAULTS, resync=resync)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def job_changed(namespace: str, name: str, **_: Any) -> None:
    _run(namespace, name)


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
def resync(namespace: str, name: str, **_: Any) -> None:
    """Deadlines, TTLs, children deleted by hand and anything a missed watch event hid."""
    now = time.monotonic()
    heal = now - _healed.get((namespace, name), 0.0) > HEAL_SECONDS
    if heal:
        _healed[(namespace, name)] = now
    _run(namespace, name, resync=heal)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def job_deleted(namespace: str, name: str, **_: Any) -> None:
    """Only forgets the job's bookkeeping (optional: no finalizer; the garbage collector removes the children)."""
    _healed.pop((namespace, name), None)
    forget(namespace, name)


@kopf.on.event("v1", "pods", labels={names.JOB_LABEL: kopf.PRESENT})
def pod_changed(namespace: str, labels: dict[str, str], type: str | None, **_: Any) -> None:
    if type is None:  # the initial listing: the jobs' own resume handlers cover it
        return
    _run(namespace, labels.get(names.JOB_LABEL))


@kopf.on.probe(id="reconciler")
def ready(**_: Any) -> bool:
    return _kube is not None
