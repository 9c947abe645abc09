"""The global batch must survive every world size an elastic job may run at (refused up front otherwise)."""

from __future__ import annotations

import pytest

from llmtj_operator.api import JobSpec
from llmtj_operator.checks import batch_problem


def spec(replicas: int, lo: int, hi: int, nproc: int = 1) -> JobSpec:
    return JobSpec.model_validate({"replicas": replicas, "nprocPerNode": nproc,
                                   "elastic": {"minReplicas": lo, "maxReplicas": hi}})


@pytest.mark.parametrize("job, training, bad", [
    (spec(2, 1, 2), {"batch_size": 4, "global_batch_size": 8}, None),
    (spec(3, 1, 3), {"batch_size": 4, "global_batch_size": 24}, None),
    (spec(3, 1, 3), {"batch_size": 4, "global_batch_size": 8}, "3 pods x 1 = 3"),
    (spec(2, 2, 4, nproc=8), {"batch_size": 16, "global_batch_size": 512}, "3 pods x 8 = 24"),
    (spec(2, 1, 4), {"batch_size": "auto", "global_batch_size": 7}, None),  # auto: decided per world by the trainer
    (spec(2, 1, 4), {"batch_size": 4}, None),  # no global batch: it follows the world size
    (spec(2, 1, 4), {"global_batch_size": 32}, "3 pods x 1 = 3"),  # batch_size defaults to 8
])
def test_every_reachable_world_size_is_checked(job, training, bad):
    problem = batch_problem(job, {"training": training})
    if bad is None:
        assert problem is None
    else:
        assert problem.startswith("spec.config.training.global_batch_size:") and bad in problem
        assert "narrow the bounds" in problem


def test_malformed_config_is_left_to_the_schema_and_trainer():
    assert batch_problem(spec(1, 1, 1), {"training": "x"}) is None
    assert batch_problem(spec(1, 1, 1), {}) is None
