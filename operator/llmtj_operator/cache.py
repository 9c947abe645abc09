"""The operator's own copy of its jobs and their pods, so that a reconcile reads nothing from the API server.

Filled by the watches (kopf's on the jobs, informer.py's on the pods) and by the answers to the operator's own
writes: a pod it created or deleted, a status it wrote, is in the copy the moment the API server answers, before the
watch brings it. That write-through is what Kubeflow's controllers get from "expectations": the next pass never
takes a pod it just created for missing (and counts a restart) or a pod it just deleted for still failed (and
replaces it twice).

Rules, all under one lock:
- an object replaces the stored one only when its resourceVersion is newer: watch events and write answers come from
  different threads, and an older copy must never win;
- a deleted object's uid is remembered, so that a late write answer cannot bring it back;
- a namespace's pods are served only after its watch has listed them (``synced``); before that (the operator's
  first seconds) ``pods`` returns None and the reconcile lists them from the API server.

Stored objects are the API's JSON dicts, shared with readers: nobody mutates them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from . import names

Key = tuple[str, str]  # (namespace, name)
ALL = None  # the synced scope of a cluster-wide pod watch
TOMBSTONES = 20000  # deleted objects (uids) and jobs (keys) remembered; the oldest are forgotten first


def _rv(obj: dict[str, Any]) -> int | None:
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None  # not etcd's integers: compare nothing, the newest arrival wins


def _newer(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    if old is None or old["metadata"].get("uid") != new["metadata"].get("uid"):
        return True  # a different object of that name (recreated): the watch delivers it after the old one's end
    a, b = _rv(new), _rv(old)
    return a is None or b is None or a > b


def _key(obj: dict[str, Any]) -> Key:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def job_of(pod: dict[str, Any]) -> Key | None:
    """(namespace, job) of one of our pods, from its job label."""
    job = (pod["metadata"].get("labels") or {}).get(names.JOB_LABEL)
    return (pod["metadata"]["namespace"], job) if job else None


class Cache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[Key, dict[str, Any]] = {}
        # jobs whose deletion the watch reported, until one of that name is made
        self._deleted: OrderedDict[Key, None] = OrderedDict()
        self._pods: dict[Key, dict[str, dict[str, Any]]] = {}  # (namespace, job) -> pod name -> pod
        self._gone: OrderedDict[str, None] = OrderedDict()  # uids of deleted objects
        self._synced: set[str | None] = set()  # namespaces whose pods are listed (ALL: every namespace)

    # --- jobs ------------------------------------------------------------------------------------------------------
    def job(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._jobs.get((namespace, name))

    def deleted(self, namespace: str, name: str) -> bool:
        """The watch reported the job deleted (a pod event of its garbage collection needs no pass, nor a GET)."""
        with self._lock:
            return (namespace, name) in self._deleted

    def put_job(self, job: dict[str, Any] | None) -> None:
        if not job:
            return
        with self._lock:
            if job["metadata"].get("uid") not in self._gone and _newer(job, self._jobs.get(_key(job))):
                self._jobs[_key(job)] = job
                self._deleted.pop(_key(job), None)

    def drop_job(self, job: dict[str, Any]) -> None:
        with self._lock:
            self._bury(job)
            self._deleted[_key(job)] = None
            while len(self._deleted) > TOMBSTONES:
                self._deleted.popitem(last=False)
            current = self._jobs.get(_key(job))
            if current is not None and current["metadata"].get("uid") == job["metadata"].get("uid"):
                del self._jobs[_key(job)]

    # --- pods ------------------------------------------------------------------------------------------------------
    def pods(self, namespace: str, job: str) -> list[dict[str, Any]] | None:
        """The job's pods, or None while that namespace's pods are not listed yet."""
        with self._lock:
            if ALL not in self._synced and namespace not in self._synced:
                return None
            return list(self._pods.get((namespace, job), {}).values())

    def put_pod(self, pod: dict[str, Any] | None) -> Key | None:
        """Store a pod (a watch event's, or a create or delete answer); its job's key."""
        owner = job_of(pod) if pod else None
        if owner is None:
            return None
        with self._lock:
            if pod["metadata"].get("uid") in self._gone:
                return owner
            mine = self._pods.setdefault(owner, {})
            if _newer(pod, mine.get(pod["metadata"]["name"])):
                mine[pod["metadata"]["name"]] = pod
        return owner

    def drop_pod(self, pod: dict[str, Any]) -> Key | None:
        owner = job_of(pod)
        if owner is None:
            return None
        with self._lock:
            self._bury(pod)
            mine = self._pods.get(owner, {})
            current = mine.get(pod["metadata"]["name"])
            if current is not None and current["metadata"].get("uid") == pod["metadata"].get("uid"):
                del mine[pod["metadata"]["name"]]
                if not mine:
                    del self._pods[owner]
        return owner

    def replace_pods(self, namespace: str | None, pods: list[dict[str, Any]], version: str | None) -> set[Key]:
        """A fresh listing of one namespace's pods (None: all), taken at resourceVersion ``version``: it replaces
        what was stored there, except pods written after it (a create answered while the list was under way) and
        pods deleted since; the scope then counts as synced. Returns the jobs whose pods were stored or listed, whose
        reconcile may be owed."""
        listed_at = _rv({"metadata": {"resourceVersion": version}})
        with self._lock:
            fresh: dict[Key, dict[str, dict[str, Any]]] = {}
            for pod in pods:
                owner = job_of(pod)
                if owner is not None and pod["metadata"].get("uid") not in self._gone:
                    fresh.setdefault(owner, {})[pod["metadata"]["name"]] = pod
            stale = [k for k in self._pods if namespace is None or k[0] == namespace]
            touched = set(stale) | set(fresh)
            for k in stale:
                for name, pod in self._pods.pop(k).items():
                    rv = _rv(pod)
                    if listed_at is not None and rv is not None and rv > listed_at:
                        kept = fresh.setdefault(k, {})
                        if _newer(pod, kept.get(name)):
                            kept[name] = pod
            self._pods.update(fresh)
            self._synced.add(namespace)
        return touched

    def _bury(self, obj: dict[str, Any]) -> None:
        uid = obj["metadata"].get("uid")
        if uid:
            self._gone[uid] = None
            while len(self._gone) > TOMBSTONES:
                self._gone.popitem(last=False)
