"""``model.backend: hf``: any transformers causal-LM architecture behind the native model's interface."""

from __future__ import annotations

import dataclasses
import inspect
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distributed_llm_trainer.config.schema import ModelConfig
from distributed_llm_trainer.errors import UserError
from distributed_llm_trainer.model.loss import IGNORE_INDEX, causal_lm_loss
from distributed_llm_trainer.model.registry import ModelArgs, resolve_model_args

log = logging.getLogger(__name__)

# our field -> candidate names in transformers configs (first one the config knows is used)
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "vocab_size": ("vocab_size",),
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads"),
    "num_key_value_heads": ("num_key_value_heads",),
    "intermediate_size": ("intermediate_size", "n_inner", "ffn_dim"),
    "max_position_embeddings": ("max_position_embeddings", "n_positions"),
    "norm_eps": ("rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps", "norm_epsilon"),
    "tie_embeddings": ("tie_word_embeddings",),
}
_DROPOUTS = ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop", "dropout")
_POSITION_PARAMS = ("wpe.", "position_embeddings.", "embed_positions.")
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def _known_fields(config_cls: type) -> set[str]:
    """Names a config class accepts: dataclass fields (transformers 5), __init__ params (4.x), attribute_map."""
    names: set[str] = set(getattr(config_cls, "attribute_map", {}) or {})
    if dataclasses.is_dataclass(config_cls):
        names |= {f.name for f in dataclasses.fields(config_cls)}
    names |= set(inspect.signature(config_cls.__init__).parameters)
    return names


def hf_config_kwargs(config_cls: type, args: ModelArgs, cfg: ModelConfig) -> dict[str, Any]:
    """Our resolved sizes spelled in ``config_cls``'s own field names."""
    known = _known_fields(config_cls)
    kwargs: dict[str, Any] = {}
    for ours, names in _SYNONYMS.items():
        for name in names:
            if name in known:
                kwargs[name] = getattr(args, ours)
                break
    kwargs.update({name: args.dropout for name in _DROPOUTS if name in known})
    if "head_dim" in known:
        kwargs["head_dim"] = args.head_dim
    if "rope_theta" in known or "rope_parameters" in known:
        kwargs["rope_theta"] = args.rope_theta
    if cfg.gelu_approximate is not None and "activation_function" in known:  # gpt2-style configs
        kwargs["activation_function"] = "gelu_new" if cfg.gelu_approximate == "tanh" else "gelu"
    if cfg.bias is not None:
        kwargs.update({name: cfg.bias for name in ("attention_bias", "mlp_bias", "use_bias", "bias") if name in known})
    for tok in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if tok in known:
            kwargs[tok] = None  # the project's tokenizer decides; generate() passes eos explicitly
    return kwargs


def _local_dir(path: str) -> Path:
    p = Path(path).expanduser()
    if not (p / "config.json").is_file():
        raise UserError("model.init_from", f"{path!r} is not a local transformers checkpoint (no config.json there)")
    return p


def build_hf_model(cfg: ModelConfig, vocab_size: int, seq_len: int) -> HFCausalLM:
    """A transformers model of type ``cfg.hf_model_type`` (default: the preset's family) sized by the preset."""
    from transformers import AutoConfig, AutoModelForCausalLM

    args = resolve_model_args(cfg, vocab_size, seq_len)
    common = {"attn_implementation": "sdpa", "trust_remote_code": cfg.trust_remote_code}
    if cfg.init_from:
        path = _local_dir(cfg.init_from)
        try:
            hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True, **common)
        except ValueError as e:
            raise UserError("model.init_from", f"cannot load {str(path)!r}: {e}") from e
        if hf.config.get_text_config().vocab_size < vocab_size:
            raise UserError(
                "model.init_from",
                f"checkpoint vocabulary ({hf.config.vocab_size}) is smaller than the tokenizer's ({vocab_size}); "
                "use the checkpoint's tokenizer (tokenizer.type: hf, tokenizer.name_or_path: the same dir)",
            )
        return _finish(hf, args)
    try:
        config_cls = type(AutoConfig.for_model(args.hf_model_type))
    except (ValueError, KeyError) as e:
        raise UserError(
            "model.hf_model_type",
            f"unknown transformers model_type {args.hf_model_type!r}; e.g. llama, mistral, qwen2, gpt2, gpt_neox",
        ) from e
    config = AutoConfig.for_model(args.hf_model_type, **hf_config_kwargs(config_cls, args, cfg))
    try:
        hf = AutoModelForCausalLM.from_config(config, **common)
    except ValueError as e:
        if "sdpa" not in str(e).lower():
            raise UserError("model.hf_model_type", f"{args.hf_model_type!r} is not a causal LM: {e}") from e
        log.warning("%s has no SDPA attention; using eager attention", args.hf_model_type)
        hf = AutoModelForCausalLM.from_config(
            config, attn_implementation="eager", trust_remote_code=common["trust_remote_code"]
        )
    return _finish(hf, args)


def _finish(hf: nn.Module, args: ModelArgs) -> HFCausalLM:
    if args.activation_checkpointing:
        kw = {"use_reentrant": False}
        if hasattr(hf, "activation_checkpointing_enable"):  # transformers >= 5.x name
            hf.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
        else:
            hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
    return HFCausalLM(hf, args_from_hf(hf.config, args))


def args_from_hf(config: Any, base: ModelArgs) -> ModelArgs:
    """``base`` with the sizes the transformers config actually has."""
    c = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = c.num_attention_heads
    return base.replace(
        vocab_size=c.vocab_size,
        hidden_size=c.hidden_size,
        num_attention_heads=heads,
        num_key_value_heads=getattr(c, "num_key_value_heads", None) or heads,
        num_layers=c.num_hidden_layers,
        intermediate_size=getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * c.hidden_size,
        max_position_embeddings=getattr(c, "max_position_embeddings", None) or base.max_position_embeddings,
        tie_embeddings=bool(getattr(c, "tie_word_embeddings", base.tie_embeddings)),
        hf_model_type=c.model_type,
    )


def find_layer_list(model: nn.Module, num_layers: int) -> nn.ModuleList:
    """The ModuleList of decoder layers (``model.layers``, ``transformer.h``, ...): the one with num_layers items."""
    best: nn.ModuleList | None = None
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == num_layers:
            if best is None:
                best = module
    if best is None:
        raise ValueError(f"no list of {num_layers} layers found in {type(model).__name__}")
    return best


class HFCausalLM(nn.Module):
    """Adapter: forward(input_ids, targets, attention_mask) -> loss or logits, like NativeTransformer."""

    def __init__(self, hf_model: nn.Module, args: ModelArgs) -> None:
        super().__init__()
        self.hf = hf_model
        self.args = args
        config = hf_model.config
        self._head_dim = int(getattr(config, "head_dim", None) or args.head_dim)
        self._plain_head = not any(getattr(config, k, None) not in (None, 1, 1.0) for k in _LOGIT_TRANSFORMS)

    @property
    def blocks(self) -> nn.ModuleList:  # a property, not a submodule: no duplicate state_dict keys
        return find_layer_list(self.hf, self.args.num_layers)

    def forward(self, input_ids: Tensor, targets: Tensor | None = None, attention_mask: Tensor | None = None) -> Tensor:
        chunk = self.args.loss_chunk_size
        if targets is None or chunk == 0 or not self._plain_head:
            logits = self.hf(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits  # (B, T, V)
            if targets is None:
                return logits
            return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)
        base = self.hf.base_model  # the decoder without the LM head
        hidden = base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        head = self.hf.get_output_embeddings()
        return causal_lm_loss(hidden, head.weight, targets, chunk, head.bias)  # hidden (B, T, D)

    def num_parameters(self, exclude_position_embeddings: bool = False) -> int:
        n = 0
        for name, p in self.hf.named_parameters():
            if exclude_position_embeddings and any(k in name for k in _POSITION_PARAMS):
                continue
            n += p.numel()
        return n

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6N + 12·L·H·Q·T (N without position embeddings)."""
        a = self.args
        attn = 12.0 * a.num_layers * a.num_attention_heads * self._head_dim * seq_len
        return 6.0 * self.num_parameters(True) + attn

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_token_id: int | None = None,
    ) -> Tensor:
        """Prompt (B, T0) + new tokens (B, T0 + n) through transformers' generate (with its KV cache)."""
        sample = temperature > 0
        kwargs: dict[str, Any] = dict(
            max_new_tokens=max_new_tokens, do_sample=sample, eos_token_id=eos_token_id,
            pad_token_id=eos_token_id if eos_token_id is not None else 0,
            attention_mask=torch.ones_like(input_ids), use_cache=True,
        )  # fmt: skip
        if sample:
            kwargs.update(temperature=temperature, top_k=top_k or 0, top_p=top_p if top_p is not None else 1.0)
        was_training = self.hf.training
        self.hf.eval()
        try:
            return self.hf.generate(input_ids, **kwargs)
        finally:
            self.hf.train(was_training)
