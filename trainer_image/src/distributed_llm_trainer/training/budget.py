"""Batch geometry and training budget: accumulation from the global batch, total optimizer steps."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config.schema import Config
from ..errors import UserError


@dataclass(frozen=True)
class Budget:
    micro_batch: int  # samples per device per forward
    world_size: int  # devices x nodes
    accumulation: int  # micro-batches per optimizer step on each device
    global_batch: int  # samples per optimizer step, all devices
    seq_len: int
    max_steps: int  # optimizer steps the run takes (min over steps, epochs, tokens)
    steps_per_epoch: int  # optimizer steps in one pass over the training windows
    stop_reason: str  # which limit decided max_steps

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch * self.seq_len


def accumulation_for(global_batch: int | None, micro_batch: int, world_size: int) -> int:
    """Micro-batches per optimizer step so that micro x world x accumulation == global batch."""
    if global_batch is None:
        return 1
    per_step = micro_batch * world_size
    if global_batch % per_step:
        raise UserError(
            "training.global_batch_size",
            f"{global_batch} is not a multiple of batch_size {micro_batch} x {world_size} devices = {per_step}; "
            f"use a multiple of {per_step} or change batch_size",
        )
    return global_batch // per_step


def compute_budget(cfg: Config, world_size: int, batches_per_rank: int | None) -> Budget:
    """``batches_per_rank``: micro-batches each rank runs per epoch (None: a stream without epochs)."""
    t = cfg.training
    micro = int(t.batch_size)  # resolved from "auto" before this point
    accum = accumulation_for(t.global_batch_size, micro, world_size)
    global_batch = micro * world_size * accum
    # Lightning steps the optimizer every `accum` batches, and on a partial last group of an epoch.
    steps_per_epoch = max(1, math.ceil(batches_per_rank / accum)) if batches_per_rank else 0
    if not steps_per_epoch and t.max_steps is None and t.max_tokens is None:
        raise UserError("training.max_steps", "a streamed dataset has no epochs; set training.max_steps or max_tokens")
    limits: dict[str, int] = {}
    if t.max_steps is not None:
        limits["max_steps"] = t.max_steps
    if t.max_epochs is not None and steps_per_epoch:
        limits["max_epochs"] = t.max_epochs * steps_per_epoch
    if t.max_tokens is not None:
        limits["max_tokens"] = math.ceil(t.max_tokens / (global_batch * cfg.data.seq_len))
    if not limits:
        limits["max_epochs"] = steps_per_epoch  # nothing set: one epoch
    reason = min(limits, key=lambda k: limits[k])
    return Budget(micro, world_size, accum, global_batch, cfg.data.seq_len, limits[reason], steps_per_epoch, reason)


def val_batches_per_rank(eval_steps: int, world_size: int) -> int:
    """``training.eval_steps`` counts batches over all ranks (so val loss is world-size invariant)."""
    return max(1, math.ceil(eval_steps / world_size))
