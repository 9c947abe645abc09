"""Checks the schema cannot make, so the operator makes them up front: the trainer config against the job's
shape, and the podTemplate.

An elastic job may run at any world size in [minReplicas, maxReplicas] x nprocPerNode. The trainer keeps the global
batch fixed across them (accumulation = global / (micro-batch x world)), so every one of those world sizes must
divide it: the job is refused before any pod starts rather than failing at the first resize that breaks it.

A podTemplate is free-form (a PodTemplateSpec merged over the rendered pod), so the schema cannot judge it either:
the operator refuses one that would take over what the job relies on or make pods the API server refuses.
"""

from __future__ import annotations

from typing import Any

from . import names
from .api import JobSpec


def batch_problem(spec: JobSpec, config: dict[str, Any]) -> str | None:
    """A message naming the field and the fix, or None when every reachable world size keeps the global batch."""
    training = config.get("training") if isinstance(config, dict) else None
    if not isinstance(training, dict):
        return None
    global_batch, micro = training.get("global_batch_size"), training.get("batch_size", 8)
    if not isinstance(global_batch, int) or not isinstance(micro, int) or micro < 1:
        return None  # unset, or batch_size auto: the trainer decides per world size
    procs = spec.procs_per_pod
    bad = [n for n in range(spec.min_replicas, spec.max_replicas + 1) if global_batch % (micro * n * procs)]
    if not bad:
        return None
    sizes = ", ".join(f"{n} pods x {procs} = {n * procs}" for n in bad)
    return (f"spec.config.training.global_batch_size: {global_batch} is not a multiple of batch_size {micro} x the "
            f"world size for {sizes} (the job may run at any size from elastic.minReplicas {spec.min_replicas} to "
            f"maxReplicas {spec.max_replicas}); choose a global batch divisible by every one, or narrow the bounds")


# Pod fields the operator sets and the rest of the job relies on: a podTemplate that changes them is refused, since
# apply_template would let it win and the job would break later, and far from its cause.
OWNED_POD_FIELDS = {
    "restartPolicy": "Never: the operator replaces a failed pod itself and counts it against backoffLimit",
    "hostname": "<job>-worker-<index>: the workers and the rendezvous store find each other by these names",
    "subdomain": "the job's headless Service <job>-workers, through which the pods' names resolve",
}
# The worker pod's own volumes, by name, and their one source each: a podTemplate volume of the same name merges
# into it (a dshm emptyDir sizeLimit is fine), but a second source makes a volume the API server refuses.
OPERATOR_VOLUMES = {"config": "configMap", "checkpoints": "persistentVolumeClaim", "dshm": "emptyDir"}
TEMPLATE = "spec.podTemplate"


def pod_template_problem(template: dict[str, Any] | None) -> str | None:
    """A message naming the field and the fix when the podTemplate would break the worker pods, else None."""
    if not template:
        return None
    extra = sorted(set(template) - {"metadata", "spec"})
    if extra:
        return (f"{TEMPLATE}: {', '.join(extra)} is not a field of a pod template, which has only metadata and spec; "
                f"move pod fields under {TEMPLATE}.spec")
    for part in ("metadata", "spec"):
        if not isinstance(template.get(part) or {}, dict):
            return f"{TEMPLATE}.{part}: must be a mapping, as in a Pod's {part}"
    spec = template.get("spec") or {}
    return _owned_field_problem(spec) or _named_list_problem(spec, "containers") or \
        _named_list_problem(spec, "volumes") or _container_problem(spec) or _volume_problem(spec)


def _owned_field_problem(spec: dict[str, Any]) -> str | None:
    for field, why in OWNED_POD_FIELDS.items():
        if field in spec and not (field == "restartPolicy" and spec[field] == "Never"):
            return f"{TEMPLATE}.spec.{field}: set by the operator to {why}; remove it from the podTemplate"
    return None


def _named_list_problem(spec: dict[str, Any], key: str) -> str | None:
    """Lists merge into the worker pod's item by item, by name; anything else would replace the operator's list."""
    items = spec.get(key)
    if items is None:
        return None
    if not isinstance(items, list):
        return f"{TEMPLATE}.spec.{key}: must be a list, as in a Pod's spec"
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("name"):
            return (f"{TEMPLATE}.spec.{key}[{i}]: has no name; {key} merge into the worker pod's by name, and an "
                    f"unnamed one would replace them all; give it a name")
    return None


def _container_problem(spec: dict[str, Any]) -> str | None:
    for i, c in enumerate(spec.get("containers") or []):
        if c["name"] != names.CONTAINER and not c.get("image"):
            return (f"{TEMPLATE}.spec.containers[{i}]: container {c['name']} has no image; only the operator's "
                    f"{names.CONTAINER} container gets one from the job: set image, or name the container "
                    f"{names.CONTAINER} to change that one")
    return None


def _volume_problem(spec: dict[str, Any]) -> str | None:
    for i, v in enumerate(spec.get("volumes") or []):
        source = OPERATOR_VOLUMES.get(v["name"])
        others = sorted(k for k in v if k not in ("name", source))
        if source and others:
            return (f"{TEMPLATE}.spec.volumes[{i}]: {v['name']} is the operator's {source} volume, and {others[0]} "
                    f"would give it a second source, which the API server refuses; name your volume differently (or "
                    f"use spec.checkpoint for the checkpoint volume)")
    return None
