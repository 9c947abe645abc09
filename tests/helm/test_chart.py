"""The Helm chart (helm/llm-training-operator/), first part: CRD, dashboards and the Prometheus Operator's objects.

helm lint --strict; helm template for several value sets, each rendered object accepted by the test bed's API server
(server-side dry run, the Prometheus Operator's real CRDs installed); the monitors only where that API is served, and
a clear failure where one is required without it; wrong value types refused by values.schema.json with their path;
the chart's CRD and dashboards the same as the plain manifests'."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..monitoring import prometheus_operator
from ..monitoring.prometheus import RULES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))
from build import bin_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "llm-training-operator"
NS = "llmtj-system"
MONITORING = "monitoring.coreos.com/v1"

pytestmark = [pytest.mark.cluster]


@pytest.fixture(scope="module")
def helm(cluster, tmp_path_factory):
    """``helm ARGS``, from the test bed's build (the cluster's fixture made it), on the test bed, with a home of its
    own."""
    home = tmp_path_factory.mktemp("helm-home")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([str(bin_dir() / "helm"), *args], capture_output=True, text=True,
                             env={"KUBECONFIG": str(cluster.kubeconfig), "HOME": str(home), "PATH": "/usr/bin:/bin"})
        if check:
            assert out.returncode == 0, out.stderr
        return out

    return run


def render(helm, *args: str) -> list[dict]:
    out = helm("template", "llmtj", str(CHART), "-n", NS, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def kinds(objects: list[dict]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def test_lint_is_clean(helm):
    out = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in out.stdout, out.stdout


def test_monitors_render_only_where_the_prometheus_operator_api_is_served(helm):
    assert kinds(render(helm)) == ["ConfigMap"] * 3
    with_api = render(helm, "--api-versions", MONITORING)
    assert kinds(with_api) == ["ConfigMap"] * 3 + ["PodMonitor", "PrometheusRule", "ServiceMonitor"]
    rule = next(o for o in with_api if o["kind"] == "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())  # the rule file, as a plain Prometheus loads it
    assert {o["metadata"]["labels"]["release"] for o in with_api if o["kind"] != "ConfigMap"} == \
        {"kube-prometheus-stack"}
    mine = render(helm, "--api-versions", MONITORING, "--set", "monitoring.release=prom",
                  "--set", "monitoring.podMonitor=false", "--set", "dashboards.enabled=false")
    assert kinds(mine) == ["PrometheusRule", "ServiceMonitor"]
    assert {o["metadata"]["labels"]["release"] for o in mine} == {"prom"}


def test_a_monitor_required_without_the_api_fails_the_render_with_the_fix(helm):
    out = helm("template", "llmtj", str(CHART), "--set", "monitoring.serviceMonitor=true", check=False)
    assert out.returncode != 0
    assert "monitoring.serviceMonitor=true, but the cluster does not serve monitoring.coreos.com/v1" in out.stderr
    assert "set monitoring.serviceMonitor to auto or false" in out.stderr


@pytest.mark.parametrize("value, path", [("dashboards.enabled=maybe", "/dashboards/enabled"),
                                         ("monitoring.podMonitor=sometimes", "/monitoring/podMonitor"),
                                         ("monitoring.interval=often", "/monitoring/interval"),
                                         ("monitoring.nonsense=1", "/monitoring")])
def test_wrong_values_are_refused_by_the_schema_with_their_path(helm, value, path):
    out = helm("template", "llmtj", str(CHART), "--set", value, check=False)
    assert out.returncode != 0 and f"at '{path}'" in out.stderr, out.stderr


def test_the_chart_s_crd_and_dashboards_are_the_plain_manifests(helm):
    chart_crd = yaml.safe_load((CHART / "crds" / "llmtrainingjobs.llmtj.dev.yaml").read_text())
    assert chart_crd == yaml.safe_load((ROOT / "crds" / "llmtrainingjobs.llmtj.dev.yaml").read_text())
    plain = {m["metadata"]["name"]: m["data"]
             for m in yaml.safe_load_all((ROOT / "manifests" / "04-dashboards.yaml").read_text())}
    assert {o["metadata"]["name"]: o["data"] for o in render(helm)} == plain


def test_every_rendered_object_passes_the_api_server_s_checks(helm, cluster):
    cluster.kubectl("apply", "-f", str(ROOT / "manifests" / "01-namespace.yaml"), check=True)
    for crd in prometheus_operator.crds():
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd), check=True)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/podmonitors.monitoring.coreos.com",
                     "crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com",
                     check=True)
    for values in ([], ["--set", "monitoring.release=prom", "--set", "monitoring.interval=15s"]):
        objects = render(helm, "--api-versions", MONITORING, *values)
        out = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(objects))
        assert out.returncode == 0 and out.stdout.count("(server dry run)") == len(objects) == 6, out.stderr
