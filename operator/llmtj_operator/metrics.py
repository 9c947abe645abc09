"""The operator's Prometheus metrics, served on ``--metrics HOST:PORT`` (docs/metrics.md, "Operator").

Labels stay low-cardinality: namespace, phase, role, direction, reason. Only the two per-job gauges carry the job's
name (one series per existing job, as kube-state-metrics has per Job): a failed job's pods are gone, so alerting on
it needs the operator's view. A standby replica (peering) reconciles nothing, so its counters stay at 0 and its job
table is empty: dashboards and alerts take ``max`` over the operator's pods for gauges and ``sum`` for counters.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics, start_http_server
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

QUEUE_DEPTH = Gauge(PREFIX + "reconcile_queue_depth", "Jobs owed a reconcile pass: waiting for a worker thread, or "
                    "triggered again while their pass runs (each job counts once).")

_phases: dict[tuple[str, str], tuple[str, int]] = {}  # (namespace, job) -> (phase, restartCount)
_lock = threading.Lock()


def record_phase(namespace: str, name: str, phase: str | None, restarts: int | None = None) -> None:
    """The job's phase and restart count after a pass (None: unchanged); phase None: the job is gone."""
    with _lock:
        if phase is None:
            _phases.pop((namespace, name), None)
        else:
            before = _phases.get((namespace, name), ("", 0))[1]
            _phases[(namespace, name)] = (phase, before if restarts is None else restarts)


def record_events(namespace: str, events: list[tuple[str, str, str]]) -> None:
    """Counts what a pass's Events say: a failed worker replaced, a resize started."""
    for _kind, reason, _message in events:
        if reason == "WorkerFailed":
            RESTARTS.labels(namespace).inc()
        elif reason in ("ScalingUp", "ScalingDown"):
            SCALE_EVENTS.labels(namespace, reason.removeprefix("Scaling").lower()).inc()


class _Jobs:
    """The jobs this replica reconciled, at scrape time: ``llmtj_operator_jobs{namespace, phase}`` (counts),
    ``llmtj_operator_job_phase{namespace, job, phase}`` (1, the current phase) and ``llmtj_operator_job_restarts``."""

    def collect(self) -> Iterator[Any]:
        family = GaugeMetricFamily(PREFIX + "jobs", "Jobs by phase (as of this replica's latest pass on each).",
                                   labels=["namespace", "phase"])
        phase = GaugeMetricFamily(PREFIX + "job_phase", "1 for each job, labelled with its phase.",
                                  labels=["namespace", "job", "phase"])
        restarts = GaugeMetricFamily(PREFIX + "job_restarts", "The job's status.restartCount.",
                                     labels=["namespace", "job"])
        with _lock:
            jobs = sorted(_phases.items())
        for (namespace, p), n in sorted(Tally((ns, p) for (ns, _), (p, _) in jobs).items()):
            family.add_metric([namespace, p], n)
        for (namespace, name), (p, count) in jobs:
            phase.add_metric([namespace, name, p], 1)
            restarts.add_metric([namespace, name], count)
        yield from (family, phase, restarts)


REGISTRY.register(_Jobs())


def serve(address: str) -> None:
    """``HOST:PORT``; the host is the pod's own address in the Deployment (as for the health endpoint)."""
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0")
