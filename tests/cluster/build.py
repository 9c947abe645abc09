"""Build the test bed's control plane from Go modules into a cache folder keyed by version.

    python tests/cluster/build.py            # prints the folder holding the binaries; a warm cache returns at once

kube-apiserver, kube-controller-manager, kube-scheduler and kubectl come from the ``k8s.io/kubernetes`` module
with its staging modules (``k8s.io/api``, ``k8s.io/apiserver``, ...) replaced by their published releases (the
module's own go.mod points them at ``./staging``, which a dependency cannot use); etcd from
``go.etcd.io/etcd/server/v3`` through a three-line main; helm from ``helm.sh/helm/v3``. Only the Go module proxy
is used. Cold: about 15-25 minutes on 2 cores; warm: instant.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from versions import ETCD, HELM, KUBERNETES, STAGING  # noqa: E402

BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd", "helm")
K8S_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")

ETCD_MAIN = """package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""


def cache_root() -> Path:
    base = os.environ.get("LLMTJ_TESTBED_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "llmtj-testbed")
    return Path(base)


def bin_dir() -> Path:
    return cache_root() / f"k8s-{KUBERNETES}-etcd-{ETCD}-helm-{HELM}" / "bin"


def _go(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    proc = subprocess.run(["go", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"error: go {' '.join(args[:3])} failed in {cwd}:\n{proc.stderr[-4000:]}")
    return proc.stdout


def _tools_file(imports: list[str]) -> str:
    lines = "\n".join(f'\t_ "{i}"' for i in imports)
    return f"//go:build tools\n\npackage tools\n\nimport (\n{lines}\n)\n"


def _k8s_module(src: Path) -> None:
    """go.mod requiring k8s.io/kubernetes with every staging module pinned to its published release."""
    info = json.loads(_go(["mod", "download", "-json", f"k8s.io/kubernetes@{KUBERNETES}"], src))
    staging = [line.split()[0] for line in Path(info["GoMod"]).read_text().splitlines()
               if "=> ./staging/" in line]
    replaces = "\n".join(f"\t{m} => {m} {STAGING}" for m in staging)
    (src / "go.mod").write_text(f"module llmtj.local/testbed\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes {KUBERNETES}\n"
                                f"require go.etcd.io/etcd/server/v3 {ETCD}\n\nreplace (\n{replaces}\n)\n")
    (src / "etcd").mkdir(exist_ok=True)
    (src / "etcd" / "main.go").write_text(ETCD_MAIN)
    (src / "tools.go").write_text(_tools_file([f"k8s.io/kubernetes/cmd/{c}" for c in K8S_COMMANDS]))


def _helm_module(src: Path) -> None:
    (src / "go.mod").write_text(f"module llmtj.local/helm\n\ngo 1.26.0\n\nrequire helm.sh/helm/v3 {HELM}\n")
    (src / "tools.go").write_text(_tools_file(["helm.sh/helm/v3/cmd/helm"]))


def wanted() -> tuple[str, ...]:
    """BINARIES, less helm when LLMTJ_SKIP_HELM is set (the control plane alone, while helm is not built yet)."""
    return tuple(b for b in BINARIES if not (b == "helm" and os.environ.get("LLMTJ_SKIP_HELM")))


def build(out: Path) -> Path:
    """The binaries in ``out``, built when missing. One build at a time per cache: a second caller (the tests' fixture
    while .ci/run's early build runs) waits for the first and then finds them there."""
    if all((out / b).is_file() for b in wanted()):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build(out)


def _build(out: Path) -> Path:
    if all((out / b).is_file() for b in wanted()):
        return out
    if shutil.which("go") is None:
        raise SystemExit("error: go: not found; install Go 1.26 (the test bed builds Kubernetes from its Go modules)")
    work = out.parent / "src"
    tmp = out.parent / "bin.partial"
    tmp.mkdir(parents=True, exist_ok=True)
    flags = ["build", "-trimpath", "-ldflags=-s -w", "-o", str(tmp) + "/"]
    missing = [b for b in wanted() if not (out / b).is_file()]
    if set(missing) & {*K8S_COMMANDS, "etcd"}:
        k8s = work / "k8s"
        k8s.mkdir(parents=True, exist_ok=True)
        _k8s_module(k8s)
        _go(["mod", "tidy"], k8s)
        print(f"building {', '.join(K8S_COMMANDS)} {KUBERNETES} and etcd {ETCD} (cold: minutes)", file=sys.stderr)
        _go([*flags, "./etcd", *[f"k8s.io/kubernetes/cmd/{c}" for c in K8S_COMMANDS]], k8s)
    if "helm" in missing:
        helm = work / "helm"
        helm.mkdir(parents=True, exist_ok=True)
        _helm_module(helm)
        _go(["mod", "tidy"], helm)
        print(f"building helm {HELM}", file=sys.stderr)
        _go([*flags, "helm.sh/helm/v3/cmd/helm"], helm)
    out.mkdir(parents=True, exist_ok=True)
    for b in BINARIES:
        if (tmp / b).is_file():
            os.replace(tmp / b, out / b)  # a binary appears only once it is whole
    return out


if __name__ == "__main__":
    print(build(bin_dir()))
