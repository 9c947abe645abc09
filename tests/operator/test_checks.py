"""What the operator refuses up front: a global batch some reachable world size breaks, a podTemplate that breaks
the worker pods."""

from __future__ import annotations

import pytest

from llmtj_operator.api import JobSpec
from llmtj_operator.checks import batch_problem, pod_template_problem
from llmtj_operator.reconcile import Rejected, check_inputs
from llmtj_operator.render import build_pod

from .jobs import job


def spec(replicas: int, lo: int, hi: int, nproc: int = 1) -> JobSpec:
    return JobSpec.model_validate({"replicas": replicas, "nprocPerNode": nproc,
                                   "elastic": {"minReplicas": lo, "maxReplicas": hi}})


@pytest.mark.parametrize("job, training, bad", [
    (spec(2, 1, 2), {"batch_size": 4, "global_batch_size": 8}, None),
    (spec(3, 1, 3), {"batch_size": 4, "global_batch_size": 24}, None),
    (spec(3, 1, 3), {"batch_size": 4, "global_batch_size": 8}, "3 pods x 1 = 3"),
    (spec(2, 2, 4, nproc=8), {"batch_size": 16, "global_batch_size": 512}, "3 pods x 8 = 24"),
    (spec(2, 1, 4), {"batch_size": "auto", "global_batch_size": 7}, None),  # auto: decided per world by the trainer
    (spec(2, 1, 4), {"batch_size": 4}, None),  # no global batch: it follows the world size
    (spec(2, 1, 4), {"global_batch_size": 32}, "3 pods x 1 = 3"),  # batch_size defaults to 8
])
def test_every_reachable_world_size_is_checked(job, training, bad):
    problem = batch_problem(job, {"training": training})
    if bad is None:
        assert problem is None
    else:
        assert problem.startswith("spec.config.training.global_batch_size:") and bad in problem
        assert "narrow the bounds" in problem


def test_malformed_config_is_left_to_the_schema_and_trainer():
    assert batch_problem(spec(1, 1, 1), {"training": "x"}) is None
    assert batch_problem(spec(1, 1, 1), {}) is None


@pytest.mark.parametrize("template", [
    None,
    {},
    {"metadata": {"labels": {"team": "a"}}, "spec": {"runtimeClassName": "nvidia", "restartPolicy": "Never"}},
    {"spec": {"containers": [{"name": "trainer", "imagePullPolicy": "Always"}, {"name": "sidecar", "image": "s"}]}},
    {"spec": {"volumes": [{"name": "dshm", "emptyDir": {"sizeLimit": "8Gi"}}, {"name": "data", "emptyDir": {}}]}},
])
def test_a_pod_template_that_keeps_the_pods_valid_passes(template):
    assert pod_template_problem(template) is None


@pytest.mark.parametrize("template, message", [
    ({"containers": [{"name": "sidecar", "image": "s"}]},
     "spec.podTemplate: containers is not a field of a pod template, which has only metadata and spec; move pod "
     "fields under spec.podTemplate.spec"),
    ({"spec": ["restartPolicy"]}, "spec.podTemplate.spec: must be a mapping, as in a Pod's spec"),
    ({"spec": {"restartPolicy": "OnFailure"}},
     "spec.podTemplate.spec.restartPolicy: set by the operator to Never: the operator replaces a failed pod itself "
     "and counts it against backoffLimit; remove it from the podTemplate"),
    ({"spec": {"hostname": "node0"}},
     "spec.podTemplate.spec.hostname: set by the operator to <job>-worker-<index>: the workers and the rendezvous "
     "store find each other by these names; remove it from the podTemplate"),
    ({"spec": {"subdomain": "mine"}}, "spec.podTemplate.spec.subdomain: set by the operator to the job's headless "
     "Service <job>-workers, through which the pods' names resolve; remove it from the podTemplate"),
    ({"spec": {"containers": [{"image": "trainer:v2"}]}},
     "spec.podTemplate.spec.containers[0]: has no name; containers merge into the worker pod's by name, and an "
     "unnamed one would replace them all; give it a name"),
    ({"spec": {"volumes": [{"name": "data", "emptyDir": {}}, {"emptyDir": {}}]}},
     "spec.podTemplate.spec.volumes[1]: has no name; volumes merge into the worker pod's by name, and an unnamed one "
     "would replace them all; give it a name"),
    ({"spec": {"containers": {"name": "trainer"}}}, "spec.podTemplate.spec.containers: must be a list, as in a Pod's "
     "spec"),
    ({"spec": {"containers": [{"name": "trainer"}, {"name": "sidecar"}]}},
     "spec.podTemplate.spec.containers[1]: container sidecar has no image; only the operator's trainer container gets "
     "one from the job: set image, or name the container trainer to change that one"),
    ({"spec": {"volumes": [{"name": "checkpoints", "emptyDir": {}}]}},
     "spec.podTemplate.spec.volumes[0]: checkpoints is the operator's persistentVolumeClaim volume, and emptyDir "
     "would give it a second source, which the API server refuses; name your volume differently (or use "
     "spec.checkpoint for the checkpoint volume)"),
], ids=["bare-pod-spec", "spec-not-mapping", "restart-policy", "hostname", "subdomain", "unnamed-container",
        "unnamed-volume", "containers-not-list", "sidecar-without-image", "second-volume-source"])
def test_a_pod_template_that_breaks_the_pods_is_refused_naming_the_field(template, message):
    assert pod_template_problem(template) == message


class NoCluster:
    """A Kube that must not be asked anything: a bad podTemplate is refused before the cluster is consulted."""

    def __getattr__(self, name):
        raise AssertionError(f"kube.{name} called")


def test_check_inputs_refuses_a_bad_pod_template_before_anything_else():
    bad = job({"podTemplate": {"spec": {"restartPolicy": "Always"}}, "checkpoint": {"claimName": "absent"}})
    with pytest.raises(Rejected) as err:
        check_inputs(NoCluster(), bad)
    assert err.value.reason == "InvalidPodTemplate"
    assert err.value.message.startswith("spec.podTemplate.spec.restartPolicy: set by the operator to Never")
    assert build_pod(bad, 0)["spec"]["restartPolicy"] == "Always"  # what would have been made: the merge lets it win
