"""End of a run: every rank leaves torch.distributed together, after its last collective."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch.distributed as dist

from distributed_llm_trainer.training.finish import leave_process_group


class _Strategy:
    def __init__(self) -> None:
        self.barriers: list[tuple[str, bool]] = []

    def barrier(self, name: str) -> None:
        self.barriers.append((name, dist.is_initialized()))


def test_leave_process_group_waits_for_every_rank_then_destroys_the_group(tmp_path: Path) -> None:
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        strategy = _Strategy()
        leave_process_group(SimpleNamespace(strategy=strategy))
        assert strategy.barriers == [("leave_process_group", True)]  # the barrier ran inside the group
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_leave_process_group_is_a_no_op_in_a_single_process_run() -> None:
    strategy = _Strategy()
    leave_process_group(SimpleNamespace(strategy=strategy))
    assert strategy.barriers == [] and not dist.is_initialized()
