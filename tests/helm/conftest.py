"""The test bed's helm (built with its control plane), run on the test bed with a home of its own."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))
from build import bin_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "llm-training-operator"
Helm = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="module")
def helm(cluster, tmp_path_factory) -> Helm:
    """``helm(ARGS..., check=True)``; the cluster's fixture made the binary."""
    home = tmp_path_factory.mktemp("helm-home")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([str(bin_dir() / "helm"), *args], capture_output=True, text=True,
                             env={"KUBECONFIG": str(cluster.kubeconfig), "HOME": str(home), "PATH": "/usr/bin:/bin"})
        if check:
            assert out.returncode == 0, out.stderr
        return out

    return run


def render(helm: Helm, *args: str, release: str = "llmtj", namespace: str = "llmtj-system") -> list[dict]:
    out = helm("template", release, str(CHART), "-n", namespace, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]
