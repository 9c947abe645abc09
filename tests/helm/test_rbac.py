"""The chart's RBAC, as the test bed's API server decides it (``kubectl auth can-i --as`` the operator's
ServiceAccount): every verb the operator uses is allowed, and a list of what it must never do is refused. Watching
a list of namespaces, the rights stop at those namespaces. kubectl asks about served resources only, so the chart's
CRDs are installed first; the gang schedulers' PodGroups (not served here) are asked by SubjectAccessReview."""

from __future__ import annotations

import pytest
import yaml

from .conftest import CHART, render

pytestmark = [pytest.mark.cluster]

RBAC = ("--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml")
# (verb, resource, extra kubectl args): what kube.py and kopf do
NEEDED = [("list", "customresourcedefinitions.apiextensions.k8s.io"),
          ("watch", "customresourcedefinitions.apiextensions.k8s.io"), ("get", "nodes"),
          ("watch", "llmtrainingjobs.llmtj.dev"), ("patch", "llmtrainingjobs.llmtj.dev"),
          ("delete", "llmtrainingjobs.llmtj.dev"), ("patch", "llmtrainingjobs.llmtj.dev", "--subresource=status"),
          ("list", "pods"), ("create", "pods"), ("delete", "pods"), ("patch", "pods"), ("create", "services"),
          ("create", "persistentvolumeclaims"), ("create", "configmaps"), ("patch", "configmaps"),
          ("create", "events"), ("create", "events.events.k8s.io")]
PODGROUPS = [("scheduling.x-k8s.io", "create"), ("scheduling.x-k8s.io", "patch"), ("scheduling.volcano.sh", "get")]
CLUSTER_PEERING = [("create", "clusterkopfpeerings.kopf.dev"), ("patch", "clusterkopfpeerings.kopf.dev")]
FORBIDDEN = [("list", "secrets"), ("get", "secrets"), ("list", "nodes"), ("patch", "nodes"), ("delete", "nodes"),
             ("create", "pods", "--subresource=exec"), ("update", "pods"), ("delete", "persistentvolumeclaims"),
             ("delete", "services"), ("delete", "configmaps"), ("create", "deployments.apps"),
             ("create", "serviceaccounts", "--subresource=token"), ("create", "clusterroles.rbac.authorization.k8s.io"),
             ("bind", "clusterroles.rbac.authorization.k8s.io"), ("impersonate", "serviceaccounts"),
             ("delete", "customresourcedefinitions.apiextensions.k8s.io"), ("create", "llmtrainingjobs.llmtj.dev"),
             ("update", "llmtrainingjobs.llmtj.dev", "--subresource=status"), ("delete", "kopfpeerings.kopf.dev")]


def install_rbac(cluster, helm, release: str, *values: str) -> str:
    """The chart's ServiceAccount and RBAC applied in a namespace of their own; returns the account's user name."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"), check=True)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/llmtrainingjobs.llmtj.dev",
                    "crd/clusterkopfpeerings.kopf.dev", "crd/kopfpeerings.kopf.dev", check=True)
    cluster.kubectl("create", "namespace", release)
    objects = render(helm, *RBAC, *values, release=release, namespace=release)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects), check=True)
    return f"system:serviceaccount:{release}:{release}-llm-training-operator"


def answers(cluster, user: str, checks: list[tuple[str, ...]], namespace: str) -> dict[tuple[str, ...], bool]:
    out = {}
    for verb, resource, *extra in checks:
        res = cluster.kubectl("auth", "can-i", verb, resource, *extra, f"--as={user}", "-n", namespace)
        assert res.stdout.strip() in ("yes", "no"), res.stderr
        out[(verb, resource, *extra)] = res.stdout.strip() == "yes"
    return out


def podgroup_answers(cluster, user: str, namespace: str) -> list[bool]:
    out = []
    for group, verb in PODGROUPS:
        status, body = cluster.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": ["system:serviceaccounts", "system:authenticated"],
                     "resourceAttributes": {"namespace": namespace, "verb": verb, "group": group,
                                            "resource": "podgroups"}}})
        assert status == 201, body
        out.append(body["status"].get("allowed", False))
    return out


def test_cluster_wide_the_operator_may_do_what_it_needs_and_nothing_else(cluster, helm):
    user = install_rbac(cluster, helm, "llmtj-rbac")
    allowed = answers(cluster, user, NEEDED + CLUSTER_PEERING, "team-x")
    assert all(allowed.values()), [k for k, ok in allowed.items() if not ok]
    assert all(podgroup_answers(cluster, user, "team-x"))
    refused = answers(cluster, user, FORBIDDEN, "team-x")
    assert not any(refused.values()), [k for k, ok in refused.items() if ok]


def test_watching_a_list_the_rights_stop_at_those_namespaces(cluster, helm):
    cluster.kubectl("create", "namespace", "llmtj-rbac-team")
    user = install_rbac(cluster, helm, "llmtj-rbac-ns", "--set", "operator.watchNamespaces={llmtj-rbac-team}")
    inside = answers(cluster, user, NEEDED + [("create", "kopfpeerings.kopf.dev")], "llmtj-rbac-team")
    assert all(inside.values()), [k for k, ok in inside.items() if not ok]
    assert all(podgroup_answers(cluster, user, "llmtj-rbac-team"))
    assert not any(podgroup_answers(cluster, user, "team-x"))
    elsewhere = answers(cluster, user, [c for c in NEEDED if c[1] not in ("customresourcedefinitions.apiextensions."
                                                                          "k8s.io", "nodes")], "team-x")
    assert not any(elsewhere.values()), [k for k, ok in elsewhere.items() if ok]
    cluster_wide = answers(cluster, user, CLUSTER_PEERING + [("list", "llmtrainingjobs.llmtj.dev", "-A"),
                                                             ("list", "pods", "-A")], "team-x")
    assert not any(cluster_wide.values()), [k for k, ok in cluster_wide.items() if ok]
    refused = answers(cluster, user, FORBIDDEN, "llmtj-rbac-team")
    assert not any(refused.values()), [k for k, ok in refused.items() if ok]
