"""The cluster's job defaults (the chart's jobDefaults): they fill what a job leaves unset and never override it;
a bad defaults file stops the operator before it runs a job."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmtj_operator import names
from llmtj_operator.__main__ import main
from llmtj_operator.defaults import DefaultsError, JobDefaults, load, queue
from llmtj_operator.reconcile import Rejected, parse_spec
from llmtj_operator.render import Job, build_claim, build_pod, build_rendezvous_pod

from .jobs import UID

ROOT = Path(__file__).resolve().parents[2]
GPU_DEFAULTS = JobDefaults.model_validate({
    "image": "registry.example/trainer:1", "imagePullPolicy": "IfNotPresent",
    "nodeSelector": {"nvidia.com/gpu.present": "true"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "priorityClassName": "training", "queueName": "team-queue",
    "checkpoint": {"storageClassName": "nfs", "size": "500Gi", "accessModes": ["ReadWriteMany"]}})


def rendered(spec: dict, defaults: JobDefaults, labels: dict | None = None) -> Job:
    body = {"metadata": {"labels": labels or {}}, "spec": spec}
    parsed = parse_spec(body, defaults)
    return Job(name="tiny", namespace="team-a", uid=UID, spec=parsed, image=parsed.image or defaults.image,
               queue=queue(labels, defaults))


def test_defaults_fill_every_field_a_job_leaves_unset():
    job = rendered({"replicas": 2, "checkpoint": {}}, GPU_DEFAULTS)
    pod = build_pod(job, 0)
    assert pod["spec"]["containers"][0]["image"] == "registry.example/trainer:1"
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    assert pod["spec"]["priorityClassName"] == "training"
    assert pod["metadata"]["labels"][names.KUEUE_QUEUE_LABEL] == "team-queue"
    assert build_rendezvous_pod(job)["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    claim = build_claim(job)["spec"]
    assert claim == {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "500Gi"}},
                     "storageClassName": "nfs"}


def test_a_job_s_own_values_win_whole():
    own = {"image": "mine:2", "nodeSelector": {"pool": "a100"}, "tolerations": [{"key": "x", "operator": "Exists"}],
           "priorityClassName": "low", "checkpoint": {"size": "5Gi", "accessModes": ["ReadWriteOnce"]}}
    job = rendered(own, GPU_DEFAULTS, labels={names.KUEUE_QUEUE_LABEL: "other"})
    pod = build_pod(job, 0)
    assert pod["spec"]["containers"][0]["image"] == "mine:2" and pod["spec"]["nodeSelector"] == {"pool": "a100"}
    assert [t["key"] for t in pod["spec"]["tolerations"]][0] == "x"  # replaced, not merged
    assert "nvidia.com/gpu" not in [t["key"] for t in pod["spec"]["tolerations"]]
    assert pod["spec"]["priorityClassName"] == "low"
    assert pod["metadata"]["labels"][names.KUEUE_QUEUE_LABEL] == "other"
    claim = build_claim(job)["spec"]
    assert claim["resources"]["requests"]["storage"] == "5Gi" and claim["accessModes"] == ["ReadWriteOnce"]
    assert claim["storageClassName"] == "nfs"  # the one checkpoint field the job left unset
    assert build_claim(rendered({"checkpoint": {"claimName": "mine"}}, GPU_DEFAULTS)) is None


def test_empty_defaults_set_nothing_and_none_means_the_built_in_ones():
    empty = JobDefaults.model_validate({"imagePullPolicy": "", "nodeSelector": {}, "tolerations": [],
                                        "priorityClassName": "", "queueName": "",
                                        "checkpoint": {"storageClassName": "", "size": None}})
    for defaults in (empty, load(None)):
        job = rendered({}, defaults)
        pod = build_pod(job, 0)
        assert pod["spec"]["containers"][0]["image"] == "ghcr.io/distributed-llm-trainer/trainer:0.1.0"
        assert "nodeSelector" not in pod["spec"] and "priorityClassName" not in pod["spec"]
        assert "imagePullPolicy" not in pod["spec"]["containers"][0] and job.queue is None
        assert build_claim(job)["spec"] == {"accessModes": ["ReadWriteMany"],
                                            "resources": {"requests": {"storage": "20Gi"}}}


def test_the_chart_s_default_values_are_valid_defaults(tmp_path):
    values = yaml.safe_load((ROOT / "helm" / "llm-training-operator" / "values.yaml").read_text())
    path = tmp_path / "job-defaults.yaml"
    path.write_text(yaml.safe_dump(values["jobDefaults"]))
    defaults = load(path)
    assert defaults.tolerations and defaults.tolerations[0].key == "nvidia.com/gpu"
    assert defaults.checkpoint.access_modes == ["ReadWriteMany"]


@pytest.mark.parametrize("text, message", [
    ("checkpoint: {size: lots}\n", "checkpoint.size: String should match pattern"),
    ("tolerations: [{effect: Sometimes}]\n", "tolerations.0.effect: Input should be"),
    ("imagee: x\n", "imagee: Extra inputs are not permitted"),
    ("image: [\n", "cannot be read"),
])
def test_a_bad_defaults_file_stops_the_operator_with_the_field_and_the_fix(tmp_path, capsys, text, message):
    path = tmp_path / "job-defaults.yaml"
    path.write_text(text)
    with pytest.raises(DefaultsError, match="fix"):
        load(path)
    assert main(["--job-defaults", str(path), "--metrics", ""]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: job defaults {path}: ") and message in err and "\n" not in err, err


@pytest.mark.parametrize("spec", [["a", "list"], {"checkpoint": ["not", "a", "map"]}, {"tolerations": "all"}])
def test_garbage_the_schema_never_allowed_stays_garbage_for_the_spec_check_to_name(spec):
    with pytest.raises(Rejected) as err:
        parse_spec({"spec": spec}, GPU_DEFAULTS)
    assert err.value.reason == "InvalidSpec" and err.value.message.startswith("spec."), err.value.message
