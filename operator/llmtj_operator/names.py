"""Deterministic names and labels of a job's children: the same job always renders the same objects."""

from __future__ import annotations

JOB_LABEL = "llmtj.dev/job-name"
INDEX_LABEL = "llmtj.dev/replica-index"
ROLE_LABEL = "llmtj.dev/role"
RESTARTS_ANNOTATION = "llmtj.dev/restart-count"  # the job's restart count when this pod was created
GANG_GATE = "llmtj.dev/gang"  # scheduling gate holding a job's released pods until its gang is tried again
# Kueue's plain-pod-group integration: the queue (copied from the job's label), the group and its size.
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_GROUP_LABEL = "kueue.x-k8s.io/pod-group-name"
KUEUE_COUNT_ANNOTATION = "kueue.x-k8s.io/pod-group-total-count"
MANAGED_BY = "llm-training-operator"
CONTAINER = "trainer"
CONFIG_KEY = "config.yaml"
CONFIG_MOUNT = "/etc/llmtj"
METRICS_PORT = 9450  # each worker pod's Prometheus endpoint (llmtj-worker; docs/metrics.md), container port "metrics"


def service(job: str) -> str:
    return f"{job}-workers"


def config_map(job: str) -> str:
    return f"{job}-config"


def claim(job: str) -> str:
    return f"{job}-checkpoints"


def worker(job: str, index: int) -> str:
    return f"{job}-worker-{index}"


def rendezvous(job: str) -> str:
    """The pod that serves the job's rendezvous store (``llmtj-rendezvous``)."""
    return f"{job}-rendezvous"


def rendezvous_labels(job: str) -> dict[str, str]:
    return {JOB_LABEL: job, ROLE_LABEL: "rendezvous"}


def selector_labels(job: str) -> dict[str, str]:
    return {JOB_LABEL: job, ROLE_LABEL: "worker"}


def selector(job: str, labels: dict[str, str] | None = None) -> str:
    """A label selector as a string; the worker pods' by default (status.selector, for the scale subresource)."""
    return ",".join(f"{k}={v}" for k, v in (labels or selector_labels(job)).items())


def common_labels(job: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "llm-training-job", "app.kubernetes.io/instance": job,
            "app.kubernetes.io/managed-by": MANAGED_BY, JOB_LABEL: job}


def rendezvous_host(job: str, namespace: str) -> str:
    """The store pod's stable DNS name through the headless Service (pod hostname + subdomain)."""
    return f"{rendezvous(job)}.{service(job)}.{namespace}.svc"
