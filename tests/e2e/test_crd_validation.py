"""The API server itself refuses bad LLMTrainingJobs, naming the field (schema types, bounds, CEL, unknown keys)."""

from __future__ import annotations

import pytest
import yaml

pytestmark = pytest.mark.cluster


def job_yaml(spec: dict, name: str = "bad") -> str:
    return yaml.safe_dump({"apiVersion": "llmtj.dev/v1alpha1", "kind": "LLMTrainingJob",
                           "metadata": {"name": name}, "spec": spec})


BAD = [
    ({"replicas": "two"}, ["spec.replicas", "must be of type integer"]),
    ({"replicas": 0}, ["spec.replicas", "greater than or equal to 1"]),
    ({"backoffLimit": -1}, ["spec.backoffLimit", "greater than or equal to 0"]),
    ({"replicas": 2, "elastic": {"minReplicas": 3, "maxReplicas": 2}},
     ["spec.elastic.minReplicas", "must not exceed elastic.maxReplicas"]),
    ({"replicas": 5, "elastic": {"maxReplicas": 4}}, ["spec.replicas", "at most elastic.maxReplicas"]),
    ({"replicas": 1, "elastic": {"minReplicas": 2}}, ["spec.replicas", "at least elastic.minReplicas"]),
    ({"config": {"training": {"max_stepz": 10}}}, ['unknown field "spec.config.training.max_stepz"']),
    ({"config": {"optimizer": {"lr": 1}}}, ['unknown field "spec.config.optimizer"']),
    ({"config": {"training": {"batch_size": "big"}}}, ["spec.config.training.batch_size", 'integer or "auto"']),
    ({"config": {"model": {"backend": "jax"}}}, ["spec.config.model.backend", "Unsupported value", '"jax"']),
    ({"config": {"training": {"learning_rate": -1}}}, ["spec.config.training.learning_rate", "greater than 0"]),
    ({"config": {"training": {"max_steps": 1.5}}}, ["spec.config.training.max_steps", "integer"]),
    ({"checkpoint": {"accessModes": ["ReadOnlyMany"]}}, ["spec.checkpoint.accessModes[0]", "Unsupported value"]),
    ({"checkpoint": {"mountPath": "relative/dir"}}, ["spec.checkpoint.mountPath", "should match"]),
    ({"config": {}, "configFrom": {"configMapKeyRef": {"name": "cfg"}}}, ["spec.configFrom", "not both"]),
    ({"rendezvousPort": 80}, ["spec.rendezvousPort", "greater than or equal to 1024"]),
    ({"replica": 2}, ['unknown field "spec.replica"']),
]


@pytest.mark.parametrize("spec, expected", BAD, ids=[str(i) for i in range(len(BAD))])
def test_api_server_rejects_with_the_field_named(crd, namespace, spec, expected):
    proc = crd.kubectl("apply", "-n", namespace, "-f", "-", input=job_yaml(spec))
    assert proc.returncode != 0, f"accepted: {spec}"
    for text in expected:
        assert text in proc.stderr, proc.stderr
    assert crd.kubectl("get", "llmtj", "-n", namespace, "-o", "name").stdout.strip() == ""  # nothing half-made


def test_good_jobs_are_accepted_with_defaults(crd, namespace):
    root = crd.kubectl("get", "--raw", "/").returncode == 0
    assert root
    from pathlib import Path
    examples = Path(__file__).resolve().parents[2] / "manifests" / "examples"
    for name in ("job.yaml", "gpu-job.yaml"):
        proc = crd.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(examples / name))
        assert proc.returncode == 0, proc.stderr
    proc = crd.kubectl("apply", "-n", namespace, "-f", "-", input=job_yaml({"suspend": True}, name="ok"))
    assert proc.returncode == 0, proc.stderr
    obj = yaml.safe_load(crd.kubectl("get", "llmtj", "ok", "-n", namespace, "-o", "yaml").stdout)
    assert obj["spec"]["replicas"] == 1 and obj["spec"]["backoffLimit"] == 3
    assert obj["spec"]["checkpoint"]["mountPath"] == "/checkpoints"
    table = crd.kubectl("get", "llmtj", "-n", namespace).stdout.splitlines()[0].split()
    assert table[:4] == ["NAME", "PHASE", "WORKERS", "STEP"] and table[-1] == "AGE"
    short = crd.kubectl("get", "llmtrainingjobs.llmtj.dev", "-n", namespace, "-o", "name").stdout.strip()
    assert short == "llmtrainingjob.llmtj.dev/ok"
