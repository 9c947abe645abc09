"""The Prometheus Operator's CRDs (PodMonitor, ServiceMonitor, PrometheusRule), from its Go module through the module
proxy into the test bed's cache: the API server then checks our monitoring objects against their real schemas."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))
from build import cache_root  # noqa: E402
from versions import PROMETHEUS_OPERATOR  # noqa: E402

MODULE = "github.com/prometheus-operator/prometheus-operator"
KINDS = ("podmonitors", "servicemonitors", "prometheusrules")


def crds() -> list[Path]:
    """The three CRD files, downloaded once (a 4 MB module) and kept by version."""
    out = cache_root() / f"prometheus-operator-{PROMETHEUS_OPERATOR}"
    files = [out / f"monitoring.coreos.com_{kind}.yaml" for kind in KINDS]
    if all(f.is_file() for f in files):
        return files
    work = cache_root() / "src" / "prometheus-operator"
    work.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["go", "mod", "download", "-json", f"{MODULE}@{PROMETHEUS_OPERATOR}"], cwd=work,
                          capture_output=True, text=True, env={**os.environ, "GOFLAGS": "-mod=mod"})
    info = json.loads(proc.stdout or "{}")
    if proc.returncode or "Dir" not in info:
        raise RuntimeError(f"go mod download {MODULE}@{PROMETHEUS_OPERATOR}: {info.get('Error') or proc.stderr}")
    out.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(Path(info["Dir"]) / "example" / "prometheus-operator-crd" / f.name, f.with_suffix(".part"))
        os.replace(f.with_suffix(".part"), f)
    return files
