"""The pod watch: one LIST, then one WATCH, of every pod that carries the job label, feeding the cache.

One thread per watched namespace (or one for the whole cluster). Each event updates the cache and asks for a
reconcile of the pod's job. The stream is read as JSON lines, never as the client's model objects (a pod start is a
dozen events; building a V1Pod for each cost more CPU than the reconcile it triggers). A broken stream (the API
server restarted, a network blip) resumes from the last resourceVersion seen. When the API server refuses to go on
from it (410 Gone: compacted away; or any other error it answers with), the pods are listed afresh, and every job
whose pods the new listing touches is reconciled. Bookmarks keep that version current while nothing changes, so a
resume after a quiet hour does not need a relist.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kubernetes.client.rest import ApiException

from . import names
from .cache import Cache, Key
from .kube import Kube

log = logging.getLogger(__name__)
SELECTOR = names.JOB_LABEL  # the label exists: the operator's pods, workers and rendezvous stores
WATCH_SECONDS = 300  # the API server ends a watch after this long (it is then resumed from its last version)


class Stale(Exception):
    """The API server will not go on from the watch's resourceVersion (410 Gone, or another error answer): list
    again."""


class PodInformer:
    def __init__(self, kube: Callable[[], Kube], cache: Cache, namespace: str | None,
                 changed: Callable[[Key], None]) -> None:
        """``namespace``: the one to watch (None: all); ``changed``: called with a job's key after its pods changed."""
        self.kube, self.cache, self.namespace, self.changed = kube, cache, namespace, changed
        self.version: str | None = None  # the last resourceVersion seen; None: list (again)
        self.listed_at: str | None = None  # the latest listing's resourceVersion
        self.listed = False
        self.stop = threading.Event()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name=f"pods-{self.namespace or 'all'}", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        delay = 1.0
        while not self.stop.is_set():
            try:
                if self.version is None:
                    self.relist()
                self.follow()
                delay = 1.0
            except Stale as e:
                log.info("pod watch in %s: %s; listing again", self.namespace or "all namespaces", e)
                if self.version == self.listed_at:  # refused right after a listing: no tight loop of LIST + WATCH
                    self.stop.wait(delay)
                    delay = min(delay * 2, 5.0)
                self.version = None
            except Exception as e:  # the API server away: retry, resuming where the stream broke
                log.warning("pod watch in %s broke (%s); again in %.0f s", self.namespace or "all namespaces",
                            getattr(e, "reason", None) or e, delay)
                self.stop.wait(delay)
                delay = min(delay * 2, 5.0)  # an API server back from a restart is found within seconds

    def relist(self) -> None:
        pods, version = self.kube().list_pods_at(self.namespace, SELECTOR)
        touched = self.cache.replace_pods(self.namespace, pods, version)
        if self.listed:  # after a gap: what changed meanwhile is owed a reconcile (the first listing: kopf's is)
            for key in touched:
                self.changed(key)
        self.version, self.listed_at, self.listed = version, version, True

    def follow(self) -> None:
        try:
            for event in self.kube().watch_pods(self.namespace, SELECTOR, self.version, WATCH_SECONDS):
                if self.stop.is_set():
                    return
                kind, pod = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise Stale(f"{pod.get('code')} {pod.get('reason')}: {pod.get('message')}")
                self.version = (pod.get("metadata") or {}).get("resourceVersion") or self.version
                if kind == "BOOKMARK":
                    continue
                key = self.cache.drop_pod(pod) if kind == "DELETED" else self.cache.put_pod(pod)
                if key is not None:
                    self.changed(key)
        except ApiException as e:  # refused at the start (a connection that broke is no ApiException: resumed)
            raise Stale(f"{e.status} {e.reason}") from None
