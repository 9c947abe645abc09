"""A bare PyTorch training loop (no Lightning) over exactly the pipeline's pieces, for benchmarks.

Same model (``build_model`` after ``torch.manual_seed(run.seed)``, FP8 and ``maybe_compile`` as ``LMModule``),
same batches (``TokenDataModule.train_dataloader``), same AdamW (``build_optimizer``), same LR schedule
(``WarmupCosine``), same precision (autocast as Lightning's plugins), same clipping and non-finite skipping
(``clip_gradients``), same accumulation (loss / accumulation per micro-batch). The loop reads the loader as one
continuous stream across epochs (Lightning also steps on a partial accumulation group at an epoch end).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import torch

from ..config.schema import Config
from ..errors import UserError
from ..model.builder import build_model
from ..model.compile import maybe_compile
from .budget import Budget
from .optim import build_optimizer, clip_gradients
from .schedule import WarmupCosine
from .speed import apply_fp8
from .steptime import StepClock

BARE_PRECISIONS = ("32-true", "bf16-mixed", "bf16-true")


def precision_context(precision: str, device_type: str) -> contextlib.AbstractContextManager:
    """The forward context of Lightning's precision plugin for ``precision``."""
    if precision == "bf16-mixed":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if precision == "16-mixed":  # without loss scaling: used only by the batch-size trials (same memory and time)
        return torch.autocast(device_type, dtype=torch.float16)
    return contextlib.nullcontext()


def batches(loader: Any) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of ``loader`` epoch after epoch (the sampler reshuffles per epoch as under Lightning)."""
    epoch = 0
    while True:
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


class BareLoop:
    """Model, optimizer and schedule built like ``LMModule``; ``step`` runs one optimizer step."""

    def __init__(self, cfg: Config, vocab_size: int, budget: Budget, device: torch.device, precision: str) -> None:
        t = cfg.training
        self.cfg, self.budget, self.device = cfg, budget, device
        torch.manual_seed(cfg.run.seed)  # the same initial weights as LMModule
        self.model = build_model(cfg.model, vocab_size, cfg.data.seq_len)
        apply_fp8(self.model, t)
        self.model.to(device)
        if precision == "bf16-true":
            self.model.to(torch.bfloat16)
        self.model.train()
        self.fwd = maybe_compile(self.model, cfg.model, device.type)
        self.optimizer = build_optimizer(self.model, t, device.type)
        schedule = WarmupCosine(t.learning_rate, t.min_lr, t.warmup_steps, t.lr_decay_steps or budget.max_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.ctx = precision_context(precision, device.type)
        self.max_norm = t.grad_clip or float("inf")

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.device.type == "cpu":
            return batch
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def step(self, stream: Iterator[dict[str, torch.Tensor]], clock: StepClock | None = None) -> torch.Tensor:
        """One optimizer step over ``budget.accumulation`` micro-batches; the mean micro-batch loss (on device)."""
        accum = self.budget.accumulation
        total: torch.Tensor | None = None
        for _ in range(accum):
            t0 = time.perf_counter()
            batch = self._to_device(next(stream))
            if clock is not None:
                clock.add_wait(time.perf_counter() - t0)
            with self.ctx:
                loss = self.fwd(batch["input_ids"], batch["targets"], batch.get("attention_mask")) / accum
            loss.backward()
            part = loss.detach()
            total = part if total is None else total + part
        clip_gradients(self.optimizer, self.max_norm, self.cfg.training.skip_nonfinite)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        assert total is not None
        return total


def run_bare(cfg: Config, data: Any, budget: Budget, device: torch.device, precision: str, steps: int,
             warmup: int) -> tuple[BareLoop, StepClock, list[torch.Tensor]]:
    """``warmup + steps`` optimizer steps over the train loader; (loop, clock, per-step losses on device)."""
    from ..data.datamodule import TokenDataModule

    if precision not in BARE_PRECISIONS:
        raise UserError("training.precision", f"the bare benchmark loop supports {', '.join(BARE_PRECISIONS)}, "
                                              f"not {precision} (it has no loss scaler)")
    loop = BareLoop(cfg, len(data.tokenizer), budget, device, precision)
    stream = batches(TokenDataModule(cfg, data).train_dataloader())
    clock = StepClock(device)
    losses: list[torch.Tensor] = []
    clock.mark()
    for _ in range(warmup + steps):
        losses.append(loop.step(stream, clock))
        clock.mark()
    return loop, clock, losses
