"""Job and pod dicts for the operator's pure tests (shapes as the API server returns them)."""

from __future__ import annotations

from typing import Any

from llmtj_operator import names
from llmtj_operator.api import JobSpec
from llmtj_operator.render import Job

UID = "0b5d6a2e-1111-2222-3333-444455556666"


def job(spec: dict[str, Any] | None = None, name: str = "tiny", namespace: str = "team-a") -> Job:
    return Job(name=name, namespace=namespace, uid=UID, spec=JobSpec.model_validate(spec or {}), image="trainer:test")


def pod(index: int, phase: str = "Running", *, ready: bool = True, exit_code: int | None = None, message: str = "",
        restarts: int = 0, deleting: bool = False, job_name: str = "tiny", node: str | None = "node-1",
        unschedulable: str = "", gated: bool = False) -> dict[str, Any]:
    """A worker pod; ``unschedulable``: the scheduler's message (unplaced), ``gated``: behind the gang gate."""
    state: dict[str, Any] = {"running": {"startedAt": "2026-12-02T00:00:00Z"}}
    if exit_code is not None:
        state = {"terminated": {"exitCode": exit_code, "message": message, "reason": "Error" if exit_code else
                                "Completed"}}
    meta: dict[str, Any] = {"name": names.worker(job_name, index), "namespace": "team-a",
                            "labels": {**names.selector_labels(job_name), names.INDEX_LABEL: str(index)},
                            "annotations": {names.RESTARTS_ANNOTATION: str(restarts)},
                            "ownerReferences": [{"uid": UID, "controller": True}]}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-02T00:00:00Z"
    spec: dict[str, Any] = {"nodeName": node} if node else {}
    if gated:
        spec["schedulingGates"] = [{"name": "kueue.x-k8s.io/admission"}, {"name": names.GANG_GATE}]
    status: dict[str, Any] = {"phase": phase}
    if node:
        status["containerStatuses"] = [{"name": names.CONTAINER, "ready": ready, "state": state}]
    if unschedulable:
        status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                 "message": unschedulable}]
    return {"metadata": meta, "spec": spec, "status": status}
