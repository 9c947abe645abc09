"""PodGroups for gang schedulers (podgroup.py, render.build_pod_group): which API, the group, the pods' marks."""

from __future__ import annotations

import dataclasses

from llmtj_operator.podgroup import SCHEDULER_PLUGINS, VOLCANO, choose, min_resources
from llmtj_operator.render import build_pod, build_pod_group

from .jobs import UID, job

GPU_JOB = {"replicas": 4, "elastic": {"minReplicas": 2, "maxReplicas": 4}, "schedulerName": "scheduler-plugins",
           "resources": {"limits": {"nvidia.com/gpu": 8, "memory": "64Gi"}, "requests": {"cpu": "7500m"}}}


def test_the_api_follows_what_the_cluster_serves_and_the_scheduler_name():
    assert choose(None, [SCHEDULER_PLUGINS, VOLCANO]) is None  # no scheduler named: the default scheduler, no group
    assert choose("my-scheduler", []) is None  # no PodGroup CRD installed: no group
    assert choose("volcano", [SCHEDULER_PLUGINS]) is SCHEDULER_PLUGINS  # the one served
    assert choose("volcano", [SCHEDULER_PLUGINS, VOLCANO]) is VOLCANO
    assert choose("scheduler-plugins-scheduler", [SCHEDULER_PLUGINS, VOLCANO]) is SCHEDULER_PLUGINS


def test_min_resources_are_min_replicas_times_a_workers_requests():
    pod = build_pod(job(GPU_JOB), 0)
    # a limit stands in for a missing request (the API server defaults it so); decimals and suffixes kept
    assert min_resources(pod, 2) == {"nvidia.com/gpu": "16", "memory": "128Gi", "cpu": "15000m"}
    sidecar = {"name": "side", "resources": {"requests": {"cpu": "500m"}}}
    pod["spec"]["containers"].append(sidecar)
    assert min_resources(pod, 3)["cpu"] == "24000m"
    sidecar["resources"]["requests"]["cpu"] = "0.5"  # another unit than the trainer's: not summed, minMember only
    assert min_resources(pod, 3) is None
    assert min_resources(build_pod(job({}), 0), 2) is None  # asks for nothing


def test_scheduler_plugins_group_and_pod_label():
    j = dataclasses.replace(job(GPU_JOB), pod_group=SCHEDULER_PLUGINS)
    group = build_pod_group(j)
    assert group["apiVersion"] == "scheduling.x-k8s.io/v1alpha1" and group["kind"] == "PodGroup"
    assert group["metadata"]["name"] == "tiny" and group["metadata"]["namespace"] == "team-a"
    assert group["metadata"]["ownerReferences"][0]["uid"] == UID  # removed with the job
    assert group["spec"] == {"minMember": 2, "minResources": {"nvidia.com/gpu": "16", "memory": "128Gi",
                                                              "cpu": "15000m"}}
    pod = build_pod(j, 3)
    assert pod["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] == "tiny"
    assert pod["spec"]["schedulerName"] == "scheduler-plugins"


def test_volcano_group_and_pod_annotation():
    j = dataclasses.replace(job({**GPU_JOB, "schedulerName": "volcano"}), pod_group=VOLCANO)
    group = build_pod_group(j)
    assert group["apiVersion"] == "scheduling.volcano.sh/v1beta1" and group["spec"]["minMember"] == 2
    pod = build_pod(j, 0)
    assert pod["metadata"]["annotations"]["scheduling.k8s.io/group-name"] == "tiny"
    assert "scheduling.x-k8s.io/pod-group" not in pod["metadata"]["labels"]


def test_no_group_without_a_served_api():
    j = job(GPU_JOB)
    assert build_pod_group(j) is None
    pod = build_pod(j, 0)
    assert "scheduling.x-k8s.io/pod-group" not in pod["metadata"]["labels"]
    assert "scheduling.k8s.io/group-name" not in pod["metadata"]["annotations"]
