"""build_model: the one entry point from a ``model:`` config to an nn.Module with the common interface."""

from __future__ import annotations

from torch import nn

from distributed_llm_trainer.config.schema import ModelConfig
from distributed_llm_trainer.model.native import NativeTransformer
from distributed_llm_trainer.model.registry import resolve_model_args


def build_model(cfg: ModelConfig, vocab_size: int, seq_len: int) -> nn.Module:
    """Native or transformers-backed causal LM with forward(input_ids, targets, attention_mask), ``.args``,
    ``.blocks``, num_parameters(), flops_per_token() and generate(); weights from ``cfg.init_from`` if set."""
    if cfg.backend == "hf":
        from distributed_llm_trainer.model.hf_backend import build_hf_model

        return build_hf_model(cfg, vocab_size, seq_len)
    if cfg.init_from:
        from distributed_llm_trainer.model.interop import build_native_from_hf

        return build_native_from_hf(cfg, vocab_size, seq_len)
    return NativeTransformer(resolve_model_args(cfg, vocab_size, seq_len))
