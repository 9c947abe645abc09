"""The Helm chart (helm/llm-training-operator/), rendered: what each value set makes.

helm lint --strict; helm template for several value sets, each rendered object accepted by the test bed's API server
(server-side dry run, the Prometheus Operator's real CRDs installed); the monitors only where that API is served; a
combination that cannot work fails the render with the fix; wrong value types refused by values.schema.json with
their path; the plain manifests are the chart rendered. Installing it for real: test_install.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from ..monitoring import prometheus_operator
from ..monitoring.dashboards import boards
from ..monitoring.prometheus import RULES
from .conftest import CHART, ROOT, render

sys.path.insert(0, str(ROOT / "tests" / "cluster"))
from build import bin_dir  # noqa: E402

NS = "llmtj-system"
MONITORING = "monitoring.coreos.com/v1"
MONITORS = ("PodMonitor", "PrometheusRule", "ServiceMonitor")

pytestmark = [pytest.mark.cluster]


def kinds(objects: list[dict]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def monitors(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] in MONITORS]


def test_lint_is_clean(helm):
    out = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in out.stdout, out.stdout


def test_the_default_install_is_the_ha_operator_cluster_wide(helm):
    objects = render(helm)
    assert kinds(objects) == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "ConfigMap", "ConfigMap", "ConfigMap",
                              "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"]
    deploy = next(o for o in objects if o["kind"] == "Deployment")
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert {"livenessProbe", "readinessProbe", "resources"} <= container.keys()
    assert {"--all-namespaces", "--peering=llmtj-llm-training-operator"} <= set(container["command"])
    version = re.search(r'^version = "(.+)"', (ROOT / "operator" / "pyproject.toml").read_text(), re.M)[1]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == version and container["image"].endswith(f"/operator:{version}")
    defaults = yaml.safe_load(next(o for o in objects if o["metadata"]["name"].endswith("-job-defaults"))["data"]
                              ["job-defaults.yaml"])
    assert defaults["image"].endswith(f"/trainer:{version}")
    assert defaults["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_watched_namespaces_get_a_role_each_and_the_cluster_only_discovery(helm):
    objects = render(helm, "--set", "operator.watchNamespaces={team-a,team-b}", "--set", "operator.replicas=1")
    roles = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "Role"}
    assert sorted(roles) == ["team-a", "team-b"] and kinds(objects).count("RoleBinding") == 2
    cluster_role = next(o for o in objects if o["kind"] == "ClusterRole")
    assert {r for rule in cluster_role["rules"] for r in rule["resources"]} == {"customresourcedefinitions", "nodes"}
    command = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0][
        "command"]
    assert "--namespace=team-a" in command and "--namespace=team-b" in command and "--all-namespaces" not in command
    assert "PodDisruptionBudget" not in kinds(objects)  # one replica: a budget of one would block every drain


def test_changed_job_defaults_roll_the_operator(helm):
    def checksum(*args: str) -> str:
        deploy = next(o for o in render(helm, *args) if o["kind"] == "Deployment")
        return deploy["spec"]["template"]["metadata"]["annotations"]["checksum/job-defaults"]

    assert checksum() == checksum("--set", "operator.verbose=false")
    assert checksum() != checksum("--set", "jobDefaults.checkpoint.size=1Ti")


def test_monitors_render_only_where_the_prometheus_operator_api_is_served(helm):
    assert monitors(render(helm)) == []
    with_api = render(helm, "--api-versions", MONITORING)
    assert kinds(monitors(with_api)) == list(MONITORS)
    rule = next(o for o in with_api if o["kind"] == "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())  # the rule file, as a plain Prometheus loads it
    assert {o["metadata"]["labels"]["release"] for o in monitors(with_api)} == {"kube-prometheus-stack"}
    mine = render(helm, "--api-versions", MONITORING, "--set", "monitoring.release=prom",
                  "--set", "monitoring.podMonitor=false", "--set", "dashboards.enabled=false")
    assert kinds(monitors(mine)) == ["PrometheusRule", "ServiceMonitor"]
    assert not [o for o in mine if o["metadata"]["name"].startswith("llmtj-dashboard-")]
    assert {o["metadata"]["labels"]["release"] for o in monitors(mine)} == {"prom"}


@pytest.mark.parametrize("values, message", [
    (["monitoring.serviceMonitor=true"], "monitoring.serviceMonitor=true, but the cluster does not serve "
     "monitoring.coreos.com/v1 (the Prometheus Operator's API): install the Prometheus Operator, or set "
     "monitoring.serviceMonitor to auto or false"),
    (["operator.replicas=0"], "operator.replicas=0: no operator would run, and jobs would never start or stop; set it "
     "to 2 (one acting, one standby) or 1"),
])
def test_a_combination_that_cannot_work_fails_the_render_with_the_fix(helm, values, message):
    out = helm("template", "llmtj", str(CHART), *[a for v in values for a in ("--set", v)], check=False)
    assert out.returncode != 0 and message in out.stderr, out.stderr


@pytest.mark.parametrize("value, path", [("dashboards.enabled=maybe", "/dashboards/enabled"),
                                         ("monitoring.podMonitor=sometimes", "/monitoring/podMonitor"),
                                         ("monitoring.interval=often", "/monitoring/interval"),
                                         ("monitoring.nonsense=1", "/monitoring"),
                                         ("operator.replicas=two", "/operator/replicas"),
                                         ("operator.watchNamespaces=Team_A", "/operator/watchNamespaces"),
                                         ("operator.image.pullPolicy=Sometimes", "/operator/image/pullPolicy"),
                                         ("jobDefaults.checkpoint.size=lots", "/jobDefaults/checkpoint/size"),
                                         ("jobDefaults.checkpoint.accessModes={ReadOnlyMany}",
                                          "/jobDefaults/checkpoint/accessModes/0"),
                                         ("jobDefaults.tolerations[0].effect=Sometimes",
                                          "/jobDefaults/tolerations/0/effect"),
                                         ("jobDefaults.nodeSelector=gpu", "/jobDefaults/nodeSelector"),
                                         ("jobDefaults.imagee=x", "/jobDefaults")])
def test_wrong_values_are_refused_by_the_schema_with_their_path(helm, value, path):
    out = helm("template", "llmtj", str(CHART), "--set", value, check=False)
    assert out.returncode != 0 and f"at '{path}'" in out.stderr, out.stderr


def test_the_plain_manifests_are_the_chart_rendered(cluster):  # the test bed's build made helm
    out = subprocess.run([sys.executable, str(ROOT / "helm" / "plain_manifests.py"), "--check"], capture_output=True,
                         text=True, env={**os.environ, "HELM": str(bin_dir() / "helm")})
    assert out.returncode == 0, out.stderr
    chart_crd = yaml.safe_load((CHART / "crds" / "llmtrainingjobs.llmtj.dev.yaml").read_text())
    assert chart_crd == yaml.safe_load((ROOT / "crds" / "llmtrainingjobs.llmtj.dev.yaml").read_text())
    maps = list(yaml.safe_load_all((ROOT / "manifests" / "04-dashboards.yaml").read_text()))
    assert {m["metadata"]["labels"]["grafana_dashboard"] for m in maps} == {"1"}
    assert {json.loads(v)["uid"] for m in maps for v in m["data"].values()} == {b["uid"] for b in boards().values()}
    deploy = next(o for o in yaml.safe_load_all((ROOT / "manifests" / "03-operator.yaml").read_text())
                  if o["kind"] == "Deployment")
    assert deploy["metadata"]["name"] == "llm-training-operator" and "helm.sh/chart" not in deploy["metadata"]["labels"]


def test_every_rendered_object_passes_the_api_server_s_checks(helm, cluster):
    cluster.kubectl("apply", "-f", str(ROOT / "manifests" / "01-namespace.yaml"), check=True)
    for ns in ("team-a", "team-b"):
        cluster.kubectl("create", "namespace", ns)  # the watched namespaces exist first (values.yaml)
    for crd in prometheus_operator.crds():
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd), check=True)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/podmonitors.monitoring.coreos.com",
                    "crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com",
                    check=True)
    for values in ([], ["--set", "monitoring.release=prom", "--set", "monitoring.interval=15s"],
                   ["--set", "operator.watchNamespaces={team-a,team-b}", "--set", "operator.replicas=1",
                    "--set-string", "jobDefaults.nodeSelector.nvidia\\.com/gpu\\.present=true",
                    "--set", "jobDefaults.checkpoint.storageClassName=nfs", "--set", "jobDefaults.queueName=gpus"]):
        objects = render(helm, "--api-versions", MONITORING, *values)
        out = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(objects))
        assert out.returncode == 0 and out.stdout.count("(server dry run)") == len(objects), out.stderr
