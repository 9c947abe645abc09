"""Observability out of the box, against a real Prometheus (Debian's, tests/monitoring/prometheus.py) that scrapes
the test bed's pods by their ``prometheus.io/*`` annotations and loads the chart's alert rules: every dashboard
panel's query and every alert's metrics return series for a running job and the operator; a forced restart loop
fires its alerts; the Prometheus Operator's objects (manifests/monitoring/) pass the API server's checks against
that operator's real CRDs.

GPU series (NVML, DCGM) cannot exist on a machine without a GPU: their queries must be valid PromQL here, and return
series only where a GPU is."""

from __future__ import annotations

import re

import pytest
import yaml

from ..monitoring import prometheus_operator
from ..monitoring.dashboards import GPU_ONLY, boards, fill, queries, variable_queries
from ..monitoring.prometheus import RULES, Prometheus
from .conftest import MANIFESTS
from .jobs import apply, example, get_job, pod_logs, poll, wait_phase, workers

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture
def prometheus(operator, tmp_path):
    p = Prometheus(tmp_path / "prometheus", lambda: (operator.get("/api/v1/pods") or {}).get("items", []))
    yield p
    p.stop()


def _series(prom: Prometheus, expr: str, timeout: float = 60) -> list[dict]:
    """The query's series, waiting for them (a re-forming world pauses the rates for a few seconds)."""
    found: list[dict] = []

    def check() -> bool:
        found[:] = prom.query(expr)
        return bool(found)

    poll(check, timeout=timeout, interval=1.0)
    return found


def _firing(prom: Prometheus, namespace: str) -> set[tuple[str, str]]:
    return {(a["labels"]["alertname"], a["labels"].get("job", "")) for a in prom.alerts()
            if a["state"] == "firing" and a["labels"].get("namespace") == namespace}


def test_every_panel_and_alert_has_data_and_a_restart_loop_fires(operator, namespace, prometheus):
    for crd in prometheus_operator.crds():  # as a cluster with the Prometheus Operator has them
        operator.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd), check=True)
    operator.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/podmonitors.monitoring.coreos.com",
                     "crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com",
                     check=True)
    applied = operator.kubectl("apply", "-f", str(MANIFESTS / "monitoring"), check=True).stdout
    assert applied.count("created") + applied.count("unchanged") + applied.count("configured") == 3, applied

    watched = example("watched", rendezvousPort=29427, env=[{"name": "DLT_FAULT_STEP_SLEEP_S", "value": "0.05"}])
    watched["spec"]["config"]["training"].update(max_steps=100000, eval_interval=20)
    watched["spec"]["config"]["logging"].update(interval=2, peak_flops=1.0e11)  # MFU needs the device's peak
    watched["spec"]["config"]["checkpoint"] = {"every_n_steps": 20}
    # every start dies at step 2, before any checkpoint: replaced until backoffLimit is used up
    looping = example("looping", replicas=1, elastic={"minReplicas": 1, "maxReplicas": 1, "maxRestarts": 0},
                      rendezvousPort=29428, backoffLimit=3, env=[{"name": "DLT_FAULT_KILL_AT_STEP", "value": "2"}])
    refused = example("refused", configFrom={"configMapKeyRef": {"name": "missing", "key": "config.yaml"}})
    refused["spec"].pop("config")
    for job in (watched, looping, refused):
        apply(operator, namespace, job)

    # the worker pods' endpoints, scraped through pod discovery: a checkpoint and an evaluation under way
    job = f'namespace="{namespace}", job="watched"'
    _series(prometheus, f"llmtj_checkpoint_step{{{job}}} > 0", timeout=240)
    _series(prometheus, f"llmtj_validation_loss{{{job}}}")
    operator.kubectl("scale", "llmtj/watched", "-n", namespace, "--replicas=1", check=True)  # a resize to count

    # the restart loop: replaced 3 times, then Failed; its alerts fire (the operator's gauges: its pods are gone)
    status = wait_phase(operator, namespace, "looping", ("Succeeded", "Failed"), timeout=300)["status"]
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert status["phase"] == "Failed" and failed["reason"] == "BackoffLimitExceeded", status
    assert failed["message"].startswith("3 restarts used up backoffLimit=3; last error: looping-worker-0: "), failed
    assert status["restartCount"] == 3 and "exit code" in failed["message"], failed
    want = {("LLMTrainingJobFailed", "looping"), ("LLMTrainingJobRestartLoop", "looping")}
    assert poll(lambda: want <= _firing(prometheus, namespace), timeout=60, interval=1.0), prometheus.alerts()
    assert {name for name, job in _firing(prometheus, namespace) if job == "watched"} == set(), prometheus.alerts()
    assert not [p for p in workers(operator, namespace) if p["metadata"]["name"].startswith("looping-")
                and p["status"].get("phase") not in ("Succeeded", "Failed")]  # nothing started after the failure

    # every panel of every dashboard, with its variables set as Grafana sets them for this namespace
    values = {"namespace": namespace, "job": "watched", "pod": ".*"}
    empty = []
    for name, board in boards().items():
        for variable, match, label in variable_queries(board):
            if GPU_ONLY.search(match or ""):
                continue
            selector = fill(match, values) if match else None
            expected = values[label] if label in ("namespace", "job") else None
            got = prometheus.label_values(label, selector)
            if (expected and expected not in got) or not got:
                empty.append(f"{name}: variable {variable} = label_values({match}, {label}) -> {got}")
        for title, expr in queries(board):
            filled = fill(expr, values)
            if GPU_ONLY.search(expr):
                prometheus.query(filled)  # valid PromQL; series only where GPUs are
            elif not _series(prometheus, filled, timeout=30):
                empty.append(f"{name}/{title}: {filled}")
    assert not empty, "queries without series:\n" + "\n".join(empty) + "\n" + pod_logs(operator, namespace)[-3000:]

    # every alert: valid, and each metric it reads has series here (GPU ones only where GPUs are)
    for rule in (r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]):
        prometheus.query(rule["expr"])
        for metric in set(re.findall(r"\bllmtj_\w+", rule["expr"])) - set(GPU_ONLY.findall(rule["expr"])):
            assert prometheus.query(f'{metric}{{namespace="{namespace}"}}'), f"{rule['alert']}: no {metric}"
    # the endpoints' own labels were kept (honor_labels): the job is the training job, not the scrape job
    steps = prometheus.query(f'llmtj_step{{namespace="{namespace}"}}')
    assert {s["metric"]["job"] for s in steps} == {"watched"} and all(s["metric"]["pod"] for s in steps), steps
    ready = get_job(operator, namespace, "watched")["status"]
    assert ready["phase"] == "Running", ready
