"""The command lines of the test bed's processes, with the reasons for their flags.

All listen on loopback only, on ports picked by cluster.py; the controller manager and the scheduler run under their
own identities (their bootstrap RBAC roles), with leader election off (one replica; no lease to lose).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__:
    from . import pki
else:
    import pki  # cluster.py, run as a script, has put this folder on sys.path

HERE = Path(__file__).resolve().parent


# The API server writes an audit record of every request the operator makes (and of nobody else's): a load test
# counts them per job, by verb and resource. One line per finished request; watches count once, when they end.
OPERATOR_USER = "system:serviceaccount:llmtj-system:llm-training-operator"
AUDIT_POLICY = f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
  - level: Metadata
    users: ["{OPERATOR_USER}"]
  - level: None
"""


def commands(d: Path, bins: Path, p: pki.Pki, ports: dict[str, int]) -> dict[str, list[str]]:
    etcd, peer, api = (f"http://127.0.0.1:{ports['etcd']}", f"http://127.0.0.1:{ports['etcd-peer']}",
                       ports["apiserver"])
    kc = {n: str(d / f"{n}.kubeconfig") for n in ("controller-manager", "scheduler")}
    own = {n: [f"--kubeconfig={kc[n]}", f"--authentication-kubeconfig={kc[n]}",
               f"--authorization-kubeconfig={kc[n]}", "--leader-elect=false", "--bind-address=127.0.0.1",
               f"--secure-port={ports[n]}"] for n in kc}
    return {
        "etcd": [str(bins / "etcd"), "--name=testbed", f"--data-dir={d / 'etcd'}", f"--listen-client-urls={etcd}",
                 f"--advertise-client-urls={etcd}", f"--listen-peer-urls={peer}",
                 f"--initial-advertise-peer-urls={peer}", f"--initial-cluster=testbed={peer}",
                 "--unsafe-no-fsync", "--log-level=warn"],  # no fsync: a test bed's data may be lost
        "apiserver": [
            str(bins / "kube-apiserver"), f"--etcd-servers={etcd}", "--bind-address=127.0.0.1",
            f"--secure-port={api}", "--advertise-address=127.0.0.1", "--authorization-mode=RBAC",
            f"--client-ca-file={p.ca_crt}", f"--tls-cert-file={p.crt('apiserver')}",
            f"--tls-private-key-file={p.key('apiserver')}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p.sa_pub}", f"--service-account-signing-key-file={p.sa_key}",
            "--service-cluster-ip-range=10.96.0.0/16", "--allow-privileged=true",
            "--enable-priority-and-fairness=false", "--event-ttl=15m", "--profiling=false",
            # Endpoints may not hold a loopback IP: with a reconciler the API server refuses to start ("cannot use
            # public IP 127.0.0.1 with endpoint reconciler"). Pods reach it at 127.0.0.1 directly, not via the Service.
            "--endpoint-reconciler-type=none",
            # A front-proxy CA that nobody holds a cert for (no CN front-proxy-client is issued): it only keeps the
            # controllers' delegated authn from logging "missing requestheader-client-ca-file" over and over.
            f"--requestheader-client-ca-file={p.ca_crt}", "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--audit-policy-file={d / 'audit-policy.yaml'}", f"--audit-log-path={d / 'audit.log'}",
            "--audit-log-format=json", "--audit-log-maxsize=200", "--audit-log-maxbackup=1"],
        "controller-manager": [
            str(bins / "kube-controller-manager"), *own["controller-manager"],
            f"--service-account-private-key-file={p.sa_key}", f"--root-ca-file={p.ca_crt}",
            f"--cluster-signing-cert-file={p.ca_crt}", f"--cluster-signing-key-file={p.ca_key}",
            "--use-service-account-credentials=true", "--controllers=*",
            "--node-monitor-grace-period=15s", "--node-monitor-period=2s",  # a lost node is NotReady in ~15 s
            "--profiling=false"],
        "scheduler": [str(bins / "kube-scheduler"), *own["scheduler"], "--profiling=false"],
        "provisioner": [sys.executable, str(HERE / "provisioner.py"), f"--kubeconfig={d / 'kubeconfig'}",
                        f"--dir={d}"],
    }


def node_command(d: Path, i: int, gpus: int, api_port: int) -> list[str]:
    """Pods get 127.<b>.<10+i>.x: <b> comes from the API server's port, so two test beds on one machine (a person's
    and a test run's) hand out different pod addresses, as the pods of both share the machine's network."""
    name = f"node-{i}"
    prefix = f"127.{1 + api_port % 250}.{10 + i}"
    return [sys.executable, str(HERE / "node_agent.py"), "--kubeconfig", str(d / "kubeconfig"), "--node", name,
            "--dir", str(d / "nodes" / name), "--ip-prefix", prefix, "--cpu", "8", "--memory", "32Gi",
            "--gpus", str(gpus), "--api-host", "127.0.0.1", "--api-port", str(api_port)]


def hollow_command(d: Path, count: int, gpus: int) -> list[str]:
    """``count`` hollow nodes in one process (hollow_nodes.py): pods go Running there without running anything."""
    return [sys.executable, str(HERE / "hollow_nodes.py"), "--kubeconfig", str(d / "kubeconfig"), "--count",
            str(count), "--gpus", str(gpus)]
