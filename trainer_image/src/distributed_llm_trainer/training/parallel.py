"""Strategy-specific model wrapping (FSDP2 per-block sharding) applied in ``configure_model``."""

from __future__ import annotations

import lightning as L


def apply_fsdp(module: L.LightningModule) -> None:
    """Shard each transformer block, then the root, with FSDP2 when the strategy gives a device mesh."""
    from lightning.pytorch.strategies import ModelParallelStrategy

    if module._trainer is None or not isinstance(module.trainer.strategy, ModelParallelStrategy):
        return
    from .fsdp import shard_model

    shard_model(module)
