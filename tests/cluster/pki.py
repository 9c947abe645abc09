"""The test bed's certificates and keys, made with the ``openssl`` CLI (no Python crypto dependency), and kubeconfigs.

One CA signs everything: the API server's serving cert, the client certs (admin, controller manager, scheduler)
and, through the controller manager's ``--cluster-signing-*`` flags, any CSR the cluster approves. The
service-account key pair is separate, as in a real cluster. A finished directory carries a ``complete`` marker and is
reused as is; a half-written one (an interrupted ``up``) is made again from scratch.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

DAYS = "3650"  # test beds are throwaway, but a reused LLMTJ_TESTBED_DIR must not expire under someone
KEY = "rsa:2048"
API_SANS = (
    "IP:127.0.0.1", "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local", "IP:10.96.0.1",  # 10.96.0.1: first IP of the service range
)
# name -> (subject, extended key usage, subjectAltName or None)
LEAVES: dict[str, tuple[str, str, str | None]] = {
    "apiserver": ("/CN=kube-apiserver", "serverAuth", ",".join(API_SANS)),
    "admin": ("/O=system:masters/CN=admin", "clientAuth", None),
    "controller-manager": ("/CN=system:kube-controller-manager", "clientAuth", None),
    "scheduler": ("/CN=system:kube-scheduler", "clientAuth", None),
}


@dataclass(frozen=True)
class Pki:
    dir: Path

    @property
    def ca_crt(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def crt(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"openssl {args[0]} failed: {proc.stderr.strip()[-2000:]}")


def _ca(d: Path) -> None:
    # Explicit CA extensions: Go's x509 verifier refuses a CA without CA:TRUE and keyCertSign.
    _openssl("req", "-x509", "-newkey", KEY, "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", DAYS,
             "-subj", "/CN=llmtj-testbed-ca", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature", cwd=d)


def _leaf(d: Path, name: str, subject: str, usage: str, sans: str | None) -> None:
    _openssl("req", "-new", "-newkey", KEY, "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", subject, cwd=d)
    ext = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
           f"extendedKeyUsage={usage}"]
    if sans:
        ext.append(f"subjectAltName={sans}")
    (d / f"{name}.ext").write_text("\n".join(ext) + "\n")
    # A random serial instead of -CAcreateserial: no shared .srl file, and no two certs with one serial.
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-days", DAYS,
             "-set_serial", str(secrets.randbits(63)), "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)
    (d / f"{name}.csr").unlink()
    (d / f"{name}.ext").unlink()


def _service_account(d: Path) -> None:
    # The API server verifies tokens with sa.pub; it and the controller manager sign them with sa.key.
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key", cwd=d)
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


def ensure(pki_dir: Path) -> Pki:
    """The PKI in ``pki_dir``: reused when complete, else made in a scratch folder and moved into place."""
    pki = Pki(pki_dir)
    if (pki_dir / "complete").is_file():
        return pki
    shutil.rmtree(pki_dir, ignore_errors=True)
    pki_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".pki-", dir=pki_dir.parent))
    try:
        _ca(scratch)
        for name, (subject, usage, sans) in LEAVES.items():
            _leaf(scratch, name, subject, usage, sans)
        _service_account(scratch)
        for f in scratch.iterdir():
            f.chmod(0o600 if f.suffix == ".key" else 0o644)
        (scratch / "complete").write_text("")
        scratch.rename(pki_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return pki


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig(path: Path, server: str, p: Pki, user: str) -> None:
    """A self-contained kubeconfig (certs embedded). JSON is valid YAML, so kubectl and client libraries read it."""
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "testbed", "preferences": {},
        "clusters": [{"name": "testbed", "cluster": {"server": server, "certificate-authority-data": _b64(p.ca_crt)}}],
        "users": [{"name": user, "user": {"client-certificate-data": _b64(p.crt(user)),
                                          "client-key-data": _b64(p.key(user))}}],
        "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": user, "namespace": "default"}}],
    }
    path.write_text(json.dumps(cfg, indent=1))
    path.chmod(0o600)
