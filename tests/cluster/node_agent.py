"""The test bed's node agent: plays kubelet for one Node, running pods' containers as local processes.

    python tests/cluster/node_agent.py --kubeconfig K --node NAME --dir DIR --ip-prefix 127.0.N \\
        --cpu 8 --memory 32Gi --gpus G --api-host 127.0.0.1 --api-port P

It registers the Node, renews its Lease (every 2 s) and Ready condition (every 5 s), polls the pods every 0.5 s
(a consistent list from the API server's cache; simpler than a watch and robust to API server restarts), runs the
pods bound to it, keeps their /etc/hosts current (every 1 s) and reports their status.  On SIGTERM/SIGINT it kills
its pods' processes and exits without a word to the API server, as a machine that vanished would.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling modules, however this file is started

from agent_kube import STRATEGIC_PATCH, Kube, KubeError, delete_pod, retry
from pod_hosts import render_hosts
from pod_runner import AgentContext, PodRunner
from pod_status import TERMINAL, lost_pod_status

log = logging.getLogger("node-agent")
POLL_S, HOSTS_S, LEASE_S, STATUS_S = 0.5, 1.0, 2.0, 5.0
KUBELET_VERSION = "v1.37.2"  # what the node reports; matches the test bed's control plane


class IpPool:
    """Pod IPs <prefix>.2 .. <prefix>.254; the lowest free one is handed out, freed IPs are reused."""

    def __init__(self, prefix: str) -> None:
        self.prefix, self.used = prefix, set[str]()

    def allocate(self, prefer: str | None = None) -> str:
        if prefer and prefer.startswith(self.prefix + ".") and prefer not in self.used:
            self.used.add(prefer)
            return prefer
        for k in range(2, 255):
            ip = f"{self.prefix}.{k}"
            if ip not in self.used:
                self.used.add(ip)
                return ip
        raise RuntimeError(f"no free pod IP under {self.prefix}")

    def release(self, ip: str) -> None:
        self.used.discard(ip)


def node_status(args: argparse.Namespace, host_ip: str, ready_since: str) -> dict:
    resources = {"cpu": str(args.cpu), "memory": args.memory, "pods": "110", "ephemeral-storage": "100Gi"}
    if args.gpus > 0:
        resources["nvidia.com/gpu"] = str(args.gpus)
    stamp = _now()
    pressure = [
        {"type": t, "status": "False", "reason": f"KubeletHas{r}", "lastHeartbeatTime": stamp,
         "lastTransitionTime": ready_since}
        for t, r in (("MemoryPressure", "SufficientMemory"), ("DiskPressure", "NoDiskPressure"),
                     ("PIDPressure", "SufficientPID"))
    ]  # fmt: skip
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "node agent is posting ready status",
        "lastHeartbeatTime": stamp,
        "lastTransitionTime": ready_since,
    }
    return {
        "capacity": resources,
        "allocatable": resources,
        "addresses": [{"type": "InternalIP", "address": host_ip}, {"type": "Hostname", "address": args.node}],
        "conditions": [*pressure, ready],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": args.node, "systemUUID": args.node, "bootID": str(os.getpid()),
            "kernelVersion": platform.release(), "osImage": "test bed node agent", "operatingSystem": "linux",
            "architecture": "amd64", "containerRuntimeVersion": "local://0.1", "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
        },
    }  # fmt: skip


def _now(micro: bool = False) -> str:
    """RFC 3339 UTC; leases need MicroTime (microseconds)."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


class NodeAgent:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.kube = Kube(args.kubeconfig)
        self.host_ip = f"{args.ip_prefix}.1"
        self.ips = IpPool(args.ip_prefix)
        self.runners: dict[str, PodRunner] = {}
        self.done: set[str] = set()  # pods this agent ran to the end: never start them again
        self.deleted: set[str] = set()  # pods whose final delete was sent (finalizers may keep them listed)
        self.pods: list[dict] = []
        self.services: list[dict] = []
        self.ready_since = _now()
        allocatable = {"cpu": str(args.cpu), "memory": args.memory, "ephemeral-storage": "100Gi"}
        self.ctx = AgentContext(
            kube=self.kube, node=args.node, root=Path(args.dir).resolve(), host_ip=self.host_ip,
            api_host=args.api_host, api_port=args.api_port, allocatable=allocatable, hosts_for=self.render,
            backoff_initial=args.backoff_initial, backoff_max=args.backoff_max,
        )  # fmt: skip

    # -- the Node and its heartbeats -----------------------------------------------------------------------------

    def register(self) -> None:
        """Create the Node, or adopt it after a restart; taints are left to kube-controller-manager."""
        labels = {"kubernetes.io/hostname": self.args.node, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.args.node, "labels": labels}}
        path = f"/api/v1/nodes/{self.args.node}"
        while True:
            try:
                if self.kube.get_or_none(path) is None:
                    self.kube.post("/api/v1/nodes", body)
                else:
                    self.kube.patch(path, {"metadata": {"labels": labels}})
                self.patch_node_status()
                log.info("node %s registered (%s)", self.args.node, self.host_ip)
                return
            except KubeError as exc:
                log.warning("registering node %s: %s; retrying", self.args.node, exc)
                time.sleep(1)

    def patch_node_status(self) -> None:
        status = node_status(self.args, self.host_ip, self.ready_since)
        self.kube.patch(f"/api/v1/nodes/{self.args.node}/status", {"status": status}, STRATEGIC_PATCH)

    def renew_lease(self) -> None:
        name, ns = self.args.node, "kube-node-lease"
        spec = {"holderIdentity": name, "leaseDurationSeconds": 10, "renewTime": _now(micro=True)}
        path = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}"
        try:
            self.kube.patch(path, {"spec": spec})
        except KubeError as exc:
            if exc.status != 404:
                raise
            node = self.kube.get(f"/api/v1/nodes/{name}")
            owner = {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]}
            meta = {"name": name, "namespace": ns, "ownerReferences": [owner]}
            self.kube.post(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases", {"metadata": meta, "spec": spec})

    def heartbeat(self) -> None:
        last_status, failing = time.monotonic(), False
        while True:
            try:
                self.renew_lease()
                if time.monotonic() - last_status >= STATUS_S:
                    self.patch_node_status()
                    last_status = time.monotonic()
                failing = False
            except KubeError as exc:
                log.log(logging.DEBUG if failing else logging.WARNING, "heartbeat: %s", exc)
                failing = True
                if exc.status == 404 and "/nodes/" in str(exc):  # the Node was deleted: register again, as kubelet
                    self.register()
            time.sleep(LEASE_S)

    # -- pods ----------------------------------------------------------------------------------------------------

    def render(self, pod: dict, ip: str) -> str:
        known = {uid: r.ip for uid, r in list(self.runners.items())}  # runner threads call this too
        return render_hosts(pod, ip, self.pods, self.services, known)

    def run(self) -> None:
        self.register()
        threading.Thread(target=self.heartbeat, name="heartbeat", daemon=True).start()
        first, last_hosts, failing = True, 0.0, False
        while True:
            try:
                self.pods = self.kube.get("/api/v1/pods").get("items", [])
                if time.monotonic() - last_hosts >= HOSTS_S:
                    self.services = self.kube.get("/api/v1/services").get("items", [])
            except KubeError as exc:  # e.g. the API server restarting: say so once, keep trying
                log.log(logging.DEBUG if failing else logging.WARNING, "listing pods: %s", exc)
                failing = True
                time.sleep(POLL_S)
                continue
            if failing:
                log.info("listing pods works again")
                failing = False
            mine = [p for p in self.pods if p.get("spec", {}).get("nodeName") == self.args.node]
            if first:
                self.adopt(mine)
                first = False
            self.sync(mine)
            if time.monotonic() - last_hosts >= HOSTS_S:
                self.refresh_hosts()
                last_hosts = time.monotonic()
            time.sleep(POLL_S)

    def adopt(self, mine: list[dict]) -> None:
        """Pods a previous agent on this node had started: their processes died with it (a lost node).

        As kubelet after a reboot: restartPolicy Never pods become Failed (reason NodeLost, containers terminated
        with ContainerStatusUnknown / 137); OnFailure and Always pods start again on their old IP, with restart
        counts raised, init containers rerun and, for OnFailure, completed containers left completed.
        """
        for pod in mine:
            status, meta = pod.get("status") or {}, pod["metadata"]
            started = status.get("startTime") or status.get("containerStatuses")
            if not started or status.get("phase") in TERMINAL or meta.get("deletionTimestamp"):
                continue
            if pod["spec"].get("restartPolicy") == "Never":
                log.info("pod %s/%s was lost with the previous agent: Failed", meta["namespace"], meta["name"])
                path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
                retry("mark lost pod", lambda: self.kube.patch(path, lost_pod_status(pod), STRATEGIC_PATCH),
                      attempts=5, give_up_on=(404,))  # fmt: skip
                self.done.add(meta["uid"])
            else:
                log.info("pod %s/%s was lost with the previous agent: restarting", meta["namespace"], meta["name"])
                self.start(pod, previous=status)

    def sync(self, mine: list[dict]) -> None:
        seen = set()
        for pod in mine:
            meta = pod["metadata"]
            uid = meta["uid"]
            seen.add(uid)
            runner = self.runners.get(uid)
            if runner is not None:
                runner.observe(pod)
                if meta.get("deletionTimestamp"):
                    runner.request_delete(grace_period(pod))
            elif meta.get("deletionTimestamp"):
                if uid not in self.deleted:  # never started here, or already finished: nothing to stop
                    self.deleted.add(uid)
                    threading.Thread(target=delete_pod, args=(self.kube, pod), daemon=True).start()
            elif uid not in self.done and (pod.get("status") or {}).get("phase") not in TERMINAL:
                self.start(pod)
        for uid, runner in list(self.runners.items()):
            if uid not in seen:
                log.info("pod %s/%s is gone from the API: killing it", runner.namespace, runner.name)
                runner.kill()
            if uid not in seen or runner.finished.is_set():
                del self.runners[uid]
                self.ips.release(runner.ip)
                self.done.add(uid)
                if runner.deleted:  # otherwise a deletion that came too late for the runner is done next round
                    self.deleted.add(uid)

    def start(self, pod: dict, previous: dict | None = None) -> None:
        meta = pod["metadata"]
        try:
            ip = self.ips.allocate(prefer=(previous or {}).get("podIP"))
        except RuntimeError as exc:
            log.error("pod %s/%s: %s", meta["namespace"], meta["name"], exc)
            return
        try:
            runner = PodRunner(self.ctx, pod, ip, previous)
        except Exception as exc:  # malformed beyond what the runner's own error handling covers
            log.exception("pod %s/%s cannot be run", meta["namespace"], meta["name"])
            self.ips.release(ip)
            self.done.add(meta["uid"])
            body = {
                "status": {"phase": "Failed", "reason": "NodeAgentError", "message": f"{type(exc).__name__}: {exc}"}
            }
            path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
            retry("fail pod", lambda: self.kube.patch(path, body, STRATEGIC_PATCH), attempts=5, give_up_on=(404,))
            return
        log.info("pod %s/%s: starting on %s", meta["namespace"], meta["name"], ip)
        self.runners[meta["uid"]] = runner
        runner.start()

    def refresh_hosts(self) -> None:
        for runner in list(self.runners.values()):
            try:
                runner.refresh_hosts(self.render(runner.pod, runner.ip))
            except OSError as exc:
                log.warning("hosts of %s/%s: %s", runner.namespace, runner.name, exc)

    def shutdown(self, signum: int, _frame: object) -> None:
        """Lose the node: kill every pod process, write nothing to the API server, exit.

        The work happens on a thread because the signal may arrive while the main thread holds a runner's lock."""
        log.info("signal %d: killing %d pods and exiting", signum, len(self.runners))
        threading.Thread(target=self._die, daemon=True).start()

    def _die(self) -> None:
        for runner in list(self.runners.values()):
            runner.kill()
        logging.shutdown()
        os._exit(0)


def grace_period(pod: dict) -> int:
    meta, spec = pod["metadata"], pod["spec"]
    grace = meta.get("deletionGracePeriodSeconds")
    return int(grace if grace is not None else spec.get("terminationGracePeriodSeconds", 30))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--node", required=True, help="the Node's name")
    p.add_argument("--dir", required=True, help="state folder: DIR/pods/<ns>_<pod>_<uid>/ holds logs and volumes")
    p.add_argument("--ip-prefix", required=True, help="e.g. 127.0.1: the node is .1, pods get .2 upward")
    p.add_argument("--cpu", default="8")
    p.add_argument("--memory", default="32Gi")
    p.add_argument("--gpus", type=int, default=0)
    p.add_argument("--api-host", default="127.0.0.1", help="KUBERNETES_SERVICE_HOST given to pods")
    p.add_argument("--api-port", type=int, required=True, help="KUBERNETES_SERVICE_PORT given to pods")
    p.add_argument("--backoff-initial", type=float, default=1.0, help="crash-loop backoff start (kubelet: 10 s)")
    p.add_argument("--backoff-max", type=float, default=30.0, help="crash-loop backoff cap (kubelet: 300 s)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=f"%(asctime)s node-agent[{args.node}] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    agent = NodeAgent(args)
    signal.signal(signal.SIGTERM, agent.shutdown)
    signal.signal(signal.SIGINT, agent.shutdown)
    agent.run()


if __name__ == "__main__":
    main()
