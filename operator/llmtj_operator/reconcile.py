"""One reconcile of one job: read it, check what the schema cannot, apply the rendered children, write status.

Every trigger (the job listed, created or changed, one of its pods changed, the periodic resync) ends here, one pass
per job at a time (workqueue.py), so there is one status writer. The job and its pods are read from the cache, and
what the pass writes goes back into it; the status write names the job's resourceVersion, so a pass that worked on
an outdated copy is refused (409) and done again on the server's. Nothing is created for a job that fails its checks.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import yaml
from pydantic import ValidationError

from . import conditions as cond
from . import faults, metrics, names, progress
from .api import JobSpec
from .cache import Cache
from .checks import batch_problem, pod_template_problem
from .clock import parse, timestamp
from .defaults import JobDefaults, queue, with_defaults
from .kube import Conflict, Kube
from .plan import TERMINAL, plan
from .podgroup import choose
from .pods import view
from .render import (
    Job,
    build_claim,
    build_config_map,
    build_pod,
    build_pod_group,
    build_rendezvous_pod,
    build_service,
)
from .store import store_action

log = logging.getLogger(__name__)
CONFLICT_TRIES = 3  # passes redone on a newer copy of the job before the resync is left to try again


class Rejected(Exception):
    """A job the operator refuses: becomes a Failed condition and a Warning event, never a crash."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def parse_spec(body: dict[str, Any], defaults: JobDefaults | None = None) -> JobSpec:
    """The job's spec, its unset fields filled from the operator's job defaults."""
    try:
        return JobSpec.model_validate(with_defaults(body.get("spec") or {}, defaults or JobDefaults()))
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise Rejected("InvalidSpec", f"spec.{where}: {first['msg']}; fix the field and re-apply the job") from None


def _yaml_mapping(text: str) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else ({} if data is None else None)


def check_inputs(kube: Kube, job: Job) -> None:
    """What only the cluster or the job's shape can answer, before anything is made: the ConfigMap and claim a job
    names exist, its config keeps its global batch at every world size the job may run at, and its podTemplate
    leaves the worker pods valid."""
    problem = pod_template_problem(job.spec.pod_template)
    if problem:
        raise Rejected("InvalidPodTemplate", problem)
    ref = job.spec.config_from.config_map_key_ref if job.spec.config_from else None
    if ref is not None:
        cm = kube.read_config_map(job.namespace, ref.name)
        if cm is None:
            raise Rejected("ConfigNotFound", f"spec.configFrom: ConfigMap {ref.name} not found in namespace "
                           f"{job.namespace}; create it, or put the config inline under spec.config")
        if ref.key not in (cm.get("data") or {}):
            raise Rejected("ConfigNotFound", f"spec.configFrom: ConfigMap {ref.name} has no key {ref.key}; "
                           f"keys: {', '.join(sorted(cm.get('data') or {})) or 'none'}")
        config = _yaml_mapping(cm["data"][ref.key])
        if config is None:
            raise Rejected("InvalidConfig", f"spec.configFrom: key {ref.key} of ConfigMap {ref.name} is not a YAML "
                           "mapping of trainer config sections; fix its content")
    else:
        config = job.spec.config or {}
    problem = batch_problem(job.spec, config)
    if problem:
        raise Rejected("InvalidConfig", problem)
    claim = job.spec.checkpoint.claim_name
    if claim and not kube.claim_exists(job.namespace, claim):
        raise Rejected("ClaimNotFound", f"spec.checkpoint.claimName: PersistentVolumeClaim {claim} not found in "
                       f"namespace {job.namespace}; create it, or drop claimName to let the operator create one")


def ensure_children(kube: Kube, job: Job) -> None:
    kube.create(build_service(job))
    cm = build_config_map(job)
    if cm is not None and not kube.create(cm):
        current = kube.read_config_map(job.namespace, cm["metadata"]["name"]) or {}
        if current.get("data") != cm["data"]:
            kube.replace_config_map_data(job.namespace, cm["metadata"]["name"], cm["data"])
    claim = build_claim(job)
    if claim is not None:
        kube.create(claim)
    group = build_pod_group(job)
    if group is not None:  # before the first worker, so that the gang scheduler never sees a pod without its group
        kube.apply_pod_group(job.pod_group, group)


def _reject(kube: Kube, cache: Cache, body: dict[str, Any], status: dict[str, Any], err: Rejected,
            now: datetime) -> None:
    stamp = timestamp(now)
    gen = body["metadata"].get("generation")
    new = {**status, "phase": "Failed", "completionTime": status.get("completionTime") or stamp,
           "lastError": err.message, "observedGeneration": gen,
           "conditions": cond.for_phase(status.get("conditions") or [], "Failed", err.reason, err.message, stamp, gen)}
    cache.put_job(kube.patch_status(body["metadata"]["namespace"], body["metadata"]["name"], new,
                                    body["metadata"].get("resourceVersion")))
    metrics.record_phase(body["metadata"]["namespace"], body["metadata"]["name"], "Failed")
    if status.get("phase") != "Failed":
        metrics.ERRORS.labels(body["metadata"]["namespace"], err.reason).inc()
        kube.event(body, "Warning", err.reason, err.message)


def _expired(status: dict[str, Any], spec: JobSpec, now: datetime) -> bool:
    done = status.get("completionTime")
    if spec.ttl_seconds_after_finished is None or not done:
        return False
    return now >= parse(done) + timedelta(seconds=spec.ttl_seconds_after_finished)


def reconcile(kube: Kube, cache: Cache, namespace: str, name: str, defaults: JobDefaults, resync: bool = False) -> None:
    """``resync`` (the periodic resync's turn) also re-applies children that exist already, healing ones deleted by
    hand; other passes skip that once the children were made for this generation."""
    with metrics.RECONCILE.time():
        try:
            for attempt in range(CONFLICT_TRIES):
                try:
                    return _pass(kube, cache, namespace, name, defaults, datetime.now(timezone.utc), resync)
                except Conflict:
                    if attempt == CONFLICT_TRIES - 1:
                        raise
                    cache.put_job(kube.get_job(namespace, name))  # the server's newer copy; then the pass again
        except Exception as e:
            metrics.ERRORS.labels(namespace, type(e).__name__).inc()
            raise


def forget(namespace: str, name: str) -> None:
    metrics.record_phase(namespace, name, None)
    progress.forget(namespace, name)


def _read(kube: Kube, cache: Cache, namespace: str, name: str) -> dict[str, Any] | None:
    """The job from the cache; from the API server when the cache has no copy (the operator's first seconds)."""
    if cache.deleted(namespace, name):
        return None
    body = cache.job(namespace, name)
    if body is None:
        body = kube.get_job(namespace, name)
        cache.put_job(body)
    return body


def _pass(kube: Kube, cache: Cache, namespace: str, name: str, defaults: JobDefaults, now: datetime,
          resync: bool) -> None:
    body = _read(kube, cache, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        metrics.record_phase(namespace, name, None)
        return  # gone or going: the garbage collector stops the pods (SIGTERM, grace period) and removes children
    status = body.get("status") or {}
    meta = body["metadata"]
    try:
        spec = parse_spec(body, defaults)
    except Rejected as err:
        if status.get("phase") not in TERMINAL:
            _reject(kube, cache, body, status, err, now)
        return
    if status.get("phase") in TERMINAL and _expired(status, spec, now):
        kube.delete_job(namespace, name)
        return
    job = Job(name=name, namespace=namespace, uid=meta["uid"], spec=spec, image=spec.image or defaults.image,
              queue=queue(meta.get("labels"), defaults),
              pod_group=choose(spec.scheduler_name, kube.served_pod_group_apis() if spec.scheduler_name else []))
    active = status.get("phase") not in TERMINAL and not spec.suspend
    created = cond.is_true(status.get("conditions") or [], "Created")
    if active and (resync or not created or status.get("observedGeneration") != meta.get("generation")):
        try:
            check_inputs(kube, job)
        except Rejected as err:
            _reject(kube, cache, body, status, err, now)
            return
        ensure_children(kube, job)
        if not created:
            status = {**status, "conditions": cond.upsert(status.get("conditions") or [], "Created", True,
                                                          "ChildrenCreated", "Service, ConfigMap and claim exist",
                                                          timestamp(now), meta.get("generation"))}
    pods = cache.pods(namespace, name)
    if pods is None:  # the pod watch has not listed them yet
        pods = kube.list_pods(namespace, f"{names.JOB_LABEL}={name}")
    owned = [p for p in pods if _owned(p, meta["uid"])]
    workers = [p for p in owned if _role(p) == "worker"]
    views = [v for v in (view(p) for p in workers) if v is not None]
    _release_from_lost_nodes(kube, cache, body, owned)
    result = plan(name, spec, meta.get("generation"), status, views, now)
    store = next((p for p in owned if _role(p) == "rendezvous"), None)
    keep = result.status.get("phase") not in TERMINAL and result.status.get("phase") != "Suspended"
    action = store_action(keep, store, any(not v.terminal and not v.deleting for v in views), bool(result.create))
    if action.delete:
        cache.put_pod(kube.delete_pod(namespace, names.rendezvous(name)))
    if action.create and _create_pod(kube, cache, build_rendezvous_pod(job)):
        metrics.POD_CREATIONS.labels(namespace, "rendezvous").inc()
    for pod_name in result.delete:
        cache.put_pod(kube.delete_pod(namespace, pod_name))
        faults.point("pod-delete")
    for index, restarts in result.create:
        if _create_pod(kube, cache, build_pod(job, index, restarts, gated=result.gated)):
            metrics.POD_CREATIONS.labels(namespace, "worker").inc()
        faults.point("pod-create")
    by_name = {p["metadata"]["name"]: p for p in workers}
    for pod_name in result.ungate:
        gates = (by_name[pod_name].get("spec") or {}).get("schedulingGates") or []
        cache.put_pod(kube.set_scheduling_gates(namespace, pod_name,
                                                [g for g in gates if g.get("name") != names.GANG_GATE]))
    result.status["worldSize"] = result.status.get("readyReplicas", 0) * spec.procs_per_pod
    if result.status.get("phase") == "Running" and progress.due(namespace, name):
        result.status.update(progress.read([p["status"]["podIP"] for p in workers if _serving(p)]))
    try:
        if result.status != status:
            cache.put_job(kube.patch_status(namespace, name, result.status, meta.get("resourceVersion")))
            faults.point("status-write")
    except Conflict:  # the job changed meanwhile: the pass is done again, but what this one did is told now
        _tell(kube, body, result.events)
        raise
    _tell(kube, body, result.events)
    metrics.record_phase(namespace, name, result.status.get("phase"), result.status.get("restartCount"))


def _tell(kube: Kube, body: dict[str, Any], events: list[tuple[str, str, str]]) -> None:
    for kind, reason, message in events:
        kube.event(body, kind, reason, message)
    metrics.record_events(body["metadata"]["namespace"], events)


def _create_pod(kube: Kube, cache: Cache, pod: dict[str, Any]) -> bool:
    """Create a pod and keep the answer: the next pass sees it even before its watch event comes."""
    created = kube.create(pod)
    cache.put_pod(created)
    return created is not None


def _release_from_lost_nodes(kube: Kube, cache: Cache, body: dict[str, Any], pods: list[dict[str, Any]]) -> None:
    """A pod being deleted on a node that is not Ready (lost, or cut off) never finishes: no kubelet confirms it,
    and its name, which the replacement needs, stays taken. Its processes are dead or fenced off from the job's
    rendezvous, so it is removed at once (grace 0) and replaced on a node that works. The job's tolerations of
    node.kubernetes.io/unreachable and not-ready (NoExecute) decide how soon a lost node's pods are evicted."""
    ready: dict[str, bool] = {}
    for pod in pods:
        name, node = pod["metadata"]["name"], (pod.get("spec") or {}).get("nodeName")
        if not node or not _maybe_stranded(pod):
            continue
        if node not in ready:
            ready[node] = kube.node_ready(node)
        if not ready[node]:
            cache.put_pod(kube.delete_pod(body["metadata"]["namespace"], name, grace_seconds=0))
            kube.event(body, "Warning", "NodeLost", f"{name} was on node {node}, which is not Ready: removed "
                       "without waiting for its kubelet so that a replacement can start on another node")


def _maybe_stranded(pod: dict[str, Any]) -> bool:
    """Deleting, and either evicted for a node taint (a lost node's NoExecute taint: DisruptionTarget, reason
    DeletionByTaintManager) or past its grace period: only then is its node worth a look. A pod deleted on a healthy
    node (scale-down, suspend) is gone within its grace period and costs no request; so does one whose kubelet has
    confirmed its end (its grace cut to 0: it is removed at once)."""
    meta = pod.get("metadata") or {}
    deletion = parse(meta.get("deletionTimestamp"))
    if deletion is None or meta.get("deletionGracePeriodSeconds") == 0:
        return False
    evicted = any(c.get("type") == "DisruptionTarget" and c.get("reason") == "DeletionByTaintManager"
                  for c in (pod.get("status") or {}).get("conditions") or [])
    return evicted or datetime.now(timezone.utc) > deletion


def _serving(pod: dict[str, Any]) -> bool:
    """A worker whose metrics endpoint may answer: running, with an address, not on its way out."""
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and bool(status.get("podIP")) and \
        not (pod.get("metadata") or {}).get("deletionTimestamp")


def _role(pod: dict[str, Any]) -> str | None:
    return ((pod.get("metadata") or {}).get("labels") or {}).get(names.ROLE_LABEL)


def _owned(pod: dict[str, Any], uid: str) -> bool:
    refs = (pod.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("controller") for r in refs)
