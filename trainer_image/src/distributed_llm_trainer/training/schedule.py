"""Learning-rate schedule: linear warmup, then cosine decay to ``min_lr``, stepped per optimizer step."""

from __future__ import annotations

import math


def lr_at(step: int, *, lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based, the step about to be taken).

    Warmup: ``lr * (step + 1) / (warmup_steps + 1)`` for ``step < warmup_steps``; then cosine from ``lr`` at
    ``warmup_steps`` to ``min_lr`` at ``decay_steps``; ``min_lr`` afterwards.
    """
    if step < warmup_steps:
        return lr * (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return min_lr
    ratio = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0
    return min_lr + coeff * (lr - min_lr)


class WarmupCosine:
    """Multiplier for ``torch.optim.lr_scheduler.LambdaLR`` (base lr = peak lr); stateless: the step is the state."""

    def __init__(self, lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> None:
        self.lr, self.min_lr, self.warmup_steps, self.decay_steps = lr, min_lr, warmup_steps, decay_steps

    def __call__(self, step: int) -> float:
        return lr_at(step, lr=self.lr, min_lr=self.min_lr, warmup_steps=self.warmup_steps,
                     decay_steps=self.decay_steps) / self.lr
