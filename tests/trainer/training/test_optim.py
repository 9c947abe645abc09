"""AdamW parameter groups: which tensors get weight decay."""

from __future__ import annotations

import torch

from distributed_llm_trainer.config.schema import ModelConfig, TrainingConfig
from distributed_llm_trainer.model.builder import build_model
from distributed_llm_trainer.training.optim import build_optimizer, param_groups


def _names(model: torch.nn.Module, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_decay_only_on_linear_weights_by_default() -> None:
    model = build_model(ModelConfig(name="gpt-debug", num_layers=1), vocab_size=50, seq_len=8)
    decay, no_decay = param_groups(model, 0.1)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    names = _names(model, decay)
    assert names and all(n.endswith(".weight") and "ln" not in n and "norm" not in n for n in names)
    assert {"wte.weight", "wpe.weight"} <= _names(model, no_decay)  # the tied head shares wte.weight
    assert all(p.ndim == 1 for n, p in model.named_parameters() if n in _names(model, no_decay) - {"wte.weight",
                                                                                                    "wpe.weight"})
    assert len(names) + len(_names(model, no_decay)) == len(list(model.parameters()))


def test_decay_embeddings_moves_them_to_the_decayed_group() -> None:
    model = build_model(ModelConfig(name="gpt-debug", num_layers=1), vocab_size=50, seq_len=8)
    decay, no_decay = param_groups(model, 0.1, decay_embeddings=True)
    assert {"wte.weight", "wpe.weight"} <= _names(model, decay)
    assert all(p.ndim == 1 for p in no_decay["params"])
    opt = build_optimizer(model, TrainingConfig(decay_embeddings=True, weight_decay=0.5, learning_rate=0.1), "cpu")
    before = model.wte.weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # zero gradients: only the decoupled decay moves the weights, w <- w * (1 - lr * wd)
    torch.testing.assert_close(model.wte.weight.detach(), before * (1 - 0.1 * 0.5))
