"""Cluster-wide job defaults (the Helm chart's ``jobDefaults``): what every job gets where its spec sets nothing.

The operator reads them once, at start, from a YAML file (``--job-defaults``; the chart mounts its ConfigMap there
and rolls the operator when they change). A job's own value always wins; a default fills only a field the job
leaves unset (absent or null). Maps and lists are whole values: a job's tolerations replace the default ones. An
empty default ("", {}, []) sets nothing. Changed defaults reach jobs created (or re-created) afterwards: running
pods are never touched, and a job's checkpoint claim is made once.

The chart's ``values.schema.json`` holds this model's JSON schema (written by ``crds/generate.py``), so Helm refuses
what the operator would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from . import names
from .api import SIZE_PATTERN, ApiModel, Toleration

DEFAULT_IMAGE = "ghcr.io/distributed-llm-trainer/trainer:0.1.0"
ENV = "LLMTJ_JOB_DEFAULTS"  # the file's path, when --job-defaults is not given


class CheckpointDefaults(ApiModel):
    storage_class_name: str | None = Field(None, description="Storage class of the checkpoint claims the operator "
                                           "creates; empty: the cluster's default class. Multi-node jobs need one "
                                           "that offers ReadWriteMany (NFS, CephFS, Filestore, EFS, Lustre...).")
    size: str | None = Field(None, pattern=SIZE_PATTERN, description="Size of those claims; empty: 20Gi.")
    access_modes: list[Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"]] | None = Field(
        None, description="Access modes of those claims; empty: ReadWriteMany (every worker pod mounts the claim, "
        "on different nodes). ReadWriteOnce only serves jobs whose pods share one node.")


class JobDefaults(ApiModel):
    image: str = Field(DEFAULT_IMAGE, min_length=1, description="Trainer image of jobs that name none.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never", ""] | None = Field(
        None, description="Image pull policy of jobs that set none; empty: Kubernetes' default for the tag.")
    node_selector: dict[str, str] | None = Field(None, description="Node labels the worker pods must match, e.g. "
                                                 "nvidia.com/gpu.present: \"true\" (GPU feature discovery's label).")
    tolerations: list[Toleration] | None = Field(None, description="Tolerations of the worker and rendezvous pods, "
                                                 "e.g. of the nvidia.com/gpu taint GPU nodes commonly carry.")
    priority_class_name: str | None = Field(None, description="PriorityClass of the worker pods; it must exist.")
    queue_name: str | None = Field(None, description="Kueue LocalQueue of jobs without a kueue.x-k8s.io/queue-name "
                                   "label (their pods then carry it and wait for Kueue's admission); empty: none.")
    checkpoint: CheckpointDefaults = Field(default_factory=CheckpointDefaults,
                                           description="The checkpoint claims the operator creates.")


class DefaultsError(Exception):
    """The defaults file is unreadable or invalid: the operator does not start (a job made with wrong defaults
    would be wrong for good)."""


def load(path: str | Path | None) -> JobDefaults:
    """The file's defaults; no path: the built-in ones."""
    if not path:
        return JobDefaults()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
        return JobDefaults.model_validate(data)
    except (OSError, yaml.YAMLError) as e:
        why = " ".join(str(e).split())  # one line
        raise DefaultsError(f"job defaults {path}: cannot be read ({why}); fix the file (the chart's jobDefaults)") \
            from None
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise DefaultsError(f"job defaults {path}: {where}: {first['msg']}; fix the chart's jobDefaults.{where}") \
            from None


def _given(value: Any) -> bool:
    return value not in (None, "", {}, [])


def with_defaults(spec: Any, defaults: JobDefaults) -> Any:
    """A job's spec (camelCase, as stored) with the unset fields filled from the defaults. Whatever is not a mapping
    where one belongs stays as it is, for the spec's validation to name."""
    if not isinstance(spec, dict):
        return spec
    wire = defaults.model_dump(by_alias=True, exclude_none=True)
    out = dict(spec)
    for key in ("image", "imagePullPolicy", "nodeSelector", "tolerations", "priorityClassName"):
        if not _given(out.get(key)) and _given(wire.get(key)):
            out[key] = wire[key]
    checkpoint = out.get("checkpoint") or {}
    if isinstance(checkpoint, dict) and not checkpoint.get("claimName"):
        checkpoint = dict(checkpoint)
        for key, value in wire["checkpoint"].items():
            if not _given(checkpoint.get(key)) and _given(value):
                checkpoint[key] = value
        out["checkpoint"] = checkpoint
    return out


def queue(labels: dict[str, str] | None, defaults: JobDefaults) -> str | None:
    """The job's Kueue queue: its label, else the default queue."""
    return (labels or {}).get(names.KUEUE_QUEUE_LABEL) or defaults.queue_name or None
