"""A real ``helm install`` on the test bed: the operator's pods run on the node agents and train the example job with
the chart's job defaults; ``helm upgrade`` with changed values rolls the operator while the job trains on untouched;
``helm uninstall`` removes the operator and its RBAC and keeps the CRD, the jobs and their checkpoint claims.

The release watches one namespace (the namespaced RBAC for real); the Deployment of manifests/, when the e2e tests
applied it, is paused meanwhile, as it watches every namespace."""

from __future__ import annotations

import pytest

from ..e2e.jobs import (
    apply,
    deployed_operator_paused,
    example,
    get_job,
    pod_logs,
    pods,
    poll,
    wait_phase,
    workers,
)
from .conftest import CHART

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

RELEASE, NS = "llmtj", "llmtj-helm"
NAME = f"{RELEASE}-llm-training-operator"
OPERATOR = "app.kubernetes.io/instance%3Dllmtj"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def running_operators(cluster) -> list[str]:
    return sorted(p["metadata"]["name"] for p in pods(cluster, NS, OPERATOR)
                  if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp"))


def claim(cluster, namespace: str, name: str) -> dict | None:
    return cluster.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}-checkpoints")


def job_without_storage(name: str, port: int, **spec) -> dict:
    """The example job with no checkpoint section: its claim comes from the chart's job defaults."""
    job = example(name, rendezvousPort=port, **spec)
    job["spec"].pop("checkpoint")
    return job


@pytest.fixture
def release(cluster, helm, namespace):
    """The chart's values for this test: the jobs' namespace watched, GPU-node defaults the test bed's nodes match."""
    values = ["--set", f"operator.watchNamespaces={{{namespace}}}",
              "--set-string", "jobDefaults.nodeSelector.kubernetes\\.io/os=linux",
              "--set", "jobDefaults.checkpoint.size=1Gi"]
    with deployed_operator_paused(cluster):
        try:
            yield values
        finally:
            helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "120s", check=False)
            cluster.kubectl("delete", "namespace", NS, "--wait=false")


def test_install_trains_upgrade_leaves_the_job_alone_uninstall_keeps_crd_and_claims(cluster, helm, namespace,
                                                                                     release):
    helm("install", RELEASE, str(CHART), "-n", NS, "--create-namespace", *release, "--wait", "--timeout", "180s")
    assert poll(lambda: len(running_operators(cluster)) == 2, timeout=60), pods(cluster, NS)
    before = running_operators(cluster)
    assert poll(lambda: cluster.get(f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings/{NAME}"), timeout=60)

    job = job_without_storage("helm-job", 29429, env=[{"name": "DLT_FAULT_STEP_SLEEP_S", "value": "0.1"}])
    job["spec"]["config"]["training"]["max_steps"] = 120  # ~50 s: it trains through the upgrade
    apply(cluster, namespace, job)
    assert poll(lambda: ((get_job(cluster, namespace, "helm-job") or {}).get("status") or {}).get("step", 0) > 0,
                timeout=180), pod_logs(cluster, namespace)
    trained = {p["metadata"]["name"]: p for p in workers(cluster, namespace)}
    pod = trained["helm-job-worker-0"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"} and GPU_TOLERATION in pod["tolerations"]
    assert claim(cluster, namespace, "helm-job")["spec"]["resources"]["requests"]["storage"] == "1Gi"

    # new defaults and operator resources: the operator rolls (the defaults' checksum changed), the job does not
    helm("upgrade", RELEASE, str(CHART), "-n", NS, *release, "--set", "jobDefaults.checkpoint.size=2Gi",
         "--set", "operator.resources.limits.memory=300Mi", "--wait", "--timeout", "180s")
    assert poll(lambda: len(running_operators(cluster)) == 2 and not set(running_operators(cluster)) & set(before),
                timeout=120), (before, running_operators(cluster))
    deploy = cluster.get(f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}")
    assert deploy["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "300Mi"
    assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in workers(cluster, namespace)} == \
        {n: p["metadata"]["uid"] for n, p in trained.items()}  # the same pods: nothing restarted
    status = wait_phase(cluster, namespace, "helm-job", ("Succeeded", "Failed"), timeout=300)["status"]
    assert status["phase"] == "Succeeded" and status["restartCount"] == 0, status

    apply(cluster, namespace, job_without_storage("helm-after", 29430))  # a new job gets the new defaults
    assert poll(lambda: claim(cluster, namespace, "helm-after"), timeout=60), pod_logs(cluster, namespace)
    assert claim(cluster, namespace, "helm-after")["spec"]["resources"]["requests"]["storage"] == "2Gi"
    cluster.kubectl("delete", "llmtj", "helm-after", "-n", namespace, "--wait=false", check=True)

    helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "120s")
    for path in (f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}", f"/api/v1/namespaces/{NS}/serviceaccounts/{NAME}",
                 f"/api/v1/namespaces/{NS}/configmaps/{NAME}-job-defaults",
                 f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{NAME}",
                 f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{NAME}",
                 f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/{NAME}",
                 f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings/{NAME}"):
        assert cluster.get(path) is None, path
    assert poll(lambda: not pods(cluster, NS, OPERATOR), timeout=60)
    assert cluster.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/llmtrainingjobs.llmtj.dev")
    assert get_job(cluster, namespace, "helm-job")["status"]["phase"] == "Succeeded"  # the CRD kept, so the jobs
    assert claim(cluster, namespace, "helm-job") is not None  # and their checkpoints
