"""pytest fixtures for tests against the test bed (a real control plane; see cluster.py).

Registered for the whole suite by tests/conftest.py (``pytest_plugins``), so any test can ask for them:

* ``cluster`` (session): one test bed for the run, in a temp folder, stopped at the end. With
  ``LLMTJ_TESTBED_DIR=/some/dir`` the test bed there is reused (or started) and left running afterwards, for fast
  iteration; stop it with ``python tests/cluster/cluster.py down --dir /some/dir``.
* ``namespace`` (function): a fresh namespace whose ``default`` ServiceAccount exists, deleted afterwards.

If the control plane cannot be built or started (no ``go``, say) the fixture FAILS with the reason rather than
skipping: a CI run must not pass quietly without its cluster tests.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.cluster import Cluster, start, stop

NODES = 2
GPUS_PER_NODE = 2


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reuse = os.environ.get("LLMTJ_TESTBED_DIR")
    d = Path(reuse) if reuse else tmp_path_factory.mktemp("testbed")
    try:
        c = start(d, nodes=NODES, gpus_per_node=GPUS_PER_NODE)
    except Exception as e:  # start() has already stopped whatever it began; fail (error), never skip
        raise pytest.fail.Exception(f"the test bed did not start: {type(e).__name__}: {e}", pytrace=False) from None
    try:
        yield c
    finally:
        if not reuse:
            stop(d)


def _namespace_name(test_name: str) -> str:
    # A DNS label (<= 63 chars) that says which test made it, plus a random tail so reruns never collide.
    base = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].rstrip("-") or "test"
    return f"{base}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = _namespace_name(request.node.name)
    status, body = cluster.request("POST", "/api/v1/namespaces",
                                   {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    assert status == 201, f"creating namespace {name}: HTTP {status}: {body}"
    # Pods are refused until the ServiceAccount admission plugin finds `default`, which kcm creates shortly after.
    cluster.wait(f"ServiceAccount {name}/default",
                 lambda: cluster.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"), timeout=30)
    try:
        yield name
    finally:
        # No wait: the namespace controller empties and removes it in the background.
        cluster.request("DELETE", f"/api/v1/namespaces/{name}")
