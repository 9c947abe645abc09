"""Pure builders: a job (name, namespace, uid, spec) in, the desired child objects out, as plain dicts.

The one place that knows how a worker pod looks. Every child carries the job's labels and a controller owner
reference, so the garbage collector removes it with the job (the checkpoint claim only when asked to).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import yaml

from . import names
from .api import GROUP, KIND, VERSION, JobSpec
from .podgroup import PodGroupAPI, min_resources
from .torchrun_env import TERMINATION_LOG, torchrun_env, trainer_env

# A node that stops reporting is tainted unreachable (or not-ready) with NoExecute; the pods on it are evicted after
# their toleration. Kubernetes' default is 300 s, a long time for a job whose other workers wait: 30 s, unless the
# job sets its own toleration for these keys.
LOST_NODE_TAINTS = ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
LOST_NODE_TOLERATION_SECONDS = 30
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


@dataclass(frozen=True)
class Job:
    name: str
    namespace: str
    uid: str
    spec: JobSpec
    image: str  # spec.image or the operator's default
    queue: str | None = None  # the job's Kueue queue (its kueue.x-k8s.io/queue-name label), copied to its workers
    pod_group: PodGroupAPI | None = None  # the gang scheduler's PodGroup API the cluster serves (podgroup.py)


def owner_reference(job: Job) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": job.name, "uid": job.uid,
            "controller": True, "blockOwnerDeletion": True}


def _metadata(job: Job, name: str, extra_labels: dict[str, str] | None = None, owned: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": job.namespace,
                            "labels": {**names.common_labels(job.name), **(extra_labels or {})}}
    if owned:
        meta["ownerReferences"] = [owner_reference(job)]
    return meta


def build_service(job: Job) -> dict[str, Any]:
    """Headless, over all the job's pods: each gets ``<pod>.<service>.<ns>.svc``; not-ready addresses are published
    so that the rendezvous store's name resolves while the pods are still starting."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _metadata(job, names.service(job.name)),
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                 "selector": {names.JOB_LABEL: job.name},
                 "ports": [{"name": "rendezvous", "port": job.spec.rendezvous_port,
                            "targetPort": job.spec.rendezvous_port, "protocol": "TCP"}]},
    }


def build_config_map(job: Job) -> dict[str, Any] | None:
    """The inline config as the file the trainer reads; None when the job names a ConfigMap of its own."""
    if job.spec.config_from is not None:
        return None
    text = yaml.safe_dump(job.spec.config or {}, sort_keys=False)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(job, names.config_map(job.name)),
            "data": {names.CONFIG_KEY: text}}


def build_claim(job: Job) -> dict[str, Any] | None:
    """The checkpoint claim to create; None when the job uses an existing one. Not owned unless deleteWithJob:
    checkpoints are the most valuable output and outlive the job by default."""
    ckpt = job.spec.checkpoint
    if ckpt.claim_name:
        return None
    spec: dict[str, Any] = {"accessModes": list(ckpt.access_modes), "resources": {"requests": {"storage": ckpt.size}}}
    if ckpt.storage_class_name:
        spec["storageClassName"] = ckpt.storage_class_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _metadata(job, names.claim(job.name), owned=ckpt.delete_with_job), "spec": spec}


def claim_name(job: Job) -> str:
    return job.spec.checkpoint.claim_name or names.claim(job.name)


def _volumes(job: Job) -> list[dict[str, Any]]:
    if job.spec.config_from is not None:
        ref = job.spec.config_from.config_map_key_ref
        config = {"name": ref.name, "items": [{"key": ref.key, "path": names.CONFIG_KEY}]}
    else:
        config = {"name": names.config_map(job.name)}
    return [
        {"name": "config", "configMap": config},
        {"name": "checkpoints", "persistentVolumeClaim": {"claimName": claim_name(job)}},
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},  # dataloader workers share tensors through /dev/shm
    ]


def _container(job: Job, pod: str, restart_count: int) -> dict[str, Any]:
    spec = job.spec
    user_env = [e.model_dump(by_alias=True, exclude_none=True) for e in spec.env or []]
    if spec.wandb is not None:  # by reference: the key itself never enters a spec
        ref = spec.wandb.api_key_secret
        user_env.insert(0, {"name": "WANDB_API_KEY",
                            "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    container: dict[str, Any] = {
        "name": names.CONTAINER,
        "image": job.image,
        "command": ["llmtj-worker"],
        "env": [*torchrun_env(job.name, job.namespace, job.uid, spec),
                *trainer_env(job.name, job.namespace, pod, restart_count, spec), *user_env],
        "ports": [{"name": "metrics", "containerPort": names.METRICS_PORT, "protocol": "TCP"}],
        "volumeMounts": [
            {"name": "config", "mountPath": names.CONFIG_MOUNT, "readOnly": True},
            {"name": "checkpoints", "mountPath": spec.checkpoint.mount_path},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",  # the trainer's last ``error:`` line on a failure
        "securityContext": copy.deepcopy(CONTAINER_SECURITY),
    }
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    if spec.resources is not None:  # quantities as strings: the API's type (the client refuses `nvidia.com/gpu: 2`)
        asked = spec.resources.model_dump(by_alias=True, exclude_none=True)
        container["resources"] = {kind: {name: str(q) for name, q in amounts.items()}
                                  for kind, amounts in asked.items()}
    return container


def _tolerations(spec: JobSpec) -> list[dict[str, Any]]:
    own = [t.model_dump(by_alias=True, exclude_none=True) for t in spec.tolerations or []]
    keys = {t.get("key") for t in own}
    return own + [{"key": key, "operator": "Exists", "effect": "NoExecute",
                   "tolerationSeconds": LOST_NODE_TOLERATION_SECONDS} for key in LOST_NODE_TAINTS if key not in keys]


def build_pod(job: Job, index: int, restart_count: int = 0, gated: bool = False) -> dict[str, Any]:
    """Worker ``index``; ``gated``: held back from the scheduler until the job's gang is tried again (gang.py)."""
    spec = job.spec
    name = names.worker(job.name, index)
    labels = {**names.selector_labels(job.name), names.INDEX_LABEL: str(index)}
    annotations = {names.RESTARTS_ANNOTATION: str(restart_count),
                   # a plain Prometheus's pod discovery (the Prometheus Operator uses the PodMonitor instead)
                   "prometheus.io/scrape": "true", "prometheus.io/port": str(names.METRICS_PORT),
                   "prometheus.io/path": "/metrics"}
    if job.queue:  # Kueue admits the workers as one plain pod group of spec.replicas pods
        labels.update({names.KUEUE_QUEUE_LABEL: job.queue, names.KUEUE_GROUP_LABEL: job.name})
        annotations[names.KUEUE_COUNT_ANNOTATION] = str(spec.replicas)
    if job.pod_group is not None:  # the gang scheduler's group: named after the job
        (labels if job.pod_group.mark_is_label else annotations)[job.pod_group.mark] = job.name
    meta = _metadata(job, name, labels)
    meta["annotations"] = annotations
    pod_spec: dict[str, Any] = {
        "hostname": name,
        "subdomain": names.service(job.name),
        "restartPolicy": "Never",  # the operator replaces failed pods and counts them against backoffLimit
        "terminationGracePeriodSeconds": spec.termination_grace_period_seconds,
        "enableServiceLinks": False,
        "securityContext": copy.deepcopy(POD_SECURITY),
        "containers": [_container(job, name, restart_count)],
        "volumes": _volumes(job),
    }
    for key, value in (("nodeSelector", spec.node_selector), ("priorityClassName", spec.priority_class_name),
                       ("schedulerName", spec.scheduler_name)):
        if value:
            pod_spec[key] = value
    pod_spec["tolerations"] = _tolerations(spec)
    if gated:
        pod_spec["schedulingGates"] = [{"name": names.GANG_GATE}]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec}
    return apply_template(pod, spec.pod_template) if spec.pod_template else pod


def build_pod_group(job: Job) -> dict[str, Any] | None:
    """The job's PodGroup for its gang scheduler, when the cluster serves one: minMember = minReplicas, minResources =
    that many workers' requests, so that the scheduler binds no worker before minReplicas of them fit."""
    if job.pod_group is None:
        return None
    spec: dict[str, Any] = {"minMember": job.spec.min_replicas}
    needs = min_resources(build_pod(job, 0), job.spec.min_replicas)
    if needs:
        spec["minResources"] = needs
    return {"apiVersion": job.pod_group.api_version, "kind": "PodGroup", "metadata": _metadata(job, job.name),
            "spec": spec}


def build_rendezvous_pod(job: Job) -> dict[str, Any]:
    """The job's rendezvous store (``llmtj-rendezvous``): a pod of its own, so that no worker's loss takes the
    rendezvous with it. It holds a few bytes per round and needs no GPU: no node selector, small requests."""
    spec = job.spec
    name = names.rendezvous(job.name)
    container: dict[str, Any] = {
        "name": "rendezvous", "image": job.image,
        "command": ["llmtj-rendezvous", "--port", str(spec.rendezvous_port)],
        "ports": [{"name": "rendezvous", "containerPort": spec.rendezvous_port, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "50m", "memory": "384Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": copy.deepcopy(CONTAINER_SECURITY),
    }
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    pod_spec: dict[str, Any] = {
        "hostname": name, "subdomain": names.service(job.name),
        "restartPolicy": "Never",  # the operator replaces it (a fresh store: see reconcile)
        "terminationGracePeriodSeconds": 5, "enableServiceLinks": False,
        "securityContext": copy.deepcopy(POD_SECURITY), "containers": [container],
        "tolerations": _tolerations(spec),
    }
    if spec.priority_class_name:
        pod_spec["priorityClassName"] = spec.priority_class_name
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": _metadata(job, name, names.rendezvous_labels(job.name)), "spec": pod_spec}


def merge(base: Any, override: Any) -> Any:
    """Deep merge: maps key by key, lists of named items (containers, volumes, env) by name, anything else wins."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(override, list) and all(
            isinstance(x, dict) and "name" in x for x in [*base, *override]):
        by_name = {x["name"]: x for x in base}
        out_list = [merge(by_name[x["name"]], x) if x["name"] in by_name else copy.deepcopy(x) for x in override]
        kept = [x for x in base if x["name"] not in {o["name"] for o in override}]
        return kept + out_list
    return copy.deepcopy(override)


PROTECTED = ("name", "namespace", "ownerReferences")


def apply_template(pod: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """The user's podTemplate over the rendered pod; identity and the operator's own labels always win."""
    merged = merge(pod, {k: v for k, v in template.items() if k in ("metadata", "spec")})
    for key in PROTECTED:
        merged["metadata"][key] = pod["metadata"][key]
    merged["metadata"]["labels"] = {**merged["metadata"].get("labels", {}), **pod["metadata"]["labels"]}
    return merged
