"""The LLMTrainingJob CustomResourceDefinition, built from the API models and the trainer's config schema.

Pure: ``build_crd(config_schema)`` takes the trainer's ``Config.model_json_schema()`` as data, so this package
never imports the trainer (``crds/generate.py`` does, and writes the result to ``crds/``).
"""

from __future__ import annotations

from typing import Any

from .api import GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION, JobSpec, JobStatus
from .structural import structural

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
]

PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Job phase."},
    {"name": "Workers", "type": "string", "jsonPath": ".status.workers", "description": "Ready/desired worker pods."},
    {"name": "Step", "type": "integer", "jsonPath": ".status.step", "description": "Newest known optimizer step."},
    {"name": "Restarts", "type": "integer", "jsonPath": ".status.restartCount", "priority": 1,
     "description": "Worker restarts so far."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def spec_schema(config_schema: dict[str, Any]) -> dict[str, Any]:
    spec = structural(JobSpec.model_json_schema(by_alias=True))
    config = structural(config_schema, keep_defaults=False)  # the trainer applies its own defaults and presets
    config["description"] = spec["properties"]["config"]["description"]
    spec["properties"]["config"] = config
    for section in ("elastic", "checkpoint"):  # defaulted as a whole, so stored jobs show every effective value
        spec["properties"][section]["default"] = {}
    spec["x-kubernetes-validations"] = SPEC_RULES
    return spec


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
            "metadata": {"type": "object"},
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
