"""The operator's Prometheus metrics, served on ``--metrics HOST:PORT`` (docs/metrics.md, "Operator").

Labels stay low-cardinality: namespace, phase, role, direction, reason; never a job's name (the workers' own
endpoints carry that). A standby replica (peering) reconciles nothing, so its counters stay at 0 and its job table
is empty: dashboards take ``max`` over the operator's pods for the jobs gauge and ``sum`` for the counters.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any

from prometheus_client import Counter, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily

disable_created_metrics()  # no *_created series: Prometheus does not use them, and they double the families
PREFIX = "llmtj_operator_"
RECONCILE = Histogram(PREFIX + "reconcile_duration_seconds", "Wall time of one reconcile pass of one job.",
                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf")))
POD_CREATIONS = Counter(PREFIX + "pod_creations", "Pods created, by role (worker, rendezvous).", ["namespace", "role"])
RESTARTS = Counter(PREFIX + "worker_restarts", "Worker pods replaced after a failure (each counts against the "
                   "job's backoffLimit).", ["namespace"])
SCALE_EVENTS = Counter(PREFIX + "scale_events", "Resizes started, by direction (up, down).", ["namespace", "direction"])
ERRORS = Counter(PREFIX + "reconcile_errors", "Reconcile passes that failed (reason: the exception's type) and jobs "
                 "refused (reason: the Failed condition's, e.g. InvalidSpec).", ["namespace", "reason"])

_phases: dict[tuple[str, str], str] = {}
_lock = threading.Lock()


def record_phase(namespace: str, name: str, phase: str | None) -> None:
    """The job's phase after a pass; None: the job is gone."""
    with _lock:
        if phase is None:
            _phases.pop((namespace, name), None)
        else:
            _phases[(namespace, name)] = phase


def record_events(namespace: str, events: list[tuple[str, str, str]]) -> None:
    """Counts what a pass's Events say: a failed worker replaced, a resize started."""
    for _kind, reason, _message in events:
        if reason == "WorkerFailed":
            RESTARTS.labels(namespace).inc()
        elif reason in ("ScalingUp", "ScalingDown"):
            SCALE_EVENTS.labels(namespace, reason.removeprefix("Scaling").lower()).inc()


class _Jobs:
    """``llmtj_operator_jobs{namespace, phase}``: the jobs this replica reconciled, counted at scrape time."""

    def collect(self) -> Iterator[Any]:
        family = GaugeMetricFamily(PREFIX + "jobs", "Jobs by phase (as of this replica's latest pass on each).",
                                   labels=["namespace", "phase"])
        with _lock:
            tally = Tally((ns, phase) for (ns, _), phase in _phases.items())
        for (namespace, phase), n in sorted(tally.items()):
            family.add_metric([namespace, phase], n)
        yield family


REGISTRY.register(_Jobs())


def serve(address: str) -> None:
    """``HOST:PORT``; the host is the pod's own address in the Deployment (as for the health endpoint)."""
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0")
