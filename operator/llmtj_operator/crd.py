"""The LLMTrainingJob CustomResourceDefinition, built from the API models and the trainer's config schema.

Pure: ``build_crd(config_schema)`` takes the trainer's ``Config.model_json_schema()`` as data, so this package
never imports the trainer (``crds/generate.py`` does, and writes the result to ``crds/``).
"""

from __future__ import annotations

from typing import Any

from .api import GPU_RESOURCE, GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION, JobSpec, JobStatus
from .structural import structural


def _gpus_whole(resources: str) -> str:
    """CEL: the GPU count in a limits/requests map is absent or a whole number (an int, or a string of digits)."""
    return f"(!('{GPU_RESOURCE}' in {resources}) || string({resources}['{GPU_RESOURCE}']).matches('^[0-9]+$'))"


def _gpus(resources: str) -> str:
    """CEL: the GPU count in a limits/requests map as an int, 0 when absent; only where it is whole."""
    return f"('{GPU_RESOURCE}' in {resources} ? int(string({resources}['{GPU_RESOURCE}'])) : 0)"


# Cross-field rules the API server checks (CEL); each names its field so kubectl shows where the problem is.
SPEC_RULES = [
    {"rule": "!has(self.config) || !has(self.configFrom)",
     "message": "set either config (inline) or configFrom (a ConfigMap key), not both", "fieldPath": ".configFrom"},
    {"rule": "!has(self.elastic) || !has(self.elastic.minReplicas) || !has(self.elastic.maxReplicas) || "
             "self.elastic.minReplicas <= self.elastic.maxReplicas",
     "message": "elastic.minReplicas must not exceed elastic.maxReplicas", "fieldPath": ".elastic.minReplicas"},
    {"rule": "!has(self.elastic) || !has(self.elastic.minReplicas) || self.replicas >= self.elastic.minReplicas",
     "message": "replicas must be at least elastic.minReplicas", "fieldPath": ".replicas"},
    {"rule": "!has(self.elastic) || !has(self.elastic.maxReplicas) || self.replicas <= self.elastic.maxReplicas",
     "message": "replicas must be at most elastic.maxReplicas", "fieldPath": ".replicas"},
    {"rule": f"!has(self.nprocPerNode) || !has(self.resources) || !has(self.resources.limits) || "
             f"!{_gpus_whole('self.resources.limits')} || {_gpus('self.resources.limits')} == 0 || "
             f"self.nprocPerNode <= {_gpus('self.resources.limits')}",
     "message": f"nprocPerNode must not exceed the pod's {GPU_RESOURCE} limit: each training process drives a GPU "
                "of its own; lower nprocPerNode or raise the limit", "fieldPath": ".nprocPerNode"},
]

# Variable names that hold secrets by convention: these, or ending in _ and one of these (WANDB_API_KEY, HF_TOKEN,
# AWS_SECRET_ACCESS_KEY, DB_PASSWORD). Suffix tests, not a regex: the API server's CEL cost budget refuses a regex
# over every item of an unbounded list.
SECRET_ENV = ("API_KEY", "TOKEN", "SECRET", "SECRET_ACCESS_KEY", "PASSWORD")

# Rules on nodes inside spec, by path ("[]": a list's items): what a worker pod would refuse, so that the API server
# says it when the job is applied instead of the operator failing to create the job's pods.
NESTED_RULES: dict[str, list[dict[str, str]]] = {
    "env[]": [
        {"rule": "!has(self.valueFrom) || !has(self.value) || self.value == ''",
         "message": "set either value or valueFrom, not both", "fieldPath": ".valueFrom"},
        # a literal secret would sit in the job for anyone who can read it, and in every pod spec
        {"rule": "!has(self.value) || self.value == '' || !" + str(list(SECRET_ENV)) +
                 ".exists(s, self.name == s || self.name.endsWith('_' + s))",
         "message": "a secret must not be written into the job: put it in a Secret and use valueFrom.secretKeyRef "
                    "(for the W&B key: spec.wandb.apiKeySecret)", "fieldPath": ".value"},
    ],
    "tolerations[]": [
        {"rule": "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
         "message": "operator Exists matches every value of the taint; remove value, or use operator Equal",
         "fieldPath": ".value"},
        {"rule": "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
         "message": "an empty key matches every taint, which needs operator Exists; set key, or operator: Exists",
         "fieldPath": ".operator"},
        {"rule": "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
         "message": "tolerationSeconds applies only to effect NoExecute; set effect: NoExecute, or remove "
                    "tolerationSeconds", "fieldPath": ".tolerationSeconds"},
    ],
    "resources": [
        {"rule": f"!has(self.limits) || {_gpus_whole('self.limits')}",
         "message": f"{GPU_RESOURCE} must be a whole number of GPUs, 0 or more", "fieldPath": ".limits"},
        {"rule": f"!has(self.requests) || {_gpus_whole('self.requests')}",
         "message": f"{GPU_RESOURCE} must be a whole number of GPUs, 0 or more", "fieldPath": ".requests"},
        {"rule": f"!has(self.requests) || !('{GPU_RESOURCE}' in self.requests) || !{_gpus_whole('self.requests')} || "
                 f"(has(self.limits) && '{GPU_RESOURCE}' in self.limits && {_gpus_whole('self.limits')} && "
                 f"{_gpus('self.requests')} == {_gpus('self.limits')})",
         "message": f"GPUs cannot be overcommitted: a {GPU_RESOURCE} request needs an equal limit; set it under "
                    "limits only (the request follows)", "fieldPath": ".requests"},
    ],
    "checkpoint": [
        {"rule": "!has(self.mountPath) || "
                 "!self.mountPath.matches('^/+((etc/+llmtj|dev/+shm|dev/+termination-log)/*)?$')",
         "message": "mountPath must not be / or a path the operator mounts (/etc/llmtj: the config, /dev/shm: shared "
                    "memory, /dev/termination-log: the error line); choose a directory of its own, such as "
                    "/checkpoints", "fieldPath": ".mountPath"},
    ],
}

# The job's name names its pods (<job>-worker-<index>, <job>-rendezvous), which use it as their hostname, a DNS label
# of at most 63 characters, and its Service (<job>-workers), a DNS-1035 label (a letter first) before Kubernetes 1.36.
# 49 characters leave room for "-worker-" and a six-digit index.
NAME_MAX = 49
NAME_RULES = [
    {"rule": f"self.size() <= {NAME_MAX} && self.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
     "message": f"must be at most {NAME_MAX} characters of lowercase letters, digits and '-', starting with a letter "
                "and ending with a letter or digit: it names the job's pods (<name>-worker-<index>) and their "
                "hostnames, DNS labels of at most 63 characters; choose another name"},
]

PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Job phase."},
    {"name": "Workers", "type": "string", "jsonPath": ".status.workers", "description": "Ready/desired worker pods."},
    {"name": "Step", "type": "integer", "jsonPath": ".status.step", "description": "Newest known optimizer step."},
    {"name": "Loss", "type": "number", "jsonPath": ".status.loss", "description": "Newest training loss."},
    {"name": "Tokens/s", "type": "number", "jsonPath": ".status.tokensPerSecond",
     "description": "The job's training throughput."},
    {"name": "Restarts", "type": "integer", "jsonPath": ".status.restartCount", "priority": 1,
     "description": "Worker restarts so far."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


CLUSTER_DEFAULTED = ("checkpoint.size", "checkpoint.accessModes")  # defaults.py


def spec_schema(config_schema: dict[str, Any]) -> dict[str, Any]:
    spec = structural(JobSpec.model_json_schema(by_alias=True))
    config = structural(config_schema, keep_defaults=False)  # the trainer applies its own defaults and presets
    config["description"] = spec["properties"]["config"]["description"]
    spec["properties"]["config"] = config
    for section in ("elastic", "checkpoint"):  # defaulted as a whole, so stored jobs show every effective value
        spec["properties"][section]["default"] = {}
    for field in CLUSTER_DEFAULTED:  # ...except these: the operator's job defaults fill them, when a job sets none
        _node(spec, field).pop("default", None)
    spec["x-kubernetes-validations"] = SPEC_RULES
    for path, rules in NESTED_RULES.items():
        _node(spec, path)["x-kubernetes-validations"] = rules
    return spec


def _node(schema: dict[str, Any], path: str) -> dict[str, Any]:
    """The schema node at a dotted path of property names, "name[]" stepping into a list's items."""
    for part in path.split("."):
        schema = schema["properties"][part.removesuffix("[]")]
        if part.endswith("[]"):
            schema = schema["items"]
    return schema


def status_schema() -> dict[str, Any]:
    status = structural(JobStatus.model_json_schema(by_alias=True), keep_defaults=False)
    conditions = status["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return status


def build_crd(config_schema: dict[str, Any]) -> dict[str, Any]:
    schema = {
        "type": "object",
        "description": "An elastic PyTorch training job: worker pods running the trainer under torchrun.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            # a CRD may restrict only metadata.name (and generateName); a rule there names the field in its error
            "metadata": {"type": "object", "properties": {"name": {"type": "string",
                                                                   "x-kubernetes-validations": NAME_RULES}}},
            "spec": spec_schema(config_schema),
            "status": status_schema(),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "llm-training-operator"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL, "singular": SINGULAR,
                      "shortNames": SHORT_NAMES, "categories": ["all"]},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "schema": {"openAPIV3Schema": schema},
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                         "statusReplicasPath": ".status.replicas",
                                                         "labelSelectorPath": ".status.selector"}},
                "additionalPrinterColumns": PRINTER_COLUMNS,
            }],
        },
    }
