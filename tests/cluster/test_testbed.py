"""Live checks of the test bed itself: RBAC is enforced, volumes provision, nodes carry GPUs, pods run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.cluster.cluster import Cluster
from tests.cluster.testbed import GPUS_PER_NODE, NODES

pytestmark = pytest.mark.cluster
GPU = "nvidia.com/gpu"


def _json(cluster: Cluster, *args: str) -> dict:
    return json.loads(cluster.kubectl(*args, "-o", "json", check=True).stdout)


def _can_i(cluster: Cluster, ns: str, who: str) -> str:
    return cluster.kubectl("auth", "can-i", "list", "pods", "-n", ns, f"--as=system:serviceaccount:{ns}:{who}").stdout


def test_rbac_is_enforced(cluster: Cluster, namespace: str) -> None:
    ns = namespace
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", ns, check=True)
    assert _can_i(cluster, ns, "nobody").strip() == "no"
    cluster.kubectl("create", "role", "pod-reader", "--verb=list", "--resource=pods", "-n", ns, check=True)
    cluster.kubectl("create", "rolebinding", "nobody-reads", "--role=pod-reader",
                    f"--serviceaccount={ns}:nobody", "-n", ns, check=True)
    deadline = time.monotonic() + 10  # the authorizer reads RBAC through an informer: allow it a moment
    while _can_i(cluster, ns, "nobody").strip() != "yes":
        assert time.monotonic() < deadline, "the RoleBinding never took effect"
        time.sleep(0.5)


def test_pvc_of_the_default_class_is_bound_to_a_host_path(cluster: Cluster, namespace: str) -> None:
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": namespace},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pvc), check=True)
    done = cluster.kubectl("wait", "-n", namespace, "pvc/data", "--for=jsonpath={.status.phase}=Bound",
                           "--timeout=60s")
    assert done.returncode == 0, done.stderr
    claim = _json(cluster, "get", "-n", namespace, "pvc/data")
    assert claim["spec"]["storageClassName"] == "standard"
    pv = _json(cluster, "get", "pv", claim["spec"]["volumeName"])
    assert pv["spec"]["capacity"]["storage"] == "1Gi"
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    path = Path(pv["spec"]["hostPath"]["path"])
    assert path.is_dir() and path.parent == cluster.dir / "volumes"


def test_nodes_are_ready_with_their_gpus(cluster: Cluster) -> None:
    nodes = {n["metadata"]["name"]: n for n in _json(cluster, "get", "nodes")["items"]}
    assert set(cluster.nodes) == {f"node-{i}" for i in range(1, NODES + 1)} <= nodes.keys()
    for name in cluster.nodes:
        status = nodes[name]["status"]
        assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True", name
        assert status["capacity"].get(GPU) == str(GPUS_PER_NODE), (name, status["capacity"])
        assert status["allocatable"].get(GPU) == str(GPUS_PER_NODE), (name, status["allocatable"])


def test_a_pod_runs_to_success(cluster: Cluster, namespace: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hello", "namespace": namespace},
           "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "python:3", "command": ["python3", "-c", "print(1)"]}]}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod), check=True)
    done = cluster.kubectl("wait", "-n", namespace, "pod/hello", "--for=jsonpath={.status.phase}=Succeeded",
                           "--timeout=60s")
    assert done.returncode == 0, (done.stderr, _json(cluster, "get", "-n", namespace, "pod/hello")["status"])


def test_a_lost_node_goes_not_ready_and_comes_back(cluster: Cluster) -> None:
    node = cluster.nodes[-1]
    cluster.stop_node(node)
    try:  # kcm's --node-monitor-grace-period=15s, checked every 2 s
        cluster.wait(f"{node} NotReady", lambda: not cluster.nodes_ready([node]), timeout=40)
    finally:
        cluster.start_node(node)
    assert cluster.nodes_ready()


def test_the_api_server_restarts_and_the_controllers_carry_on(cluster: Cluster, namespace: str) -> None:
    cluster.restart_apiserver(downtime=1)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after-restart", "namespace": namespace}}
    assert cluster.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", cm)[0] == 201
    # kcm still works: a new namespace gets its ServiceAccount and root CA ConfigMap.
    status, _ = cluster.request("POST", "/api/v1/namespaces",
                                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"{namespace}-2"}})
    assert status == 201
    try:
        cluster.wait("kcm after the restart",
                     lambda: cluster.get(f"/api/v1/namespaces/{namespace}-2/configmaps/kube-root-ca.crt"), timeout=60)
    finally:
        cluster.request("DELETE", f"/api/v1/namespaces/{namespace}-2")
    assert cluster.nodes_ready()


def test_hollow_nodes_take_pods_without_running_them(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    """The load benchmark's nodes (hollow_nodes.py): scheduled like real ones (GPUs counted, taint honoured), their
    pods Running and Ready with nothing started, deleted pods gone at once; the API server's audit log works."""
    import os
    import signal
    import subprocess
    import sys

    exe = Path(__file__).with_name("hollow_nodes.py")
    log = (tmp_path / "hollow.log").open("w")
    proc = subprocess.Popen([sys.executable, str(exe), "--kubeconfig", str(cluster.kubeconfig), "--count", "2",
                             "--prefix", "hollow-t", "--gpus", "8"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    names = ["hollow-t-1", "hollow-t-2"]
    try:
        cluster.wait("hollow nodes Ready", lambda: cluster.nodes_ready(names), timeout=60)
        node = cluster.get(f"/api/v1/nodes/{names[0]}")
        assert node["status"]["allocatable"][GPU] == "8" and node["spec"]["taints"][0]["key"] == "llmtj.dev/hollow"

        def pod(name: str) -> dict:
            return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
                    "spec": {"restartPolicy": "Never", "nodeSelector": {"llmtj.dev/hollow": "true"},
                             "tolerations": [{"key": "llmtj.dev/hollow", "operator": "Exists"}],
                             "containers": [{"name": "main", "image": "busybox", "command": ["false"],
                                             "resources": {"limits": {GPU: "8"}}}]}}

        for name in ("h1", "h2", "h3"):
            cluster.kubectl("apply", "-f", "-", input=json.dumps(pod(name)), check=True)
        for name in ("h1", "h2"):  # "false" would fail at once if anything ran it
            done = cluster.kubectl("wait", "-n", namespace, f"pod/{name}", "--for=condition=Ready", "--timeout=60s")
            assert done.returncode == 0, done.stderr
            status = _json(cluster, "get", "-n", namespace, f"pod/{name}")
            assert status["spec"]["nodeName"] in names and status["status"]["phase"] == "Running"
            assert "running" in status["status"]["containerStatuses"][0]["state"]
        time.sleep(2)
        h3 = _json(cluster, "get", "-n", namespace, "pod/h3")["status"]  # both nodes' 8 GPUs are taken
        assert h3["phase"] == "Pending" and "Insufficient nvidia.com/gpu" in h3["conditions"][0]["message"], h3
        cluster.kubectl("delete", "-n", namespace, "pod/h1", "--wait=false", check=True)
        cluster.wait("h1 gone", lambda: cluster.get(f"/api/v1/namespaces/{namespace}/pods/h1") is None, timeout=20)
        cluster.kubectl("wait", "-n", namespace, "pod/h3", "--for=condition=Ready", "--timeout=60s", check=True)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        for name in names:
            cluster.request("DELETE", f"/api/v1/nodes/{name}")
        cluster.kubectl("delete", "pods", "--all", "-n", namespace, "--force", "--grace-period=0", "--wait=false")
    assert (cluster.dir / "audit.log").is_file()  # the load benchmark counts the operator's requests from it
