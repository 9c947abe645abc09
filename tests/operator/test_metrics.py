"""The operator's metrics: jobs by phase as the passes leave them, and what a pass's Events count."""

from __future__ import annotations

from prometheus_client import REGISTRY

from llmtj_operator import metrics


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_jobs_by_phase_follow_the_latest_pass_and_forget_deleted_jobs():
    metrics.record_phase("ns-m", "a", "Running")
    metrics.record_phase("ns-m", "b", "Running")
    metrics.record_phase("ns-m", "c", "Pending")
    assert _value("llmtj_operator_jobs", namespace="ns-m", phase="Running") == 2
    metrics.record_phase("ns-m", "a", "Succeeded")
    metrics.record_phase("ns-m", "b", None)  # deleted
    assert _value("llmtj_operator_jobs", namespace="ns-m", phase="Running") == 0
    assert _value("llmtj_operator_jobs", namespace="ns-m", phase="Succeeded") == 1
    assert _value("llmtj_operator_jobs", namespace="ns-m", phase="Pending") == 1


def test_each_job_has_its_phase_and_restarts_until_it_is_deleted():
    metrics.record_phase("ns-j", "a", "Running", 0)
    metrics.record_phase("ns-j", "a", "Restarting", 2)
    assert _value("llmtj_operator_job_phase", namespace="ns-j", job="a", phase="Restarting") == 1
    assert REGISTRY.get_sample_value("llmtj_operator_job_phase", {"namespace": "ns-j", "job": "a",
                                                                  "phase": "Running"}) is None  # one series a job
    assert _value("llmtj_operator_job_restarts", namespace="ns-j", job="a") == 2
    metrics.record_phase("ns-j", "a", "Failed")  # a refused spec: the count stays
    assert _value("llmtj_operator_job_restarts", namespace="ns-j", job="a") == 2
    metrics.record_phase("ns-j", "a", None)
    assert REGISTRY.get_sample_value("llmtj_operator_job_restarts", {"namespace": "ns-j", "job": "a"}) is None


def test_events_count_restarts_and_resizes():
    series = [("llmtj_operator_worker_restarts_total", {}), ("llmtj_operator_scale_events_total", {"direction": "up"}),
              ("llmtj_operator_scale_events_total", {"direction": "down"})]
    before = [_value(name, namespace="ns-e", **extra) for name, extra in series]
    metrics.record_events("ns-e", [("Warning", "WorkerFailed", "x-worker-1 failed"), ("Normal", "ScalingUp", "2 -> 3"),
                                   ("Normal", "WorkerStopped", "not a failure"), ("Normal", "ScalingDown", "3 -> 1")])
    assert [_value(name, namespace="ns-e", **extra) for name, extra in series] == [b + 1 for b in before]
