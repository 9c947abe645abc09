"""The LLMTrainingJob API (group llmtj.dev, v1alpha1): typed spec and status, one field, one description.

These models are the single source of the CRD's schema (``crds/`` is generated from them plus the trainer's typed
config, see ``crds/generate.py``) and the operator parses every job through them, so what the API server
accepted and what the operator reads cannot drift apart. ``spec.config`` stays plain data here: the API server
validates it against the schema generated from the trainer's config.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "llmtj.dev"
VERSION = "v1alpha1"
KIND = "LLMTrainingJob"
PLURAL = "llmtrainingjobs"
SINGULAR = "llmtrainingjob"
SHORT_NAMES = ["llmtj"]
GPU_RESOURCE = "nvidia.com/gpu"
SIZE_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|K|M|G|T|P)?$"  # a storage quantity

Phase = Literal["Pending", "Running", "Restarting", "Succeeded", "Failed", "Suspended"]
PHASES: tuple[str, ...] = Phase.__args__  # type: ignore[attr-defined]


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown keys are errors (the API server prunes or refuses)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ConfigMapKeyRef(ApiModel):
    name: str = Field(min_length=1, description="ConfigMap in the job's namespace.")
    key: str = Field("config.yaml", min_length=1, description="Key holding the trainer's YAML config.")


class ConfigSource(ApiModel):
    config_map_key_ref: ConfigMapKeyRef = Field(description="A ConfigMap key holding the trainer's YAML config.")


class SecretKeyRef(ApiModel):
    name: str = Field(min_length=1, description="Secret in the job's namespace.")
    key: str = Field(min_length=1, description="Key of the Secret holding the value.")


class WandbSpec(ApiModel):
    api_key_secret: SecretKeyRef = Field(description="The Secret key holding the W&B API key, given to the trainer "
                                         "as WANDB_API_KEY by reference: it never appears in the job, its status "
                                         "or its pods' specs. Turn W&B on in the config (logging.wandb.enabled).")


class ElasticPolicy(ApiModel):
    min_replicas: int | None = Field(None, ge=1, description="Fewest worker pods training may run with; default: "
                                     "replicas.")
    max_replicas: int | None = Field(None, ge=1, description="Most worker pods the job may scale to; default: "
                                     "replicas.")
    max_restarts: int = Field(3, ge=0, description="torchrun --max-restarts: re-rendezvous attempts inside the pods "
                              "before a pod fails.")


class CheckpointVolume(ApiModel):
    claim_name: str | None = Field(None, min_length=1, description="An existing PersistentVolumeClaim to use; unset: "
                                   "the operator creates <job>-checkpoints.")
    # size, storage class and access modes: unset, the operator's job defaults fill them (defaults.py), so the CRD
    # leaves them without a default of its own (crd.py)
    size: str = Field("20Gi", pattern=SIZE_PATTERN, description="Size of the claim the operator creates; default: the "
                      "operator's job defaults, else 20Gi.")
    storage_class_name: str | None = Field(None, description="Storage class of the created claim; default: the "
                                           "operator's job defaults, else the cluster's default class. Multi-node "
                                           "jobs need ReadWriteMany storage.")
    access_modes: list[Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"]] = Field(
        default_factory=lambda: ["ReadWriteMany"], min_length=1,
        description="Access modes of the created claim (every worker pod mounts it); default: the operator's job "
        "defaults, else ReadWriteMany.")
    mount_path: str = Field("/checkpoints", pattern=r"^/", description="Where the claim is mounted in the pods; "
                            "the trainer writes its run directory (checkpoints, logs) under it.")
    delete_with_job: bool = Field(False, description="Delete the created claim with the job. Off: checkpoints "
                                  "outlive the job (delete the claim yourself).")


class ResourceRequirements(ApiModel):
    limits: dict[str, int | str] | None = Field(None, description="Resource limits per worker pod, e.g. "
                                                "nvidia.com/gpu: 8.")
    requests: dict[str, int | str] | None = Field(None, description="Resource requests per worker pod.")


class Toleration(ApiModel):
    key: str | None = Field(None, description="Taint key to tolerate; empty with operator Exists: all taints.")
    operator: Literal["Exists", "Equal"] | None = Field(None, description="Exists or Equal (default).")
    value: str | None = Field(None, description="Taint value for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(None, description="Taint effect "
                                                                                  "to match; empty: all.")
    toleration_seconds: int | None = Field(None, description="How long a NoExecute taint is tolerated.")


class EnvVar(ApiModel):
    name: str = Field(min_length=1, max_length=256, description="Variable name.")
    value: str | None = Field(None, description="Literal value.")
    value_from: dict[str, Any] | None = Field(None, description="A Kubernetes EnvVarSource (secretKeyRef, "
                                              "configMapKeyRef, fieldRef): secrets by reference only.")


class JobSpec(ApiModel):
    config: dict[str, Any] | None = Field(None, description="The trainer's config inline: the same sections as its "
                                          "YAML files (run, model, data, tokenizer, training, distributed, logging, "
                                          "checkpoint).")
    config_from: ConfigSource | None = Field(None, description="Or: a ConfigMap key holding the trainer's YAML config.")
    replicas: int = Field(1, ge=1, description="Worker pods (nodes of the torchrun group).")
    elastic: ElasticPolicy = Field(default_factory=ElasticPolicy, description="Elastic bounds and torchrun restarts.")
    nproc_per_node: int | None = Field(None, ge=1, description="Training processes per pod, at most the pod's "
                                       "nvidia.com/gpu count; default: that count, else 1.")
    image: str | None = Field(None, min_length=1, description="Trainer image; default: the operator's job "
                              "defaults (jobDefaults.image).")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(None, description="Image pull "
                                                                                   "policy.")
    resources: ResourceRequirements | None = Field(None, description="Resources per worker pod.")
    env: list[EnvVar] | None = Field(None, max_length=1024, description="Extra environment variables for the "
                                     "trainer.")
    node_selector: dict[str, str] | None = Field(None, description="Node labels the worker pods must match; "
                                                 "default: the operator's job defaults.")
    tolerations: list[Toleration] | None = Field(None, description="Tolerations of the worker pods; default: "
                                                 "the operator's job defaults.")
    priority_class_name: str | None = Field(None, description="PriorityClass of the worker pods; default: "
                                       "the operator's job defaults.")
    scheduler_name: str | None = Field(None, description="Scheduler of the worker pods (e.g. volcano). When the "
                                       "cluster serves Volcano's or scheduler-plugins' PodGroup API, the job gets a "
                                       "PodGroup with minMember = minReplicas.")
    pod_template: dict[str, Any] | None = Field(None, description="A PodTemplateSpec (metadata, spec) merged over the "
                                                "rendered worker pod: anything the fields above do not cover.")
    checkpoint: CheckpointVolume = Field(default_factory=CheckpointVolume, description="The checkpoint volume.")
    wandb: WandbSpec | None = Field(None, description="Weights & Biases: where the API key is. The W&B run is named "
                                    "after the job and keeps one run id (kept on the checkpoint volume) across "
                                    "restarts and resizes.")
    rendezvous_port: int = Field(29400, ge=1024, le=65535, description="Port of torchrun's c10d rendezvous store.")
    termination_grace_period_seconds: int = Field(120, ge=0, description="Time a stopped worker gets to save a "
                                                  "checkpoint before it is killed; the workers get it less 10 s. "
                                                  "Raise it above the model's checkpoint save time.")
    backoff_limit: int = Field(3, ge=0, description="Pod restarts after failures allowed before the job fails "
                               "(a pod stopped on purpose, by SIGTERM or an eviction, is replaced without counting).")
    active_deadline_seconds: int | None = Field(None, ge=1, description="Fail the job after it ran this long.")
    ttl_seconds_after_finished: int | None = Field(None, ge=0, description="Delete the job this long after it "
                                                   "finished.")
    suspend: bool = Field(False, description="Stop the pods (after a checkpoint) and keep the job; false resumes.")

    @property
    def min_replicas(self) -> int:
        return self.elastic.min_replicas or self.replicas

    @property
    def max_replicas(self) -> int:
        return self.elastic.max_replicas or self.replicas

    @property
    def gpus_per_pod(self) -> int:
        limits = (self.resources.limits if self.resources else None) or {}
        try:
            return int(limits.get(GPU_RESOURCE, 0))
        except ValueError:
            return 0

    @property
    def procs_per_pod(self) -> int:
        return self.nproc_per_node or self.gpus_per_pod or 1


class Condition(ApiModel):
    type: str = Field(description="Condition type: Created, Running, Restarting, Succeeded, Failed, Suspended.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason for the last transition.")
    message: str = Field("", description="Human-readable details (for Failed: what went wrong and how to fix it).")
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(None, description="metadata.generation this condition was computed from.")


class CheckpointStatus(ApiModel):
    path: str = Field(description="Path of the newest complete checkpoint inside the checkpoint volume.")
    step: int = Field(description="Optimizer step it was saved at.")


class GangRetry(ApiModel):
    attempts: int = Field(description="Times the scheduler could not place minReplicas worker pods together.")
    retry_at: str = Field(description="When the released pods are handed to the scheduler again (RFC 3339).")
    reason: str = Field(description="The scheduler's message for the last try.")


class JobStatus(ApiModel):
    phase: Phase | None = Field(None, description="Pending, Running, Restarting, Succeeded, Failed or Suspended.")
    conditions: list[Condition] | None = Field(None, description="Latest observations, one per type.")
    observed_generation: int | None = Field(None, description="metadata.generation the status was computed from.")
    replicas: int | None = Field(None, description="Worker pods that exist (scale subresource).")
    desired_replicas: int | None = Field(None, description="Worker pods the job asks for.")
    ready_replicas: int | None = Field(None, description="Worker pods running and ready.")
    workers: str | None = Field(None, description="ready/desired, for kubectl get.")
    selector: str | None = Field(None, description="Label selector of the worker pods (scale subresource).")
    world_size: int | None = Field(None, description="Training processes in the current group (pods x nproc).")
    restart_count: int | None = Field(None, description="Worker restarts so far (any failure), against backoffLimit.")
    stopped_workers: list[str] | None = Field(None, description="Worker pods stopped on purpose (SIGTERM, eviction) "
                                              "after a checkpoint, being replaced without counting as restarts.")
    gang_retry: GangRetry | None = Field(None, description="Set while fewer than minReplicas worker pods can be "
                                         "scheduled together: the job's pods are released and retried with backoff.")
    start_time: str | None = Field(None, description="When the first worker pod was created.")
    completion_time: str | None = Field(None, description="When the job succeeded or failed.")
    step: int | None = Field(None, description="Newest known optimizer step: from the workers' metrics while the "
                             "job runs, from the trainer's end-of-run message when it ends.")
    loss: float | None = Field(None, description="Training loss at the newest logging interval (workers' metrics).")
    tokens_per_second: float | None = Field(None, description="The job's training throughput over the newest logging "
                                            "interval, summed over its ranks (workers' metrics).")
    last_checkpoint_time: str | None = Field(None, description="When the newest checkpoint was saved (RFC 3339; "
                                             "workers' metrics).")
    last_error: str | None = Field(None, description="The last worker failure: the trainer's error line or how the "
                                   "pod ended.")
    last_checkpoint: CheckpointStatus | None = Field(None, description="The newest complete checkpoint.")
