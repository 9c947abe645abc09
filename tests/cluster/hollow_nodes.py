"""Hollow nodes: many Nodes in one process whose pods go Running without running anything, as KWOK does.

    python tests/cluster/hollow_nodes.py --kubeconfig K --count 50 [--prefix hollow] [--gpus 8] [--cpu 64]
        [--memory 512Gi] [--no-taint]

For load tests of the control plane and the operator: the scheduler places pods on these nodes as on real ones
(their capacity, GPUs included), and each bound pod is reported Running and Ready with its containers running; a
pod being deleted is removed at once (grace 0), as a kubelet does once its containers stopped. Each node renews its
Lease every 5 s, so kube-controller-manager keeps them Ready. The nodes carry the label and, unless --no-taint, the
NoSchedule taint ``llmtj.dev/hollow=true``, so that only pods that tolerate it land on them: a test bed shared with
real pods keeps running those on real nodes. On SIGTERM the process exits; its nodes go NotReady like lost ones.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling modules, however this file is started

from agent_kube import STRATEGIC_PATCH, Kube, KubeError, delete_pod, retry
from node_agent import _now, node_status

log = logging.getLogger("hollow-nodes")
HOLLOW = "llmtj.dev/hollow"
POLL_S, LEASE_S, STATUS_S = 0.5, 5.0, 60.0


def running_status(pod: dict, node_index: int, serial: int) -> dict:
    """What a kubelet reports for a pod whose containers all started and are ready."""
    stamp = _now()
    containers = [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True, "started": True,
                   "restartCount": 0, "containerID": f"hollow://{pod['metadata']['uid']}/{c['name']}",
                   "state": {"running": {"startedAt": stamp}}} for c in pod["spec"].get("containers", [])]
    conditions = [{"type": t, "status": "True", "lastTransitionTime": stamp}
                  for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")]
    ip = f"10.{100 + node_index // 250}.{node_index % 250}.{2 + serial % 250}"
    return {"status": {"phase": "Running", "hostIP": "10.99.0.1", "podIP": ip, "podIPs": [{"ip": ip}],
                       "startTime": stamp, "conditions": conditions, "containerStatuses": containers}}


class HollowNodes:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.kube = Kube(args.kubeconfig)
        self.names = [f"{args.prefix}-{i}" for i in range(1, args.count + 1)]
        self.index = {n: i for i, n in enumerate(self.names)}
        self.ready_since = _now()
        self.handled: set[str] = set()  # pod uids reported Running or deleted
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="hollow")
        self.serial = 0

    def _status(self, name: str) -> dict:
        shape = argparse.Namespace(node=name, cpu=self.args.cpu, memory=self.args.memory, gpus=self.args.gpus)
        return node_status(shape, "10.99.0.1", self.ready_since)

    def register(self) -> None:
        for name in self.names:
            labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", HOLLOW: "true"}
            spec = {"taints": [{"key": HOLLOW, "value": "true", "effect": "NoSchedule"}]} if self.args.taint else {}
            body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}, "spec": spec}
            retry(f"register {name}", lambda b=body: self.kube.post("/api/v1/nodes", b), attempts=10,
                  give_up_on=(409,))
            self.patch_status(name)
        log.info("%d hollow nodes registered", len(self.names))

    def patch_status(self, name: str) -> None:
        self.kube.patch(f"/api/v1/nodes/{name}/status", {"status": self._status(name)}, STRATEGIC_PATCH)

    def renew(self, name: str) -> None:
        ns = "kube-node-lease"
        spec = {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": _now(micro=True)}
        try:
            self.kube.patch(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}", {"spec": spec})
        except KubeError as exc:
            if exc.status != 404:
                raise
            uid = self.kube.get(f"/api/v1/nodes/{name}")["metadata"]["uid"]
            owner = {"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}
            self.kube.post(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
                           {"metadata": {"name": name, "namespace": ns, "ownerReferences": [owner]}, "spec": spec})

    def heartbeat(self) -> None:
        last_status = time.monotonic()
        while True:
            status_due = time.monotonic() - last_status >= STATUS_S
            for name in self.names:
                try:
                    self.renew(name)
                    if status_due:
                        self.patch_status(name)
                except KubeError as exc:
                    log.debug("heartbeat of %s: %s", name, exc)
            if status_due:
                last_status = time.monotonic()
            time.sleep(LEASE_S)

    def run_pod(self, pod: dict, node_index: int, serial: int) -> None:
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
        retry(f"run {meta['name']}", lambda: self.kube.patch(path, running_status(pod, node_index, serial),
                                                           STRATEGIC_PATCH), attempts=5, give_up_on=(404,))

    def sync(self) -> None:
        pods = self.kube.get("/api/v1/pods", resourceVersion="0").get("items", [])
        live = set()
        for pod in pods:
            node, meta = pod["spec"].get("nodeName"), pod["metadata"]
            if node not in self.index:
                continue
            uid = meta["uid"]
            live.add(uid)
            key = f"{uid}/deleted" if meta.get("deletionTimestamp") else uid
            if key in self.handled:
                continue
            self.handled.add(key)
            if meta.get("deletionTimestamp"):
                self.pool.submit(delete_pod, self.kube, pod)
            elif pod.get("status", {}).get("phase") in (None, "Pending"):
                self.serial += 1
                self.pool.submit(self.run_pod, pod, self.index[node], self.serial)
        self.handled = {k for k in self.handled if k.split("/")[0] in live}

    def run(self) -> None:
        self.register()
        threading.Thread(target=self.heartbeat, name="heartbeat", daemon=True).start()
        while True:
            try:
                self.sync()
            except KubeError as exc:  # the API server restarting: keep trying
                log.warning("listing pods: %s", exc)
            time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--prefix", default="hollow")
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--cpu", default="64")
    p.add_argument("--memory", default="512Gi")
    p.add_argument("--no-taint", dest="taint", action="store_false")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    HollowNodes(args).run()


if __name__ == "__main__":
    main()
