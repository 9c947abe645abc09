"""AdamW with decay only on matrices (no decay on biases, norms and, by default, embeddings); gradient clipping with
non-finite step skipping, shared by the LightningModule and the bare benchmark loop."""

from __future__ import annotations

import torch
from torch import nn

from ..config.schema import TrainingConfig


def param_groups(model: nn.Module, weight_decay: float, decay_embeddings: bool = False) -> list[dict]:
    """Two groups: 2-D+ weights of linear layers decay; biases, norm weights and (unless ``decay_embeddings``, as
    nanoGPT and the HF Trainer do) embeddings, tied output head included, don't."""
    embedding_params = set() if decay_embeddings else {
        id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
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
        param_groups(model, cfg.weight_decay, cfg.decay_embeddings),
        lr=cfg.learning_rate,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        fused=fused or None,
        foreach=None if fused else True,
    )


def clip_gradients(optimizer: torch.optim.Optimizer, max_norm: float, skip_nonfinite: bool
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip the global norm of the optimizer's gradients to ``max_norm``; returns (norm, bad), bad = 1.0 when the
    norm is not finite. The parameters come from the optimizer's groups (no module traversal per step).

    With ``skip_nonfinite`` a fused AdamW skips the update on-device through ``found_inf`` (no host sync); the
    foreach/for-loop AdamW rejects ``found_inf``, so there the check costs one host sync and a bad step drops the
    gradients (AdamW then leaves every parameter and its state untouched).
    """
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm, error_if_nonfinite=False, foreach=True)
    if hasattr(norm, "full_tensor"):  # DTensor under FSDP2
        norm = norm.full_tensor()
    norm = norm.detach()
    bad = (~torch.isfinite(norm)).float()
    if skip_nonfinite:
        if optimizer.defaults.get("fused"):
            optimizer.found_inf = bad  # type: ignore[attr-defined]
        elif bad.item():
            for p in params:
                p.grad = None
    return norm, bad
