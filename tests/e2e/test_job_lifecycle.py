"""`kubectl apply -f job.yaml` trains on the test bed: operator pod -> worker pods -> torchrun (rendezvous through
the Service's DNS names) -> DDP over gloo -> checkpoints on the claim; delete keeps the claim."""

from __future__ import annotations

import pytest
import yaml

from distributed_llm_trainer.training.checkpoint_io import load_checkpoint_file

from .conftest import EXAMPLE
from .jobs import claim_dir, events, get_job, pod_logs, pods, poll, wait_gone, wait_phase

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_example_job_trains_to_success_and_delete_keeps_the_claim(operator, namespace):
    operator.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE), check=True)
    job = wait_phase(operator, namespace, "tiny", ("Succeeded", "Failed"), timeout=420)
    status = job["status"]
    assert status["phase"] == "Succeeded", f"{status}\n{pod_logs(operator, namespace)}"
    assert status["step"] == 40 and status["restartCount"] == 0 and status["startTime"] and status["completionTime"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Succeeded"] == "True"

    table = operator.kubectl("get", "llmtj", "-n", namespace).stdout.splitlines()
    assert table[1].split()[:4] == ["tiny", "Succeeded", "0/2", "40"], table

    workers = pods(operator, namespace, "llmtj.dev/job-name%3Dtiny,llmtj.dev/role%3Dworker")
    assert sorted(p["metadata"]["name"] for p in workers) == ["tiny-worker-0", "tiny-worker-1"]
    assert all(p["status"]["phase"] == "Succeeded" for p in workers)
    env = {e["name"]: e.get("value") for e in workers[0]["spec"]["containers"][0]["env"]}
    # the store pod serves the rendezvous (resolved in each pod); it goes once the job is finished
    assert env["PET_RDZV_ENDPOINT"] == f"tiny-rendezvous.tiny-workers.{namespace}.svc:29400"
    wait_gone(operator, f"/api/v1/namespaces/{namespace}/pods/tiny-rendezvous", timeout=60)
    assert "batch 4 x 2 devices" in pod_logs(operator, namespace, tail=10**6)  # one DDP group over both pods

    ckpt_dir = claim_dir(operator, namespace, "tiny-checkpoints") / "tiny" / "checkpoints"
    assert status["lastCheckpoint"]["path"] == "/checkpoints/tiny/checkpoints/last.ckpt"
    state = load_checkpoint_file(ckpt_dir / "last.ckpt")
    assert state["global_step"] == 40
    reasons = {e["reason"] for e in events(operator, namespace)}
    assert {"AllWorkersRunning", "TrainingFinished"} <= reasons, reasons

    # a finished job is not resized or suspended: a Warning Event says so, nothing starts (bad inputs P27, P28)
    def warned(prefix: str) -> bool:
        return any(e["reason"] == "JobFinished" and e["type"] == "Warning" and e["message"].startswith(prefix)
                   for e in events(operator, namespace))

    operator.kubectl("scale", "llmtj/tiny", "-n", namespace, "--replicas=1", check=True)
    assert poll(lambda: warned("spec.replicas=1 ignored: the job is Succeeded and never runs again"), timeout=30)
    operator.kubectl("patch", "llmtj", "tiny", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}',
                     check=True)
    assert poll(lambda: warned("spec.replicas=1 and spec.suspend=true ignored: the job is Succeeded"), timeout=30)
    after = get_job(operator, namespace, "tiny")["status"]
    assert after["phase"] == "Succeeded" and after["desiredReplicas"] == 2 and after["workers"] == "0/2"
    assert [p["status"]["phase"] for p in pods(operator, namespace, "llmtj.dev/role%3Dworker")] == ["Succeeded"] * 2

    operator.kubectl("delete", "llmtj", "tiny", "-n", namespace, "--wait=true", check=True)
    for path in (f"/api/v1/namespaces/{namespace}/pods/tiny-worker-0",
                 f"/api/v1/namespaces/{namespace}/services/tiny-workers",
                 f"/api/v1/namespaces/{namespace}/configmaps/tiny-config"):
        wait_gone(operator, path)  # the garbage collector follows the owner references
    assert operator.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/tiny-checkpoints") is not None
    assert (ckpt_dir / "last.ckpt").is_file()


def test_bad_trainer_config_fails_at_once_with_its_error_line(operator, namespace):
    job = yaml.safe_load(EXAMPLE.read_text())
    job["metadata"]["name"] = "badheads"
    job["spec"]["config"]["model"].update(hidden_size=64, num_attention_heads=5)  # the schema can't see this
    operator.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(job), check=True)
    status = wait_phase(operator, namespace, "badheads", ("Failed", "Succeeded"), timeout=180)["status"]
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["status"] == "True" and failed["reason"] == "InvalidInput", status
    assert "error: model.num_attention_heads" in failed["message"]
    assert status["restartCount"] == 0
    warnings = [e for e in events(operator, namespace) if e["type"] == "Warning" and e["reason"] == "InvalidInput"]
    assert warnings and "error: model.num_attention_heads" in warnings[0]["message"]
    names = {p["metadata"]["name"] for p in pods(operator, namespace)}
    assert names <= {"badheads-worker-0", "badheads-worker-1", "badheads-rendezvous"}  # never replaced
    assert get_job(operator, namespace, "badheads")["status"]["phase"] == "Failed"


@pytest.mark.parametrize("change, reason, words", [
    ({"checkpoint": {"claimName": "does-not-exist"}}, "ClaimNotFound", ["does-not-exist", "create it"]),
    ({"config": None, "configFrom": {"configMapKeyRef": {"name": "nocm"}}}, "ConfigNotFound", ["nocm", "create it"]),
    ({"config": None, "configFrom": {"configMapKeyRef": {"name": "cm", "key": "train.yaml"}}}, "ConfigNotFound",
     ["has no key train.yaml", "keys: config.yaml, list.yaml"]),
    ({"replicas": 3, "elastic": {"minReplicas": 1, "maxReplicas": 3}}, "InvalidConfig",
     ["global_batch_size: 8 is not a multiple of batch_size 4", "3 pods x 1 = 3"]),
    ({"config": None, "configFrom": {"configMapKeyRef": {"name": "cm", "key": "list.yaml"}}}, "InvalidConfig",
     ["not a YAML mapping"]),
    ({"podTemplate": {"spec": {"restartPolicy": "OnFailure"}}}, "InvalidPodTemplate",
     ["spec.podTemplate.spec.restartPolicy: set by the operator to Never", "remove it from the podTemplate"]),
], ids=["claim", "configmap", "key", "batch", "notyaml", "podtemplate"])
def test_missing_references_are_refused_and_nothing_is_created(operator, namespace, change, reason, words):
    operator.kubectl("create", "configmap", "cm", "-n", namespace, "--from-literal=config.yaml=training: {}",
                     "--from-literal=list.yaml=- a list", check=True)
    job = yaml.safe_load(EXAMPLE.read_text())
    job["metadata"]["name"] = "noref"
    job["spec"].update(change)
    job["spec"] = {k: v for k, v in job["spec"].items() if v is not None}
    operator.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(job), check=True)
    status = wait_phase(operator, namespace, "noref", ("Failed",), timeout=60)["status"]
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["reason"] == reason and all(w in failed["message"] for w in words), failed
    assert any(e["reason"] == reason and e["type"] == "Warning" for e in events(operator, namespace))
    assert pods(operator, namespace) == []
    for kind, name in (("services", "noref-workers"), ("configmaps", "noref-config"),
                       ("persistentvolumeclaims", "noref-checkpoints")):
        assert operator.get(f"/api/v1/namespaces/{namespace}/{kind}/{name}") is None
