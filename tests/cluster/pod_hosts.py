"""Per-pod /etc/hosts: the test bed's stand-in for cluster DNS (there is no CoreDNS and no kube-proxy).

Names resolve straight to pod IPs (127.0.N.k on loopback): a pod's hostname.subdomain records, and a Service name to
the first Running+Ready pod its selector matches (so Service ports must equal the target ports).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

DOMAIN = "cluster.local"
HEADER = "# Kubernetes-managed hosts file (test bed node agent: pod and Service names map to pod IPs).\n"


def pod_hostname(pod: dict) -> str:
    """The pod's hostname: spec.hostname, else the pod name (truncated to a DNS label, like kubelet)."""
    spec, meta = pod.get("spec", {}), pod.get("metadata", {})
    return (spec.get("hostname") or meta.get("name", ""))[:63].rstrip("-.")


def subdomain_names(hostname: str, subdomain: str, namespace: str) -> list[str]:
    """A hostname+subdomain pod's names, longest first except that `.svc` leads (see render_hosts)."""
    base = f"{hostname}.{subdomain}"
    return [f"{base}.{namespace}.svc", f"{base}.{namespace}.svc.{DOMAIN}", f"{base}.{namespace}", base]


def service_names(name: str, namespace: str) -> list[str]:
    return [f"{name}.{namespace}.svc.{DOMAIN}", f"{name}.{namespace}.svc", f"{name}.{namespace}", name]


def _is_live(pod: dict) -> bool:
    """Pods that DNS would still serve: not terminal and not being deleted."""
    return pod.get("status", {}).get("phase") not in ("Succeeded", "Failed") and not pod.get("metadata", {}).get(
        "deletionTimestamp"
    )


def _is_ready(pod: dict) -> bool:
    status = pod.get("status", {})
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return status.get("phase") == "Running" and ready


def _pod_ip(pod: dict, known_ips: Mapping[str, str]) -> str:
    return known_ips.get(pod.get("metadata", {}).get("uid", "")) or pod.get("status", {}).get("podIP") or ""


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def render_hosts(
    pod: dict,
    pod_ip: str,
    pods: Iterable[dict],
    services: Iterable[dict],
    known_ips: Mapping[str, str] | None = None,
) -> str:
    """The hosts file of `pod` given every pod and Service of the cluster (other namespaces are skipped).

    known_ips (uid -> IP) covers pods of this node whose status.podIP is not written yet.  The pod's own line comes
    first and leads with `<hostname>.<subdomain>.<ns>.svc`: glibc reports a line's first name as the canonical name,
    and torch's c10d rendezvous decides that it hosts the store when the canonical name of socket.gethostname()
    equals the endpoint host, which the operator writes in that `.svc` form.
    """
    known_ips = known_ips or {}
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    namespace, uid = meta.get("namespace", ""), meta.get("uid")
    hostname = pod_hostname(pod)
    lines = [HEADER, "127.0.0.1\tlocalhost\n", "::1\tlocalhost ip6-localhost ip6-loopback\n"]
    taken = {"localhost"}
    own = [*subdomain_names(hostname, spec["subdomain"], namespace), hostname] if spec.get("subdomain") else [hostname]
    if pod_ip:
        lines.append(f"{pod_ip}\t{' '.join(own)}\n")
        taken.update(own)
    peers = sorted(
        (
            p
            for p in pods
            if p.get("metadata", {}).get("namespace") == namespace and p.get("metadata", {}).get("uid") != uid
        ),
        key=lambda p: p.get("metadata", {}).get("name", ""),
    )
    live = [p for p in peers if _is_live(p)]
    for peer in live:
        peer_spec, ip = peer.get("spec", {}), _pod_ip(peer, known_ips)
        if not (ip and peer_spec.get("hostname") and peer_spec.get("subdomain")):
            continue
        names = [n for n in subdomain_names(peer_spec["hostname"], peer_spec["subdomain"], namespace) if n not in taken]
        if names:
            lines.append(f"{ip}\t{' '.join(names)}\n")
            taken.update(names)
    everyone = sorted([pod, *live], key=lambda p: p.get("metadata", {}).get("name", ""))
    for svc in sorted(services, key=lambda s: s.get("metadata", {}).get("name", "")):
        line = _service_line(svc, namespace, everyone, taken, {**known_ips, **({uid: pod_ip} if uid else {})})
        if line:
            lines.append(line)
    return "".join(lines)


def _service_line(svc: dict, namespace: str, pods: list[dict], taken: set[str], known_ips: Mapping[str, str]) -> str:
    meta, spec = svc.get("metadata", {}), svc.get("spec", {})
    if meta.get("namespace") != namespace or spec.get("type") == "ExternalName":
        return ""
    selector = spec.get("selector") or {}
    for pod in pods:
        labels = pod.get("metadata", {}).get("labels") or {}
        ip = _pod_ip(pod, known_ips)
        if ip and _is_ready(pod) and _is_live(pod) and _selects(selector, labels):
            names = [n for n in service_names(meta.get("name", ""), namespace) if n not in taken]
            taken.update(names)
            return f"{ip}\t{' '.join(names)}\n" if names else ""
    return ""


def write_in_place(path: Path, content: str) -> bool:
    """Rewrite the file without replacing its inode (a bind mount pins the inode); True when it changed."""
    data = content.encode()
    if not path.exists():
        path.write_bytes(data)
        return True
    with open(path, "r+b") as fh:
        if fh.read() == data:
            return False
        fh.seek(0)
        fh.write(data)
        fh.truncate()
    return True
