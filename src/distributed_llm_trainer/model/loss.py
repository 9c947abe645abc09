"""Next-token cross-entropy from final hidden states, in one pass or in memory-lean chunks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100


def _chunk_ce_sum(h: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor) -> Tensor:
    logits = F.linear(h, weight, bias).float()  # (C, V) fp32 only for this chunk
    return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")


def causal_lm_loss(
    hidden: Tensor, weight: Tensor, targets: Tensor, chunk_size: int = 0, bias: Tensor | None = None
) -> Tensor:
    """Mean cross-entropy of ``hidden @ weight.T (+ bias)`` against ``targets`` over targets != -100.

    hidden (B, T, D), weight (V, D), targets (B, T). ``chunk_size`` 0: one F.cross_entropy over all logits
    (fuses best under torch.compile). ``chunk_size`` > 0: logits are built ``chunk_size`` tokens at a time inside
    a checkpointed function, so neither the full logits nor their fp32 copy are ever kept for backward.
    """
    D = hidden.shape[-1]
    h = hidden.reshape(-1, D)  # (N, D)
    t = targets.reshape(-1)  # (N,)
    if chunk_size <= 0:
        logits = F.linear(h, weight, bias)  # (N, V)
        return F.cross_entropy(logits.float(), t, ignore_index=IGNORE_INDEX)
    total = torch.zeros((), device=h.device, dtype=torch.float32)
    for start in range(0, h.shape[0], chunk_size):
        end = start + chunk_size
        total = total + checkpoint(_chunk_ce_sum, h[start:end], weight, bias, t[start:end], use_reentrant=False)
    count = (t != IGNORE_INDEX).sum().clamp(min=1)
    return total / count
