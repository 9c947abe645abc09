"""transformers interop for the native families: export (GPT2LMHeadModel / LlamaForCausalLM), import, parity."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from distributed_llm_trainer.config.schema import ModelConfig
from distributed_llm_trainer.errors import UserError
from distributed_llm_trainer.model.hf_backend import HFCausalLM, _local_dir
from distributed_llm_trainer.model.native import NativeTransformer
from distributed_llm_trainer.model.registry import ModelArgs, resolve_model_args

MAX_SHARD_BYTES = 5 * 1024**3
# gpt2 (native name, transformers name, is a Conv1D whose weight is stored (in, out))
_GPT2_PAIRS = (
    ("norm1", "ln_1", False),
    ("norm2", "ln_2", False),
    ("attn.qkv", "attn.c_attn", True),
    ("attn.proj", "attn.c_proj", True),
    ("mlp.fc", "mlp.c_fc", True),
    ("mlp.proj", "mlp.c_proj", True),
)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)  # torch.compile wrapper


def _native_state_dict(model: nn.Module, state_dict: dict[str, Tensor] | None) -> dict[str, Tensor]:
    sd = state_dict if state_dict is not None else model.state_dict()
    return {k.removeprefix("_orig_mod."): v.detach() for k, v in sd.items()}


# ----------------------------------------------------------------------------------------- native -> transformers
def _to_hf_tensors(sd: dict[str, Tensor], a: ModelArgs) -> Iterator[tuple[str, Tensor]]:
    """(transformers name, tensor) pairs, one layer at a time; gpt2 Conv1D weights are (in, out) = Linear.T."""
    inter = a.intermediate_size
    qd, kd = a.num_attention_heads * a.head_dim, a.num_key_value_heads * a.head_dim

    def get(key: str, like: Tensor | None = None) -> Tensor:
        if key in sd:
            return sd[key]
        assert like is not None, key
        return torch.zeros(like.shape[0], dtype=like.dtype, device=like.device)  # gpt2 export of a bias-free model

    if a.family == "gpt2":
        yield "transformer.wte.weight", sd["wte.weight"]
        yield "transformer.wpe.weight", sd["wpe.weight"]
        for i in range(a.num_layers):
            p, h = f"blocks.{i}.", f"transformer.h.{i}."
            for ours, theirs, conv1d in _GPT2_PAIRS:
                w = sd[p + ours + ".weight"]
                yield h + theirs + ".weight", w.t().contiguous() if conv1d else w
                yield h + theirs + ".bias", get(p + ours + ".bias", w)
        yield "transformer.ln_f.weight", sd["norm_f.weight"]
        yield "transformer.ln_f.bias", get("norm_f.bias", sd["norm_f.weight"])
    else:
        yield "model.embed_tokens.weight", sd["wte.weight"]
        for i in range(a.num_layers):
            p, h = f"blocks.{i}.", f"model.layers.{i}."
            yield h + "input_layernorm.weight", sd[p + "norm1.weight"]
            yield h + "post_attention_layernorm.weight", sd[p + "norm2.weight"]
            for suffix in ("weight", "bias") if a.bias else ("weight",):
                q, k, v = sd[p + "attn.qkv." + suffix].split([qd, kd, kd], dim=0)
                yield h + "self_attn.q_proj." + suffix, q.clone()
                yield h + "self_attn.k_proj." + suffix, k.clone()
                yield h + "self_attn.v_proj." + suffix, v.clone()
                yield h + "self_attn.o_proj." + suffix, sd[p + "attn.proj." + suffix]
                gate, up = sd[p + "mlp.fc." + suffix].split([inter, inter], dim=0)
                yield h + "mlp.gate_proj." + suffix, gate.clone()
                yield h + "mlp.up_proj." + suffix, up.clone()
                yield h + "mlp.down_proj." + suffix, sd[p + "mlp.proj." + suffix]
        yield "model.norm.weight", sd["norm_f.weight"]
    if not a.tie_embeddings:
        yield "lm_head.weight", sd["lm_head.weight"]


def hf_config(args: ModelArgs, tokenizer: Any = None) -> Any:
    """The transformers config (GPT2Config / LlamaConfig) equivalent to ``args``."""
    from transformers import GPT2Config, LlamaConfig

    tok = {k: getattr(tokenizer, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    a = args
    if a.family == "gpt2":
        if a.num_key_value_heads != a.num_attention_heads:
            raise UserError("model.num_key_value_heads", "GPT2LMHeadModel has no grouped-query attention")
        config = GPT2Config(
            vocab_size=a.vocab_size, n_positions=a.max_position_embeddings, n_embd=a.hidden_size, n_layer=a.num_layers,
            n_head=a.num_attention_heads, n_inner=a.intermediate_size,
            activation_function="gelu_new" if a.gelu_approximate == "tanh" else "gelu",
            resid_pdrop=a.dropout, embd_pdrop=a.dropout, attn_pdrop=a.dropout, layer_norm_epsilon=a.norm_eps,
            tie_word_embeddings=a.tie_embeddings, **tok,
        )  # fmt: skip
        config.architectures = ["GPT2LMHeadModel"]
    else:
        config = LlamaConfig(
            vocab_size=a.vocab_size, hidden_size=a.hidden_size, intermediate_size=a.intermediate_size,
            num_hidden_layers=a.num_layers, num_attention_heads=a.num_attention_heads,
            num_key_value_heads=a.num_key_value_heads, max_position_embeddings=a.max_position_embeddings,
            rms_norm_eps=a.norm_eps, rope_theta=a.rope_theta, tie_word_embeddings=a.tie_embeddings,
            attention_bias=a.bias, mlp_bias=a.bias, attention_dropout=a.dropout, hidden_act="silu", **tok,
        )  # fmt: skip
        config.architectures = ["LlamaForCausalLM"]
    return config


def _write_safetensors(tensors: Iterator[tuple[str, Tensor]], out: Path, max_shard_bytes: int) -> None:
    from safetensors.torch import save_file

    shards: list[dict[str, Tensor]] = [{}]
    size = 0
    for name, t in tensors:
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t.detach().to("cpu").contiguous()
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], out / "model.safetensors", metadata={"format": "pt"})
        return
    weight_map, total = {}, 0
    for i, shard in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, out / fname, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, fname))
        total += sum(t.numel() * t.element_size() for t in shard.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def export_hf(
    model: nn.Module,
    out_dir: str | Path,
    tokenizer: Any = None,
    state_dict: dict[str, Tensor] | None = None,
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> None:
    """Write a standard transformers checkpoint (config.json, model.safetensors, generation_config.json, tokenizer).

    ``state_dict``: a full (gathered, e.g. from FSDP) state dict to export instead of ``model.state_dict()``.
    """
    from transformers import GenerationConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = _unwrap(model)
    if isinstance(model, HFCausalLM):
        sd = None if state_dict is None else {k.removeprefix("hf."): v for k, v in state_dict.items()}
        model.hf.save_pretrained(out, state_dict=sd)
    else:
        args: ModelArgs = model.args
        config = hf_config(args, tokenizer)
        _write_safetensors(_to_hf_tensors(_native_state_dict(model, state_dict), args), out, max_shard_bytes)
        config.dtype = next(model.parameters()).dtype
        config.save_pretrained(out)
        GenerationConfig.from_model_config(config).save_pretrained(out)
    if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(out)


# ----------------------------------------------------------------------------------------- transformers -> native
def read_hf_state_dict(hf_dir: str | Path) -> dict[str, Tensor]:
    """All tensors of a local checkpoint: safetensors (single or sharded), else weights_only torch.load."""
    from safetensors.torch import load_file

    d = Path(hf_dir)
    for single, index, safe in (
        ("model.safetensors", "model.safetensors.index.json", True),
        ("pytorch_model.bin", "pytorch_model.bin.index.json", False),
    ):
        if (d / single).is_file():
            files = [d / single]
        elif (d / index).is_file():
            files = [d / f for f in sorted(set(json.loads((d / index).read_text())["weight_map"].values()))]
        else:
            continue
        sd: dict[str, Tensor] = {}
        for f in files:
            sd.update(load_file(f) if safe else torch.load(f, map_location="cpu", weights_only=True, mmap=True))
        return sd
    raise UserError("model.init_from", f"no model.safetensors or pytorch_model.bin weights in {str(d)!r}")


def _from_hf_tensors(hf: dict[str, Tensor], a: ModelArgs) -> dict[str, Tensor]:
    """transformers GPT2LMHeadModel / LlamaForCausalLM tensors renamed and fused into native ones."""
    sd: dict[str, Tensor] = {}
    if a.family == "gpt2":
        g = {k.removeprefix("transformer."): v for k, v in hf.items()}
        sd["wte.weight"], sd["wpe.weight"] = g["wte.weight"], g["wpe.weight"]
        for i in range(a.num_layers):
            for ours, theirs, conv1d in _GPT2_PAIRS:
                w = g[f"h.{i}.{theirs}.weight"]
                sd[f"blocks.{i}.{ours}.weight"] = w.t() if conv1d else w
                sd[f"blocks.{i}.{ours}.bias"] = g[f"h.{i}.{theirs}.bias"]
        sd["norm_f.weight"], sd["norm_f.bias"] = g["ln_f.weight"], g["ln_f.bias"]
    else:
        sd["wte.weight"] = hf["model.embed_tokens.weight"]
        for i in range(a.num_layers):
            p, h = f"blocks.{i}.", f"model.layers.{i}."
            sd[p + "norm1.weight"] = hf[h + "input_layernorm.weight"]
            sd[p + "norm2.weight"] = hf[h + "post_attention_layernorm.weight"]
            for s in ("weight", "bias") if a.bias else ("weight",):
                qkv = [hf[h + f"self_attn.{n}_proj.{s}"] for n in "qkv"]
                sd[p + "attn.qkv." + s] = torch.cat(qkv, dim=0)
                sd[p + "attn.proj." + s] = hf[h + "self_attn.o_proj." + s]
                sd[p + "mlp.fc." + s] = torch.cat([hf[h + "mlp.gate_proj." + s], hf[h + "mlp.up_proj." + s]], dim=0)
                sd[p + "mlp.proj." + s] = hf[h + "mlp.down_proj." + s]
        sd["norm_f.weight"] = hf["model.norm.weight"]
    sd["lm_head.weight"] = sd["wte.weight"] if a.tie_embeddings else hf["lm_head.weight"]
    if not a.bias:  # a bias-free native model can take a gpt2 checkpoint only if its biases are all zero
        for k in [k for k in sd if k.endswith(".bias")]:
            if sd.pop(k).abs().max() > 0:
                raise UserError("model.bias", f"checkpoint has non-zero {k}; set model.bias: true")
    return sd


def load_hf_weights(model: nn.Module, hf_dir: str | Path) -> None:
    """Load a local transformers checkpoint into ``model`` (native or hf backend); shapes must match.

    A native model whose parameters are on the meta device gets the tensors assigned in fp32 (no double copy).
    """
    model = _unwrap(model)
    hf = read_hf_state_dict(hf_dir)
    if isinstance(model, HFCausalLM):
        missing, _ = model.hf.load_state_dict(hf, strict=False)
        model.hf.tie_weights()
        if [k for k in missing if "lm_head" not in k]:
            raise UserError("model.init_from", f"checkpoint lacks {missing[:3]}; is it the same architecture?")
        return
    try:
        sd = _from_hf_tensors(hf, model.args)
    except KeyError as e:
        raise UserError("model.init_from", f"checkpoint lacks tensor {e}; is it a {model.args.family} model?") from e
    own = model.state_dict()
    for k, v in own.items():
        if k not in sd or sd[k].shape != v.shape:
            got = tuple(sd[k].shape) if k in sd else "nothing"
            raise UserError("model.init_from", f"{k}: checkpoint has {got}, model needs {tuple(v.shape)}")
    if any(p.is_meta for p in model.parameters()):
        model.load_state_dict({k: v.to(torch.float32).contiguous() for k, v in sd.items()}, assign=True)
        model.tie_weights()
    else:
        model.load_state_dict(sd)


def _arch_from_hf_config(c: dict[str, Any], path: Path) -> dict[str, Any]:
    mt = c.get("model_type")
    if mt == "gpt2":
        act = c.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
            raise UserError("model.init_from", f"activation {act!r} unsupported; use backend hf")
        h = c["n_embd"]
        return dict(
            family="gpt2", hidden_size=h, num_layers=c["n_layer"], num_attention_heads=c["n_head"],
            num_key_value_heads=c["n_head"], intermediate_size=c.get("n_inner") or 4 * h,
            max_position_embeddings=c["n_positions"], norm_eps=c.get("layer_norm_epsilon", 1e-5),
            tie_embeddings=c.get("tie_word_embeddings", True), bias=True,
            gelu_approximate="none" if act == "gelu" else "tanh",
        )  # fmt: skip
    if mt == "llama":
        h, heads = c["hidden_size"], c["num_attention_heads"]
        rope = c.get("rope_parameters") or c.get("rope_scaling") or {}
        kind = rope.get("rope_type", rope.get("type", "default"))
        problems = [
            f"rope type {kind!r}" if kind not in (None, "default") else "",
            f"head_dim {c['head_dim']}" if c.get("head_dim") not in (None, h // heads) else "",
            "different attention/mlp bias" if c.get("attention_bias", False) != c.get("mlp_bias", False) else "",
            f"activation {c.get('hidden_act')!r}" if c.get("hidden_act", "silu") != "silu" else "",
        ]
        if any(problems):
            why = ", ".join(p for p in problems if p)
            raise UserError("model.init_from", f"{why} not supported by the native model; use model.backend: hf")
        return dict(
            family="llama", hidden_size=h, num_layers=c["num_hidden_layers"], num_attention_heads=heads,
            num_key_value_heads=c.get("num_key_value_heads") or heads, intermediate_size=c["intermediate_size"],
            max_position_embeddings=c.get("max_position_embeddings", 2048), norm_eps=c.get("rms_norm_eps", 1e-6),
            rope_theta=float(c.get("rope_theta") or rope.get("rope_theta", 10000.0)),
            tie_embeddings=c.get("tie_word_embeddings", False), bias=bool(c.get("attention_bias", False)),
        )  # fmt: skip
    raise UserError(
        "model.init_from", f"{str(path)!r} is a {mt!r} model; the native backend reads gpt2 and llama (use backend: hf)"
    )


def build_native_from_hf(cfg: ModelConfig, vocab_size: int, seq_len: int) -> NativeTransformer:
    """A native model shaped like the checkpoint in ``cfg.init_from`` (its config.json wins) with its weights."""
    path = _local_dir(cfg.init_from or "")
    c = json.loads((path / "config.json").read_text())
    arch = _arch_from_hf_config(c, path)
    for k, v in arch.items():
        mine = getattr(cfg, k)
        grows = k == "max_position_embeddings" and arch["family"] == "llama"  # RoPE: any window works
        if mine is not None and not grows and mine != v:
            raise UserError(f"model.{k}", f"{mine!r} conflicts with {v!r} of the init_from checkpoint; remove it")
    ckpt_vocab = int(c["vocab_size"])
    if ckpt_vocab < vocab_size:
        raise UserError(
            "model.init_from",
            f"checkpoint vocabulary ({ckpt_vocab}) is smaller than the tokenizer's ({vocab_size}); use the "
            "checkpoint's tokenizer (tokenizer.type: hf, tokenizer.name_or_path: the same dir)",
        )
    if cfg.padded_vocab_size is not None and cfg.padded_vocab_size != ckpt_vocab:
        raise UserError(
            "model.padded_vocab_size",
            f"{cfg.padded_vocab_size} conflicts with the init_from checkpoint's {ckpt_vocab} rows; remove it",
        )
    preset = "gpt-debug" if arch["family"] == "gpt2" else "llama-debug"
    if cfg.max_position_embeddings:
        arch["max_position_embeddings"] = cfg.max_position_embeddings
    args = resolve_model_args(cfg.model_copy(update={**arch, "name": preset}), ckpt_vocab, seq_len)
    with torch.device("meta"):
        model = NativeTransformer(args.replace(name=cfg.name))
    load_hf_weights(model, path)
    return model


def export_parity(model: nn.Module, out_dir: str | Path, input_ids: Tensor, trust_remote_code: bool = False) -> float:
    """Max |logit difference| between ``model`` and its export reloaded by AutoModelForCausalLM in fp32 on CPU."""
    from transformers import AutoModelForCausalLM

    inner = _unwrap(model)
    hf = AutoModelForCausalLM.from_pretrained(
        out_dir, dtype=torch.float32, attn_implementation="sdpa", local_files_only=True,
        trust_remote_code=trust_remote_code,
    ).eval()  # fmt: skip
    device = next(inner.parameters()).device
    was_training = inner.training
    inner.eval()
    try:
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            ours = inner(input_ids.to(device)).float().cpu()  # (B, T, V)
            theirs = hf(input_ids=input_ids.cpu()).logits.float()  # (B, T, V)
    finally:
        inner.train(was_training)
    return (ours - theirs).abs().max().item()
