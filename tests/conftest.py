"""Shared test set-up: one thread per test process (2-core machines), repo paths."""

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")

REPO = Path(__file__).resolve().parents[1]

pytest_plugins = ["tests.cluster.testbed"]  # the `cluster` and `namespace` fixtures (a real control plane)


def pytest_collection_modifyitems(items: list) -> None:
    """Tests on the test bed run last: on a cold cache, .ci/run builds its control plane in the background meanwhile
    (the `cluster` fixture waits for that build). Otherwise the order is pytest's."""
    items.sort(key=lambda item: "cluster" in getattr(item, "fixturenames", ()))
