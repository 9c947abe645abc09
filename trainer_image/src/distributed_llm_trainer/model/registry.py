"""Model presets and their resolution against the user's ``model:`` section into :class:`ModelArgs`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from distributed_llm_trainer.config.schema import ModelConfig
from distributed_llm_trainer.errors import UserError


@dataclass(frozen=True)
class ModelArgs:
    """Every architecture field, fully resolved (no ``None`` left except ``hf_model_type`` for native)."""

    family: Literal["gpt2", "llama"]
    vocab_size: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    num_layers: int
    intermediate_size: int
    max_position_embeddings: int
    dropout: float = 0.0
    tie_embeddings: bool = True
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    bias: bool = True
    gelu_approximate: Literal["tanh", "none"] = "tanh"  # gpt2 family only; llama uses SwiGLU
    activation_checkpointing: bool = False
    attention_backend: Literal["auto", "flash", "cudnn", "efficient", "math"] = "auto"  # SDPA kernel (layers.py)
    loss_chunk_size: int | None = None  # None: auto (see model/loss.py)
    backend: Literal["native", "hf"] = "native"
    hf_model_type: str | None = None
    name: str = "custom"

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def replace(self, **changes: Any) -> ModelArgs:
        return dataclasses.replace(self, **changes)


def _gpt2(layers: int, hidden: int, heads: int, positions: int = 1024) -> dict[str, Any]:
    return dict(
        family="gpt2", num_layers=layers, hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=heads,
        intermediate_size=4 * hidden, max_position_embeddings=positions, tie_embeddings=True, bias=True,
        norm_eps=1e-5, dropout=0.0, gelu_approximate="tanh",
    )  # fmt: skip


def _llama(
    layers: int,
    hidden: int,
    heads: int,
    kv: int,
    inter: int,
    positions: int = 2048,
    theta: float = 10000.0,
    tie: bool = False,
) -> dict[str, Any]:
    return dict(
        family="llama", num_layers=layers, hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=kv,
        intermediate_size=inter, max_position_embeddings=positions, rope_theta=theta, tie_embeddings=tie,
        bias=False, norm_eps=1e-5, dropout=0.0,
    )  # fmt: skip


# name -> architecture fields (vocab_size always comes from the tokenizer).
PRESETS: dict[str, dict[str, Any]] = {
    "gpt-debug": _gpt2(2, 64, 4),
    "llama-debug": _llama(2, 64, 4, 2, 176),
    "gpt2-small": _gpt2(12, 768, 12),
    "gpt2-medium": _gpt2(24, 1024, 16),
    "gpt2-large": _gpt2(36, 1280, 20),
    "gpt2-xl": _gpt2(48, 1600, 25),
    "llama-160m": _llama(12, 768, 12, 12, 3072),
    "llama-410m": _llama(24, 1024, 16, 16, 3072),
    "llama-1b": _llama(16, 2048, 32, 8, 8192, positions=8192, theta=500000.0, tie=True),  # Llama-3.2-1B shape
    "tinyllama-1.1b": _llama(22, 2048, 32, 4, 5632),  # TinyLlama-1.1B shape
    "llama-3b": _llama(28, 3072, 24, 8, 8192, positions=8192, theta=500000.0, tie=True),  # Llama-3.2-3B shape
    "llama-7b": _llama(32, 4096, 32, 32, 11008, positions=4096),  # Llama-2-7B shape
    "llama-8b": _llama(32, 4096, 32, 8, 14336, positions=8192, theta=500000.0),  # Llama-3-8B shape
}

# ModelConfig fields that override the preset when set (same names as ModelArgs).
_OVERRIDES = (
    "family", "hidden_size", "num_attention_heads", "num_key_value_heads", "num_layers", "intermediate_size",
    "max_position_embeddings", "dropout", "tie_embeddings", "rope_theta", "norm_eps", "bias", "gelu_approximate",
)  # fmt: skip


def resolve_model_args(cfg: ModelConfig, vocab_size: int, seq_len: int) -> ModelArgs:
    """Preset ``cfg.name`` with every non-None field of ``cfg`` applied on top; checked for consistency.

    Derived defaults: a new hidden_size without intermediate_size gets the family's MLP width (gpt2: 4h, llama:
    8h/3 rounded up to 256); new heads without key/value heads keep the preset's kv heads when they divide, else
    full multi-head attention; a new family takes that family's bias/tying conventions. llama's
    max_position_embeddings grows to seq_len (RoPE); gpt2's learned positions cannot, so seq_len beyond them is an
    error. ``vocab_size`` comes from the tokenizer; ``cfg.padded_vocab_size`` may round it up (extra rows are never
    targets, so training pushes their logits down; nanoGPT pads GPT-2's 50257 to 50304 the same way).
    """
    if cfg.name not in PRESETS:
        raise UserError("model.name", f"unknown preset {cfg.name!r}; valid: {', '.join(PRESETS)}")
    if vocab_size < 1:
        raise UserError("tokenizer.vocab_size", f"vocabulary size must be positive, got {vocab_size}")
    if cfg.padded_vocab_size is not None:
        if cfg.padded_vocab_size < vocab_size:
            raise UserError(
                "model.padded_vocab_size",
                f"{cfg.padded_vocab_size} is smaller than the tokenizer's {vocab_size} tokens; raise it or remove it",
            )
        vocab_size = cfg.padded_vocab_size
    fields: dict[str, Any] = dict(PRESETS[cfg.name])
    explicit = {k: getattr(cfg, k) for k in _OVERRIDES if getattr(cfg, k) is not None}
    family_changed = "family" in explicit and explicit["family"] != fields["family"]
    if family_changed:  # family conventions follow the family unless set explicitly
        conv = _gpt2(1, 1, 1) if explicit["family"] == "gpt2" else _llama(1, 1, 1, 1, 1)
        for k in ("bias", "tie_embeddings"):
            fields[k] = conv[k]
    fields.update(explicit)
    if "hidden_size" in explicit and "intermediate_size" not in explicit:
        h = fields["hidden_size"]  # keep the preset's MLP ratio convention
        fields["intermediate_size"] = 4 * h if fields["family"] == "gpt2" else 256 * ((8 * h // 3 + 255) // 256)
    if "num_attention_heads" in explicit and "num_key_value_heads" not in explicit:
        fields["num_key_value_heads"] = (
            fields["num_attention_heads"]
            if fields["family"] == "gpt2" or fields["num_attention_heads"] % fields["num_key_value_heads"]
            else fields["num_key_value_heads"]
        )
    h, n, kv = fields["hidden_size"], fields["num_attention_heads"], fields["num_key_value_heads"]
    if h % n:
        raise UserError("model.num_attention_heads", f"{n} does not divide hidden_size {h}; pick a divisor of {h}")
    if n % kv:
        raise UserError("model.num_key_value_heads", f"{kv} does not divide num_attention_heads {n}; pick a divisor")
    if fields["family"] == "llama" and (h // n) % 2:
        raise UserError("model.num_attention_heads", f"RoPE needs an even head dim, got {h // n}; change the heads")
    if fields["family"] == "llama" and "gelu_approximate" in explicit:
        raise UserError("model.gelu_approximate", "the llama family uses SwiGLU, not GELU; remove the field")
    if fields["family"] == "gpt2" and kv != n and cfg.backend == "native":
        raise UserError("model.num_key_value_heads", "gpt2 family uses full multi-head attention; remove the field")
    if seq_len > fields["max_position_embeddings"]:
        if fields["family"] == "gpt2":  # learned positions cannot grow; RoPE can
            raise UserError(
                "data.seq_len",
                f"{seq_len} exceeds the {fields['max_position_embeddings']} learned positions of {cfg.name!r}; "
                "lower data.seq_len or raise model.max_position_embeddings",
            )
        fields["max_position_embeddings"] = seq_len
    hf_type = cfg.hf_model_type
    if cfg.backend == "hf" and hf_type is None:
        hf_type = fields["family"]
    return ModelArgs(
        vocab_size=vocab_size, activation_checkpointing=cfg.activation_checkpointing,
        attention_backend=cfg.attention_backend,
        loss_chunk_size=cfg.loss_chunk_size, backend=cfg.backend, hf_model_type=hf_type, name=cfg.name, **fields,
    )  # fmt: skip
