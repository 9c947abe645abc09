"""Pure builders: the children a job renders, the torchrun environment, the pod template override."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llmtj_operator import names
from llmtj_operator.render import (
    build_claim,
    build_config_map,
    build_pod,
    build_rendezvous_pod,
    build_service,
    merge,
    owner_reference,
)
from llmtj_operator.store import store_action

from .jobs import UID, job


def env_of(pod: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}


def test_children_are_owned_labelled_and_deterministic():
    j = job({"replicas": 2, "config": {"training": {"max_steps": 5}}})
    objs = [build_service(j), build_config_map(j), build_pod(j, 0), build_pod(j, 1)]
    assert [o["metadata"]["name"] for o in objs] == ["tiny-workers", "tiny-config", "tiny-worker-0", "tiny-worker-1"]
    for o in objs:
        assert o["metadata"]["ownerReferences"] == [owner_reference(j)]
        assert o["metadata"]["ownerReferences"][0]["uid"] == UID and o["metadata"]["labels"][names.JOB_LABEL] == "tiny"
    assert build_pod(j, 1) == build_pod(j, 1)


def test_headless_service_publishes_not_ready_pods_and_the_pods_use_it():
    j = job({"replicas": 2})
    svc = build_service(j)
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    pod = build_pod(j, 1)
    assert pod["spec"]["hostname"] == "tiny-worker-1" and pod["spec"]["subdomain"] == "tiny-workers"
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()


def test_the_rendezvous_store_has_a_pod_of_its_own_behind_the_endpoint():
    j = job({"replicas": 2, "rendezvousPort": 29411, "nodeSelector": {"gpu": "h200"}})
    store = build_rendezvous_pod(j)
    spec, c = store["spec"], store["spec"]["containers"][0]
    host = env_of(build_pod(j, 0))["PET_RDZV_ENDPOINT"]
    assert host == f"{spec['hostname']}.{spec['subdomain']}.team-a.svc:29411"  # resolves through the Service
    assert build_service(j)["spec"]["selector"].items() <= store["metadata"]["labels"].items()
    assert store["metadata"]["labels"][names.ROLE_LABEL] == "rendezvous"  # not a worker: not in status.selector
    assert c["command"] == ["llmtj-rendezvous", "--port", "29411"] and c["ports"][0]["containerPort"] == 29411
    assert "nodeSelector" not in spec and "nvidia.com/gpu" not in str(c["resources"])  # no GPU node needed
    assert spec["securityContext"]["runAsNonRoot"] and c["securityContext"]["allowPrivilegeEscalation"] is False
    assert store["metadata"]["ownerReferences"] == [owner_reference(j)]


def _pod(phase: str = "Running", deleting: bool = False) -> dict:
    meta = {"deletionTimestamp": "2026-12-02T10:00:00Z"} if deleting else {}
    return {"metadata": meta, "status": {"phase": phase}}


@pytest.mark.parametrize("active, store, live, creating, delete, create", [
    (True, None, False, True, False, True),  # first start: the store comes with the workers
    (True, _pod(), True, True, False, False),  # a replacement joins the store the survivors use
    (True, _pod(), False, True, True, False),  # every worker gone: a fresh store (a closed rendezvous is forgotten)
    (True, _pod(), True, False, False, False),
    (True, _pod("Failed"), True, False, True, False),  # an ended store is replaced...
    (True, _pod(deleting=True), False, False, False, False),  # ...once the old one is gone
    (False, _pod(), False, False, True, False),  # finished or suspended: no store
    (False, None, False, False, False, False),
])
def test_store_lifecycle(active, store, live, creating, delete, create):
    action = store_action(active, store, live, creating)
    assert (action.delete, action.create) == (delete, create)


@pytest.mark.parametrize("spec, nnodes, nproc", [
    ({"replicas": 2}, "2:2", "1"),
    ({"replicas": 3, "elastic": {"minReplicas": 1, "maxReplicas": 4}}, "1:4", "1"),
    ({"replicas": 2, "resources": {"limits": {"nvidia.com/gpu": 8}}}, "2:2", "8"),
    ({"replicas": 2, "nprocPerNode": 4, "resources": {"limits": {"nvidia.com/gpu": 8}}}, "2:2", "4"),
])
def test_torchrun_environment(spec, nnodes, nproc):
    env = env_of(build_pod(job(spec), 0))
    assert env["PET_NNODES"] == nnodes and env["PET_NPROC_PER_NODE"] == nproc
    assert env["PET_RDZV_BACKEND"] == "c10d"
    assert env["PET_RDZV_ENDPOINT"] == "tiny-rendezvous.tiny-workers.team-a.svc:29400"
    assert env["PET_RDZV_CONF"].startswith("is_host=false,")  # no worker hosts the store: the store pod does
    assert env["PET_RDZV_ID"] == UID and env["PET_MAX_RESTARTS"] == "3"
    assert env["LLMTJ_CONFIG"] == "/etc/llmtj/config.yaml" and env["LLMTJ_RUN_NAME"] == "tiny"
    assert env["LLMTJ_OUTPUT_DIR"] == "/checkpoints"


def test_metrics_endpoint_port_labels_and_scrape_annotations():
    pod = build_pod(job({}), 1, restart_count=4)
    env = env_of(pod)
    assert (env["LLMTJ_NAMESPACE"], env["LLMTJ_POD_NAME"], env["LLMTJ_RESTART_COUNT"]) == ("team-a", "tiny-worker-1",
                                                                                           "4")
    assert env["LLMTJ_METRICS_PORT"] == "9450"
    assert pod["spec"]["containers"][0]["ports"] == [{"name": "metrics", "containerPort": 9450, "protocol": "TCP"}]
    notes = pod["metadata"]["annotations"]
    assert (notes["prometheus.io/scrape"], notes["prometheus.io/port"], notes["prometheus.io/path"]) == \
        ("true", "9450", "/metrics")


def test_pod_runs_the_worker_entry_point_non_root_with_graceful_stop():
    pod = build_pod(job({"terminationGracePeriodSeconds": 300}), 0, restart_count=2)
    c = pod["spec"]["containers"][0]
    assert c["command"] == ["llmtj-worker"] and c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["restartPolicy"] == "Never" and pod["spec"]["terminationGracePeriodSeconds"] == 300
    assert pod["metadata"]["annotations"][names.RESTARTS_ANNOTATION] == "2"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts == {"config": "/etc/llmtj", "checkpoints": "/checkpoints", "dshm": "/dev/shm"}


def test_scheduling_fields_and_user_env_pass_through():
    pod = build_pod(job({
        "nodeSelector": {"gpu": "h200"}, "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
        "priorityClassName": "high", "schedulerName": "volcano",
        "env": [{"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "key"}}}],
        "resources": {"limits": {"nvidia.com/gpu": 8, "memory": "200Gi"}},
    }), 0)
    spec = pod["spec"]
    assert spec["nodeSelector"] == {"gpu": "h200"} and spec["priorityClassName"] == "high"
    assert spec["schedulerName"] == "volcano" and spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    c = spec["containers"][0]
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "8", "memory": "200Gi"}  # the API types quantities as strings
    assert {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "key"}}} in c["env"]


def test_pod_template_merges_but_never_changes_identity():
    pod = build_pod(job({"podTemplate": {
        "metadata": {"name": "evil", "labels": {"team": "a", names.JOB_LABEL: "other"}, "annotations": {"x": "1"}},
        "spec": {"containers": [{"name": "trainer", "imagePullPolicy": "Always"}, {"name": "sidecar", "image": "s"}],
                 "runtimeClassName": "nvidia"},
    }}), 0)
    assert pod["metadata"]["name"] == "tiny-worker-0"
    assert pod["metadata"]["labels"]["team"] == "a" and pod["metadata"]["labels"][names.JOB_LABEL] == "tiny"
    assert pod["metadata"]["annotations"]["x"] == "1"
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert containers["trainer"]["imagePullPolicy"] == "Always" and containers["trainer"]["command"] == ["llmtj-worker"]
    assert containers["sidecar"]["image"] == "s" and pod["spec"]["runtimeClassName"] == "nvidia"


def test_config_map_and_claim_follow_the_spec():
    j = job({"config": {"training": {"max_steps": 7}}})
    assert "max_steps: 7" in build_config_map(j)["data"]["config.yaml"]
    claim = build_claim(j)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"] and "ownerReferences" not in claim["metadata"]
    owned = build_claim(job({"checkpoint": {"deleteWithJob": True, "size": "5Gi", "storageClassName": "fast"}}))
    assert owned["metadata"]["ownerReferences"] and owned["spec"]["storageClassName"] == "fast"
    external = job({"checkpoint": {"claimName": "mine"}, "configFrom": {"configMapKeyRef": {"name": "cfg"}}})
    assert build_claim(external) is None and build_config_map(external) is None
    vols = {v["name"]: v for v in build_pod(external, 0)["spec"]["volumes"]}
    assert vols["checkpoints"]["persistentVolumeClaim"]["claimName"] == "mine"
    assert vols["config"]["configMap"] == {"name": "cfg", "items": [{"key": "config.yaml", "path": "config.yaml"}]}


def test_spec_model_refuses_what_the_schema_refuses():
    with pytest.raises(ValidationError):
        job({"replicas": 0})
    with pytest.raises(ValidationError):
        job({"unknownField": 1})


def test_merge_of_named_lists_and_scalars():
    assert merge({"a": [{"name": "x", "v": 1}]}, {"a": [{"name": "x", "w": 2}]}) == {"a": [{"name": "x", "v": 1,
                                                                                           "w": 2}]}
    assert merge({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}


def test_pods_leave_a_lost_node_after_30_s_unless_the_job_says_otherwise():
    lost = {"node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"}
    for pod in (build_pod(job(), 0), build_rendezvous_pod(job())):
        short = {t["key"]: t for t in pod["spec"]["tolerations"] if t["key"] in lost}
        assert short.keys() == lost and {t["tolerationSeconds"] for t in short.values()} == {30}
        assert {t["effect"] for t in short.values()} == {"NoExecute"}
    own = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
           "tolerationSeconds": 2}
    tolerations = build_pod(job({"tolerations": [own]}), 0)["spec"]["tolerations"]
    assert own in tolerations and [t["key"] for t in tolerations].count("node.kubernetes.io/unreachable") == 1


def test_wandb_key_by_reference_only():
    pod = build_pod(job({"wandb": {"apiKeySecret": {"name": "wandb", "key": "api-key"}}}), 0)
    env = pod["spec"]["containers"][0]["env"]
    assert {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "api-key"}}} in env
    assert all("value" not in e for e in env if e["name"] == "WANDB_API_KEY")
    assert env_of(pod)["LLMTJ_RUN_NAME"] == "tiny"  # the W&B run's name; its id lives in the run directory
