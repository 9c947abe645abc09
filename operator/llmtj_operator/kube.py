"""The one module that talks to the API server (official ``kubernetes`` client, synchronous; kopf runs the
handlers in threads). Creates are idempotent: 409 AlreadyExists means someone (an earlier run of this operator)
got there first, which is success."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

from .api import GROUP, PLURAL, VERSION
from .peering import CLUSTER_PLURAL, KOPF_GROUP, KOPF_VERSION, NAMESPACED_PLURAL
from .podgroup import APIS, PodGroupAPI

log = logging.getLogger(__name__)
COMPONENT = "llm-training-operator"
# kept-alive connections: one per handler thread (handlers.WORKERS) and to spare; the client's default (5 x CPUs)
# made a burst discard connections and pay a TLS handshake per request on both ends
POOL_SIZE = 32
DISCOVERY_SECONDS = 60  # how long the list of served PodGroup APIs is trusted (a scheduler installed later is seen)


class Conflict(Exception):
    """A write made on a copy of the job older than the server's (409 Conflict): read it again and redo the pass."""


def _raw(call: Any, *args: Any, **kwargs: Any) -> bytes:
    """An API call whose answer stays JSON bytes: the client's model objects (a V1Pod, a V1Node) cost more CPU to
    build than the rest of a reconcile, and a burst of new jobs is CPU-bound. A non-2xx answer still raises."""
    resp = call(*args, _preload_content=False, **kwargs)
    try:
        return resp.data
    finally:
        resp.release_conn()


def load_config(kubeconfig: str | None = None) -> None:
    """In a pod: its ServiceAccount; elsewhere: the kubeconfig ($KUBECONFIG or ~/.kube/config)."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig)
    settings = client.Configuration.get_default_copy()
    settings.connection_pool_maxsize = POOL_SIZE
    client.Configuration.set_default(settings)


class Kube:
    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self.client = api_client or client.ApiClient()
        self.core = client.CoreV1Api(self.client)
        self.custom = client.CustomObjectsApi(self.client)
        self._served: tuple[float, list[PodGroupAPI]] | None = None

    # --- the job -----------------------------------------------------------------------------------------------
    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def patch_status(self, namespace: str, name: str, status: dict[str, Any],
                     version: str | None = None) -> dict[str, Any] | None:
        """Write the job's status; the job as the server now has it (None: deleted meanwhile, nothing to report
        on). ``version``: the resourceVersion the status was computed from; a job changed since raises Conflict."""
        body: dict[str, Any] = {"status": status}
        if version:
            body["metadata"] = {"resourceVersion": version}
        try:
            return json.loads(_raw(self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace,
                                   PLURAL, name, body))
        except ApiException as e:
            if e.status == 409:
                raise Conflict(f"{namespace}/{name} changed since resourceVersion {version}") from None
            if e.status != 404:
                raise
            return None

    def delete_job(self, namespace: str, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                        propagation_policy="Background")
        except ApiException as e:
            if e.status != 404:
                raise

    def list_jobs(self, namespaces: list[str] | None) -> list[dict[str, Any]]:
        """Every job in these namespaces (None: all)."""
        if namespaces is None:
            return json.loads(_raw(self.custom.list_cluster_custom_object, GROUP, VERSION, PLURAL))["items"]
        return [j for ns in namespaces
                for j in json.loads(_raw(self.custom.list_namespaced_custom_object, GROUP, VERSION, ns,
                                         PLURAL))["items"]]

    # --- children ----------------------------------------------------------------------------------------------
    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Create ``obj`` (Service, ConfigMap, PVC, Pod): the object as created, or None if it already existed."""
        ns, kind = obj["metadata"]["namespace"], obj["kind"]
        create = {"Service": self.core.create_namespaced_service, "ConfigMap": self.core.create_namespaced_config_map,
                  "PersistentVolumeClaim": self.core.create_namespaced_persistent_volume_claim,
                  "Pod": self.core.create_namespaced_pod}[kind]
        try:
            return json.loads(_raw(create, ns, obj))
        except ApiException as e:
            if e.status == 409:
                return None
            raise

    def served_pod_group_apis(self) -> list[PodGroupAPI]:
        """The gang schedulers' PodGroup APIs this cluster serves (API discovery, which every user may read)."""
        now = time.monotonic()
        if self._served is None or now - self._served[0] > DISCOVERY_SECONDS:
            served = []
            for api in APIS:
                try:
                    found = self.custom.get_api_resources(api.group, api.version)
                except ApiException as e:
                    if e.status != 404:  # 404: that group is not served
                        raise
                    continue
                if any(r.name == api.plural for r in found.resources or []):
                    served.append(api)
            self._served = (now, served)
        return self._served[1]

    def apply_pod_group(self, api: PodGroupAPI, obj: dict[str, Any]) -> None:
        """Create the job's PodGroup, or bring the fields we set (minMember, minResources) up to date."""
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        try:
            self.custom.create_namespaced_custom_object(api.group, api.version, ns, api.plural, obj)
            return
        except ApiException as e:
            if e.status != 409:
                raise
        current = self.custom.get_namespaced_custom_object(api.group, api.version, ns, api.plural, name)
        if {k: (current.get("spec") or {}).get(k) for k in obj["spec"]} != obj["spec"]:
            self.custom.patch_namespaced_custom_object(api.group, api.version, ns, api.plural, name,
                                                       {"spec": obj["spec"]})

    def read_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return json.loads(_raw(self.core.read_namespaced_config_map, name, namespace))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def replace_config_map_data(self, namespace: str, name: str, data: dict[str, str]) -> None:
        _raw(self.core.patch_namespaced_config_map, name, namespace, {"data": data})

    def claim_exists(self, namespace: str, name: str) -> bool:
        try:
            _raw(self.core.read_namespaced_persistent_volume_claim, name, namespace)
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Plain dicts straight from the JSON: building the client's model objects and turning them back into
        dicts costs more CPU than the rest of a reconcile."""
        return self.list_pods_at(namespace, selector)[0]

    def list_pods_at(self, namespace: str | None, selector: str) -> tuple[list[dict[str, Any]], str]:
        """The pods of one namespace (None: all) and the resourceVersion of that listing, to watch from."""
        if namespace is None:
            data = json.loads(_raw(self.core.list_pod_for_all_namespaces, label_selector=selector))
        else:
            data = json.loads(_raw(self.core.list_namespaced_pod, namespace, label_selector=selector))
        return data.get("items") or [], data["metadata"]["resourceVersion"]

    def watch_pods(self, namespace: str | None, selector: str, version: str | None,
                   seconds: int) -> Iterator[dict[str, Any]]:
        """The watch events ({type, object}) after ``version``, as JSON dicts, until the server ends the stream after
        ``seconds``; bookmarks included."""
        kwargs = {"label_selector": selector, "watch": True, "resource_version": version,
                  "allow_watch_bookmarks": True, "timeout_seconds": seconds, "_preload_content": False,
                  "_request_timeout": (10, seconds + 30)}  # a dead connection is noticed, a quiet one is not cut
        if namespace is None:
            resp = self.core.list_pod_for_all_namespaces(**kwargs)
        else:
            resp = self.core.list_namespaced_pod(namespace, **kwargs)
        try:
            for line in iter_resp_lines(resp):
                if line:
                    yield json.loads(line)
        finally:
            resp.close()
            resp.release_conn()

    def node_ready(self, name: str) -> bool:
        """Whether a node's kubelet reports Ready (False for a node that is gone)."""
        try:
            node = json.loads(_raw(self.core.read_node, name))
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in (node.get("status") or {}).get("conditions") or [])

    def set_scheduling_gates(self, namespace: str, name: str, gates: list[dict[str, str]]) -> dict[str, Any] | None:
        """Replace a pod's scheduling gates (the API only lets them shrink): the scheduler takes it when none remain.
        The pod as patched (None: gone)."""
        try:
            return json.loads(_raw(self.core.patch_namespaced_pod, name, namespace,
                                   [{"op": "replace", "path": "/spec/schedulingGates", "value": gates}]))
        except ApiException as e:
            if e.status != 404:
                raise
            return None

    def delete_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> dict[str, Any] | None:
        """The pod as the deletion left it (marked for deletion, or its last state), None if it was gone."""
        try:
            answer = json.loads(_raw(self.core.delete_namespaced_pod, name, namespace,
                                     grace_period_seconds=grace_seconds))
        except ApiException as e:
            if e.status != 404:
                raise
            return None
        return answer if answer.get("kind") == "Pod" else None

    # --- peering -----------------------------------------------------------------------------------------------
    def ensure_peering(self, obj: dict[str, Any]) -> None:
        """Create kopf's peering object (cluster-wide, or in a namespace) unless it exists."""
        group, version = obj["apiVersion"].split("/")
        ns = obj["metadata"].get("namespace")
        try:
            if ns:
                self.custom.create_namespaced_custom_object(group, version, ns, NAMESPACED_PLURAL, obj)
            else:
                self.custom.create_cluster_custom_object(group, version, CLUSTER_PLURAL, obj)
        except ApiException as e:
            if e.status != 409:
                raise

    def peering_records(self, name: str, namespace: str | None) -> dict[str, Any]:
        """The replicas' records in kopf's peering object (its status); empty while it does not exist."""
        try:
            if namespace:
                obj = self.custom.get_namespaced_custom_object(KOPF_GROUP, KOPF_VERSION, namespace, NAMESPACED_PLURAL,
                                                               name)
            else:
                obj = self.custom.get_cluster_custom_object(KOPF_GROUP, KOPF_VERSION, CLUSTER_PLURAL, name)
        except ApiException as e:
            if e.status == 404:
                return {}
            raise
        return obj.get("status") or {}

    # --- events ------------------------------------------------------------------------------------------------
    def event(self, job: dict[str, Any], kind: str, reason: str, message: str) -> None:
        meta = job["metadata"]
        now = datetime.now(timezone.utc)
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": job["apiVersion"], "kind": job["kind"], "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta["uid"]},
            "type": kind, "reason": reason, "message": message[:1024],
            "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
            "firstTimestamp": now.isoformat(), "lastTimestamp": now.isoformat(), "count": 1,
        }
        try:
            _raw(self.core.create_namespaced_event, meta["namespace"], body)
        except ApiException as e:  # an event is best effort: never fail a reconcile over it
            log.warning("could not post event %s on %s: %s", reason, meta["name"], e.reason)
