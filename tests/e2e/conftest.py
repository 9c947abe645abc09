"""End-to-end fixtures: the CRD installed once on the test bed."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "llmtrainingjobs.llmtj.dev.yaml"


@pytest.fixture(scope="session")
def crd(cluster):
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD), check=True)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    "crd/llmtrainingjobs.llmtj.dev", check=True)
    return cluster


MANIFESTS = ROOT / "manifests"
EXAMPLE = MANIFESTS / "examples" / "job.yaml"
OPERATOR_NS = "llmtj-system"


@pytest.fixture(scope="session")
def operator(crd):
    """`kubectl apply -f manifests/`: the CRD, RBAC and the operator's Deployment, whose pod runs on a node agent."""
    crd.kubectl("apply", "-f", str(MANIFESTS), check=True)
    crd.wait("the operator pod Running", lambda: operator_pod(crd) is not None, timeout=120)
    return crd


def operator_pod(cluster) -> str | None:
    pods = cluster.get(f"/api/v1/namespaces/{OPERATOR_NS}/pods?labelSelector=app.kubernetes.io/name%3D"
                       "llm-training-operator") or {}
    running = [p["metadata"]["name"] for p in pods.get("items", [])
               if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
    return running[0] if running else None
