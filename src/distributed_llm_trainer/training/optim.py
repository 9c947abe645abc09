"""AdamW with decay only on matrices (no decay on biases, norms and embeddings)."""

from __future__ import annotations

import torch
from torch import nn

from ..config.schema import TrainingConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: 2-D+ weights of linear layers decay; biases, norm weights and embeddings don't."""
    embedding_params = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or id(p) in embedding_params:
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def fused_available(device_type: str) -> bool:
    """Fused AdamW runs on CUDA and (torch >= 2.4) CPU; it also skips steps flagged by ``found_inf``."""
    return device_type in ("cuda", "cpu")


def build_optimizer(model: nn.Module, cfg: TrainingConfig, device_type: str) -> torch.optim.AdamW:
    fused = cfg.fused_adamw if cfg.fused_adamw is not None else fused_available(device_type)
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay),
        lr=cfg.learning_rate,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        fused=fused or None,
        foreach=None if fused else True,
    )
