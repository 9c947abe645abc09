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
    ({"nprocPerNode": 0}, ["spec.nprocPerNode", "greater than or equal to 1"]),
    ({"elastic": {"maxRestarts": -1}}, ["spec.elastic.maxRestarts", "greater than or equal to 0"]),
    # P15..P26, P29..: what a worker pod would refuse, or what would break the job, refused when it is applied
    ({"image": ""}, ["spec.image", "at least 1 chars long"]),
    ({"env": [{"name": "TOKEN", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
     ["spec.env[0].valueFrom", "set either value or valueFrom, not both"]),
    ({"env": [{"name": "", "value": "x"}]}, ["spec.env[0].name", "at least 1 chars long"]),
    ({"env": [{"name": "PATHS", "value": "/x"}, {"name": "WANDB_API_KEY", "value": "0123abcd"}]},
     ["spec.env[1].value", "a secret must not be written into the job: put it in a Secret and use "
      "valueFrom.secretKeyRef (for the W&B key: spec.wandb.apiKeySecret)"]),
    ({"env": [{"name": "HF_TOKEN", "value": "hf_x"}]}, ["spec.env[0].value", "a secret must not be written"]),
    ({"wandb": {"apiKeySecret": {"name": "wandb"}}}, ["spec.wandb.apiKeySecret.key", "Required value"]),
    ({"tolerations": [{"key": "gpu", "operator": "Exists", "value": "yes"}]},
     ["spec.tolerations[0].value", "operator Exists matches every value of the taint; remove value, or use operator "
      "Equal"]),
    ({"tolerations": [{"operator": "Equal", "value": "yes"}]},
     ["spec.tolerations[0].operator", "an empty key matches every taint, which needs operator Exists"]),
    ({"tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 60}]},
     ["spec.tolerations[0].tolerationSeconds", "tolerationSeconds applies only to effect NoExecute"]),
    ({"resources": {"limits": {"nvidia.com/gpu": -1}}},
     ["spec.resources.limits", "nvidia.com/gpu must be a whole number of GPUs, 0 or more"]),
    ({"resources": {"limits": {"nvidia.com/gpu": "1.5"}}},
     ["spec.resources.limits", "nvidia.com/gpu must be a whole number of GPUs, 0 or more"]),
    ({"resources": {"requests": {"nvidia.com/gpu": 2}, "limits": {"nvidia.com/gpu": 4}}},
     ["spec.resources.requests", "GPUs cannot be overcommitted: a nvidia.com/gpu request needs an equal limit"]),
    ({"resources": {"requests": {"nvidia.com/gpu": 2}}},
     ["spec.resources.requests", "GPUs cannot be overcommitted"]),
    ({"nprocPerNode": 8, "resources": {"limits": {"nvidia.com/gpu": "4"}}},
     ["spec.nprocPerNode", "nprocPerNode must not exceed the pod's nvidia.com/gpu limit"]),
    ({"checkpoint": {"size": "20 GB"}}, ["spec.checkpoint.size", "should match"]),
    ({"checkpoint": {"mountPath": "/dev/shm"}},
     ["spec.checkpoint.mountPath", "mountPath must not be / or a path the operator mounts"]),
    ({"checkpoint": {"mountPath": "/etc//llmtj/"}}, ["spec.checkpoint.mountPath", "/etc/llmtj: the config"]),
    ({"imagePullPolicy": "Sometimes"}, ["spec.imagePullPolicy", "Unsupported value", '"Sometimes"']),
    ({"terminationGracePeriodSeconds": -1}, ["spec.terminationGracePeriodSeconds", "greater than or equal to 0"]),
    ({"activeDeadlineSeconds": 0}, ["spec.activeDeadlineSeconds", "greater than or equal to 1"]),
    ({"ttlSecondsAfterFinished": -1}, ["spec.ttlSecondsAfterFinished", "greater than or equal to 0"]),
    ({"rendezvousPort": 70000}, ["spec.rendezvousPort", "less than or equal to 65535"]),
    ({"configFrom": {"configMapKeyRef": {"name": ""}}},
     ["spec.configFrom.configMapKeyRef.name", "at least 1 chars long"]),
    ({"configFrom": {"configMapKeyRef": {"name": "cfg", "key": ""}}},
     ["spec.configFrom.configMapKeyRef.key", "at least 1 chars long"]),
]


@pytest.mark.parametrize("spec, expected", BAD, ids=[str(i) for i in range(len(BAD))])
def test_api_server_rejects_with_the_field_named(crd, namespace, spec, expected):
    proc = crd.kubectl("apply", "-n", namespace, "-f", "-", input=job_yaml(spec))
    assert proc.returncode != 0, f"accepted: {spec}"
    for text in expected:
        assert text in proc.stderr, proc.stderr
    assert crd.kubectl("get", "llmtj", "-n", namespace, "-o", "name").stdout.strip() == ""  # nothing half-made


@pytest.mark.parametrize("name", ["a" * 50, "my.job", "1job"], ids=["long", "dot", "digit"])
def test_a_name_the_pods_cannot_use_is_refused(crd, namespace, name):
    proc = crd.kubectl("apply", "-n", namespace, "-f", "-", input=job_yaml({}, name=name))
    assert proc.returncode != 0, f"accepted: {name}"
    assert f'metadata.name: Invalid value: "{name}": must be at most 49 characters of lowercase letters, digits ' \
           "and '-', starting with a letter" in proc.stderr, proc.stderr
    assert "choose another name" in proc.stderr
    assert crd.kubectl("get", "llmtj", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_values_at_the_edge_of_the_rules_are_accepted(crd, namespace):
    spec = {"nprocPerNode": 4, "resources": {"limits": {"nvidia.com/gpu": "4"}, "requests": {"nvidia.com/gpu": 4}},
            "tolerations": [{"operator": "Exists"}, {"key": "k", "operator": "Exists", "effect": "NoExecute",
                                                     "tolerationSeconds": 5}, {"key": "k", "value": "v"}],
            "env": [{"name": "A", "value": "", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "checkpoint": {"mountPath": "/checkpoints/dev/shm"}, "image": "trainer:1"}
    for name, job_spec in (("a" * 49, {}), ("edge", spec), ("cpu", {"nprocPerNode": 4,
                                                                    "resources": {"limits": {"nvidia.com/gpu": 0}}})):
        proc = crd.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=job_yaml(job_spec, name))
        assert proc.returncode == 0, proc.stderr


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
