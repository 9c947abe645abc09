"""Start and stop the test bed: a real Kubernetes control plane on loopback, with Python node agents as kubelets.

    eval "$(python tests/cluster/cluster.py up --dir /tmp/tb --nodes 2 --gpus-per-node 2)"   # one line: export ...
    python tests/cluster/cluster.py down --dir /tmp/tb

``up`` runs etcd, kube-apiserver (RBAC on), kube-controller-manager and kube-scheduler, each under its own
identity, plus the hostPath provisioner and one node agent per node; every process is detached (its own session),
logs to DIR/logs/<name>.log, and is recorded in DIR/state.json. ``up`` on a DIR whose test bed is running reuses it
(restarting any dead node agent or provisioner) when the node count and GPUs match, and fails, saying to run
``down``, when they differ or the control plane is partly down. ``up`` after ``down`` starts again on the same PKI
and etcd data. ``down`` is idempotent and safe on a half-started DIR.
"""

from __future__ import annotations

import argparse
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if __package__:
    from . import build, components, pki, procs
else:  # run as a script
    sys.path.insert(0, str(HERE))
    import build  # noqa: E402
    import components  # noqa: E402
    import pki  # noqa: E402
    import procs  # noqa: E402

CONTROL_PLANE = ("etcd", "apiserver", "controller-manager", "scheduler")  # start order; stopped in reverse
STORAGE_CLASS = {
    "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
    "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": "llmtj.test/hostpath", "volumeBindingMode": "Immediate", "reclaimPolicy": "Retain",
}


def log(msg: str) -> None:
    print(f"[testbed] {msg}", file=sys.stderr, flush=True)


def _timestamp(rfc3339: str | None) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() if rfc3339 else 0.0


# ---- the handle -------------------------------------------------------------------------------------------------

@dataclass
class Cluster:
    dir: Path
    state: dict[str, Any]

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def bin_dir(self) -> Path:
        return Path(self.state["bin_dir"])

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.state['ports']['apiserver']}"

    @property
    def nodes(self) -> list[str]:
        return [f"node-{i}" for i in range(1, self.state["nodes"] + 1)]

    def env_line(self) -> str:
        return f"export KUBECONFIG={self.kubeconfig} PATH={self.bin_dir}:$PATH"

    def kubectl(self, *args: str, check: bool = False, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
                              capture_output=True, text=True, check=check, input=input)

    def api_client(self) -> Any:
        from kubernetes import config  # imported here: `up` itself needs only the standard library
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    @cached_property
    def _tls(self) -> ssl.SSLContext:
        p = pki.Pki(self.dir / "pki")
        ctx = ssl.create_default_context(cafile=str(p.ca_crt))
        ctx.load_cert_chain(str(p.crt("admin")), str(p.key("admin")))
        return ctx

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                content_type: str = "application/json") -> tuple[int, Any]:
        """A small admin HTTPS call with no client library: (status, decoded JSON or text)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method,
                                     headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, context=self._tls, timeout=10) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def get(self, path: str) -> Any:
        """The decoded body of an admin GET when it answers 200, else None (also while the server is down)."""
        try:
            status, body = self.request("GET", path)
        except OSError:  # refused / reset while starting
            return None
        return body if status == 200 else None

    def wait(self, what: str, ready: Any, timeout: float = 60.0) -> None:
        """Poll ``ready()`` until true; fail at once, with its log's tail, if a process it needs has died."""
        deadline = time.monotonic() + timeout
        while not ready():
            for name, proc in self.state["procs"].items():
                if proc.get("pid") and not procs.alive(proc):
                    tail = (self.dir / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{name} exited while waiting for {what}; log tail:\n{tail}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (logs in {self.dir / 'logs'})")
            time.sleep(0.25)

    def api_ready(self) -> bool:
        return self.get("/readyz") is not None

    def nodes_ready(self, names: list[str] | None = None, since: float = 0.0) -> bool:
        """The nodes (default: all) are Ready and their agents renewed their Lease after ``since`` (a time.time()):
        Node objects outlive a ``down``, so a Ready condition alone may be stale."""
        body = self.get("/api/v1/nodes")
        leases = self.get("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases")
        ready = {n["metadata"]["name"] for n in (body or {}).get("items", [])
                 if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))}
        fresh = {le["metadata"]["name"] for le in (leases or {}).get("items", [])
                 if _timestamp(le["spec"].get("renewTime")) > since}
        return set(self.nodes if names is None else names) <= ready & fresh

    def _start(self, name: str) -> None:
        self.state["procs"][name] = procs.spawn(self.dir, name, self.state["procs"][name]["cmd"])
        procs.save_state(self.dir, self.state)

    def _stop(self, name: str, grace: float = 5.0) -> None:
        procs.terminate([self.state["procs"][name]], grace)
        procs.save_state(self.dir, self.state)

    def stop_node(self, name: str) -> None:
        """Kill one node agent (SIGTERM, then SIGKILL): its Lease stops, and the node goes NotReady in ~15 s."""
        self._stop(name)

    def start_node(self, name: str, wait: bool = True) -> None:
        since = time.time()
        self._start(name)
        if wait:
            self.wait(f"{name} Ready", lambda: self.nodes_ready([name], since))

    def restart_apiserver(self, downtime: float = 0.0) -> None:
        """Restart the control plane's API side as a control-plane node's reboot or upgrade does: stop
        kube-controller-manager, kube-scheduler and kube-apiserver, stay down ``downtime`` seconds, start the API
        server with the same flags, wait for /readyz, then start the other two. etcd and the nodes keep running.

        The two go with it because they do not survive it reliably: kube-controller-manager v1.37, its informers
        refused (RBAC not yet loaded) by a restarted API server, can stall for good (no ServiceAccount or namespace
        handled again; seen after the second or third restart). The API server stops serving at once on SIGTERM but
        then lingers on its clients' open watches, hence the short grace."""
        for name in ("scheduler", "controller-manager"):
            self._stop(name)
        self._stop("apiserver", grace=2.0)
        time.sleep(downtime)
        self._start("apiserver")
        self.wait("kube-apiserver /readyz", self.api_ready)
        for name in ("controller-manager", "scheduler"):
            self._start(name)
        _wait_controllers(self)


# ---- up / down --------------------------------------------------------------------------------------------------

def _reuse(d: Path, state: dict[str, Any], nodes: int, gpus: int, hollow: int = 0) -> Cluster:
    c = Cluster(d, state)
    down = [n for n in CONTROL_PLANE if not procs.alive(state["procs"].get(n, {}))]
    if down or (state["nodes"], state["gpus_per_node"], state.get("hollow_nodes", 0)) != (nodes, gpus, hollow):
        why = f"{', '.join(down)} not running" if down else (
            f"it has {state['nodes']} nodes x {state['gpus_per_node']} GPUs")
        raise RuntimeError(f"{d} holds a test bed that cannot be reused ({why}); "
                           f"run `python {HERE / 'cluster.py'} down --dir {d}` first")
    for name, proc in state["procs"].items():
        if name not in CONTROL_PLANE and not procs.alive(proc):
            log(f"restarting {name}")
            c._start(name)
    c.wait("kube-apiserver /readyz", c.api_ready)
    since = time.time() - 10  # a live agent renews its Lease every 2 s
    c.wait("nodes Ready", lambda: c.nodes_ready(since=since))
    log(f"reusing the running test bed in {d}")
    return c


def _binaries() -> Path:
    try:
        return build.build(build.bin_dir())
    except SystemExit as e:  # build.py exits with the reason (e.g. no `go`); callers want an exception
        raise RuntimeError(f"cannot build the test bed's binaries: {e}") from None


def start(d: Path | str, nodes: int = 2, gpus_per_node: int = 2, hollow_nodes: int = 0) -> Cluster:
    """A test bed in ``d`` (reused when it runs there already): ``nodes`` node agents that run pods as processes and
    ``hollow_nodes`` nodes whose pods run nothing (load tests), ``gpus_per_node`` GPUs each."""
    t0 = time.monotonic()
    d = Path(d).resolve()
    d.mkdir(parents=True, exist_ok=True)
    old = procs.load_state(d)
    if any(procs.alive(p) for p in old.get("procs", {}).values()):
        return _reuse(d, old, nodes, gpus_per_node, hollow_nodes)
    bins = _binaries()
    p = pki.ensure(d / "pki")
    old_ports = old.get("ports", {})  # the same ports when free: an existing KUBECONFIG keeps working
    ports: dict[str, int] = {}
    for n in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler"):
        ports[n] = procs.free_port(old_ports.get(n), taken=set(ports.values()))
    server = f"https://127.0.0.1:{ports['apiserver']}"
    pki.kubeconfig(d / "kubeconfig", server, p, "admin")
    for n in ("controller-manager", "scheduler"):
        pki.kubeconfig(d / f"{n}.kubeconfig", server, p, n)
    (d / "audit-policy.yaml").write_text(components.AUDIT_POLICY)
    cmds = components.commands(d, bins, p, ports)
    for i in range(1, nodes + 1):
        cmds[f"node-{i}"] = components.node_command(d, i, gpus_per_node, ports["apiserver"])
    if hollow_nodes:
        cmds["hollow"] = components.hollow_command(d, hollow_nodes, gpus_per_node)
    state = {"bin_dir": str(bins), "ports": ports, "nodes": nodes, "gpus_per_node": gpus_per_node,
             "hollow_nodes": hollow_nodes,
             "procs": {n: {"pid": None, "start": "", "cmd": cmd} for n, cmd in cmds.items()}}
    procs.save_state(d, state)
    c = Cluster(d, state)
    try:
        _boot(c)
    except BaseException:  # a failed `up` leaves nothing running; the logs stay for a look
        stop(d)
        raise
    log(f"test bed ready in {time.monotonic() - t0:.1f}s ({d})")
    return c


def _boot(c: Cluster) -> None:
    t0 = time.monotonic()
    log(f"starting etcd and kube-apiserver on {c.server}")
    c._start("etcd")
    c._start("apiserver")
    c.wait("kube-apiserver /readyz", c.api_ready)
    status, body = c.request("POST", "/apis/storage.k8s.io/v1/storageclasses", STORAGE_CLASS)
    if status not in (201, 409):
        raise RuntimeError(f"creating StorageClass standard: HTTP {status}: {body}")
    log(f"kube-apiserver ready after {time.monotonic() - t0:.1f}s; starting controllers and {len(c.nodes)} node(s)")
    since = time.time()
    for name in c.state["procs"].keys() - {"etcd", "apiserver"}:
        c._start(name)
    c.wait("the default ServiceAccount", lambda: c.get("/api/v1/namespaces/default/serviceaccounts/default"))
    _wait_controllers(c)
    c.wait(f"{len(c.nodes)} node(s) Ready", lambda: c.nodes_ready(since=since))


def _wait_controllers(c: Cluster) -> None:
    """Wait for kcm to have finished starting its controllers, seen as it re-creating a deleted ServiceAccount.

    Objects in a reused etcd (default/default above) prove nothing about this kcm; and while it starts its
    controllers kcm exits on the first refused connection, so a test's restart_apiserver() must not come sooner.
    """
    path = "/api/v1/namespaces/kube-public/serviceaccounts/default"  # nobody uses it; kcm puts it back
    c.request("DELETE", path)
    c.wait("kube-controller-manager's controllers", lambda: c.get(path))


def stop(d: Path | str) -> None:
    """Stop everything recorded in DIR/state.json: node agents and provisioner first, then the control plane."""
    d = Path(d).resolve()
    state = procs.load_state(d)
    recorded = state.get("procs", {})
    if not recorded:
        return
    procs.terminate([p for n, p in recorded.items() if n not in CONTROL_PLANE])
    for name in reversed(CONTROL_PLANE):
        if name in recorded:
            procs.terminate([recorded[name]])
    procs.save_state(d, state)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start (or reuse) a test bed; prints one `export ...` line")
    up.add_argument("--dir", required=True, type=Path)
    up.add_argument("--nodes", type=int, default=2)
    up.add_argument("--gpus-per-node", type=int, default=2)
    down = sub.add_parser("down", help="stop the test bed in DIR (idempotent)")
    down.add_argument("--dir", required=True, type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "down":
        stop(args.dir)
        return
    try:
        c = start(args.dir, nodes=args.nodes, gpus_per_node=args.gpus_per_node)
    except (RuntimeError, TimeoutError) as e:
        sys.exit(f"error: {e}")
    print(c.env_line(), flush=True)


if __name__ == "__main__":
    main()
