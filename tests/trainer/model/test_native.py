"""Native GPT-2/Llama: shapes, loss, chunked loss, activation checkpointing, presets, generation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from distributed_llm_trainer.config.schema import ModelConfig
from distributed_llm_trainer.errors import UserError
from distributed_llm_trainer.model.builder import build_model
from distributed_llm_trainer.model.registry import PRESETS, resolve_model_args

V, T, B = 97, 16, 2
FAMILIES = ["gpt-debug", "llama-debug"]


def _model(name: str, **kw):
    torch.manual_seed(0)
    return build_model(ModelConfig(name=name, **kw), vocab_size=V, seq_len=T)


def _batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, V, (B, T), generator=g)
    y = torch.randint(0, V, (B, T), generator=g)
    y[0, :3] = -100
    return x, y


@pytest.mark.parametrize("name", FAMILIES)
def test_forward_shapes_and_loss_matches_manual_ce(name: str) -> None:
    model = _model(name)
    x, y = _batch()
    logits = model(x)
    assert logits.shape == (B, T, V)
    loss = model(x, y)
    assert loss.ndim == 0
    manual = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(loss, manual)
    assert math.isclose(loss.item(), math.log(V), rel_tol=0.1)  # near-uniform at init


@pytest.mark.parametrize("name", FAMILIES)
def test_chunked_loss_equals_single_pass_with_grads(name: str) -> None:
    x, y = _batch()
    results = []
    for chunk in (0, 5):
        model = _model(name, loss_chunk_size=chunk)
        loss = model(x, y)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    torch.testing.assert_close(results[0][0], results[1][0])
    for n, g in results[0][1].items():
        torch.testing.assert_close(g, results[1][1][n], atol=1e-6, rtol=1e-5, msg=n)


@pytest.mark.parametrize("name", FAMILIES)
def test_activation_checkpointing_same_grads(name: str) -> None:
    x, y = _batch()
    grads = []
    for ckpt in (False, True):
        model = _model(name, activation_checkpointing=ckpt, dropout=0.0)
        model.train()
        model(x, y).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for n, g in grads[0].items():
        torch.testing.assert_close(g, grads[1][n], msg=n)


def test_structure_tied_gqa_and_init() -> None:
    gpt = _model("gpt-debug")
    assert gpt.lm_head.weight is gpt.wte.weight
    assert len(gpt.blocks) == 2 and isinstance(gpt.blocks, torch.nn.ModuleList)
    assert gpt.blocks[0].attn.qkv.bias is not None
    llama = _model("llama-debug")
    a = llama.args
    assert a.num_key_value_heads < a.num_attention_heads
    assert llama.blocks[0].attn.qkv.weight.shape == ((a.num_attention_heads + 2 * a.num_key_value_heads) * a.head_dim,
                                                     a.hidden_size)  # fmt: skip
    assert llama.blocks[0].attn.qkv.bias is None and llama.wpe is None
    big = build_model(ModelConfig(name="gpt-debug", num_layers=8, hidden_size=128), V, T)
    assert abs(big.blocks[0].mlp.proj.weight.std().item() - 0.02 / math.sqrt(16)) < 2e-3
    assert abs(big.blocks[0].mlp.fc.weight.std().item() - 0.02) < 2e-3


def _sdpa_ops(fn) -> set[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages() if "scaled_dot_product" in e.key}


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("backend", ["math", "flash"])
def test_forced_attention_backend_same_loss_grads_and_kernel(name: str, backend: str) -> None:
    x, y = _batch()
    runs = {}
    for choice in ("auto", backend):
        model = _model(name, attention_backend=choice)
        loss = model(x, y)
        loss.backward()
        runs[choice] = (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
        ops = _sdpa_ops(lambda m=model: m(x, y))
        if choice == "math":  # the forced kernel ran, not PyTorch's CPU default (flash)
            assert "aten::_scaled_dot_product_attention_math" in ops
            assert not any("flash" in op for op in ops)
        else:
            assert "aten::_scaled_dot_product_flash_attention_for_cpu" in ops
    torch.testing.assert_close(runs["auto"][0], runs[backend][0])
    for n, g in runs["auto"][1].items():
        torch.testing.assert_close(g, runs[backend][1][n], atol=1e-6, rtol=1e-5, msg=n)


def test_forced_attention_backend_leaves_masked_calls_to_pytorch() -> None:
    """Padding masks and cached chunks need a masked kernel: a forced maskless kernel must not break them."""
    model = _model("llama-debug", attention_backend="flash").eval()
    x, _ = _batch()
    mask = torch.ones(B, T, dtype=torch.long)
    mask[:, :2] = 0
    assert torch.isfinite(model(x, attention_mask=mask)).all()
    out = model.generate(x[:, :4], max_new_tokens=3, temperature=0.0)
    assert out.shape == (B, 7)


def test_padding_mask_left_padding_matches_unpadded() -> None:
    model = _model("llama-debug").eval()
    x, _ = _batch()
    pad = 3
    # keys at the padded positions must not influence the real tokens; RoPE is relative so shifting is harmless
    xp = torch.cat([torch.zeros(B, pad, dtype=torch.long), x], dim=1)
    mask = torch.cat([torch.zeros(B, pad, dtype=torch.long), torch.ones(B, T, dtype=torch.long)], dim=1)
    ref = model(x)
    out = model(xp, attention_mask=mask)[:, pad:]
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    assert torch.isfinite(model(xp, attention_mask=mask)).all()
    torch.testing.assert_close(model(x, attention_mask=torch.ones(B, T)), ref)


def test_generate_greedy_and_sampling() -> None:
    for name in FAMILIES:
        model = _model(name)
        prompt = torch.randint(0, V, (2, 3))
        out = model.generate(prompt, 5, temperature=0.0)
        assert out.shape == (2, 8) and torch.equal(out[:, :3], prompt)
        out = model.generate(prompt, 5, temperature=0.8, top_k=10, top_p=0.9)
        assert out.shape == (2, 8)
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="gpt-debug", max_position_embeddings=12), V, 12)
    out = model.generate(torch.randint(0, V, (1, 10)), 8, temperature=0.0)  # runs past the 12-position window
    assert out.shape == (1, 18)


def test_presets_resolve() -> None:
    assert {"gpt-debug", "llama-debug", "gpt2-small", "tinyllama-1.1b", "llama-8b"} <= set(PRESETS)
    for name in PRESETS:
        a = resolve_model_args(ModelConfig(name=name), 32000, 512)
        assert a.hidden_size % a.num_attention_heads == 0 and a.num_attention_heads % a.num_key_value_heads == 0
    a = resolve_model_args(ModelConfig(name="llama-8b"), 128256, 16384)
    assert (a.num_key_value_heads, a.intermediate_size, a.rope_theta) == (8, 14336, 500000.0)
    assert a.max_position_embeddings == 16384
    a = resolve_model_args(ModelConfig(name="tinyllama-1.1b", num_layers=4, dropout=0.1), 32000, 128)
    assert (a.num_layers, a.hidden_size, a.num_key_value_heads, a.dropout) == (4, 2048, 4, 0.1)


def test_user_errors() -> None:
    with pytest.raises(UserError) as e:
        resolve_model_args(ModelConfig(name="gpt5"), 100, 16)
    assert e.value.what == "model.name" and "gpt2-small" in e.value.why
    with pytest.raises(UserError) as e:
        resolve_model_args(ModelConfig(name="gpt2-small"), 100, 2048)
    assert e.value.what == "data.seq_len"
    with pytest.raises(UserError):
        resolve_model_args(ModelConfig(name="llama-debug", num_key_value_heads=3), 100, 16)  # 3 ∤ 4 heads
    with pytest.raises(UserError) as e:
        resolve_model_args(ModelConfig(name="gpt-debug", padded_vocab_size=99), 100, 16)
    assert e.value.what == "model.padded_vocab_size" and "smaller than the tokenizer's 100" in e.value.why
    with pytest.raises(UserError) as e:
        resolve_model_args(ModelConfig(name="llama-debug", gelu_approximate="none"), 100, 16)
    assert e.value.what == "model.gelu_approximate"


def test_padded_vocab_rows_and_flops() -> None:
    for name in FAMILIES:
        plain, padded = _model(name), _model(name, padded_vocab_size=V + 27)
        assert padded.args.vocab_size == V + 27 and padded.lm_head.weight.shape[0] == V + 27
        extra = 27 * plain.args.hidden_size * (1 if plain.args.tie_embeddings else 2)
        assert padded.num_parameters(True) - plain.num_parameters(True) == extra
        assert padded.flops_per_token(T) - plain.flops_per_token(T) == 6 * extra
        x, y = _batch()
        loss = padded(x, y)
        assert torch.isfinite(loss) and padded(x).shape == (B, T, V + 27)


def test_meta_init_then_to_empty_and_init_weights() -> None:
    with torch.device("meta"):
        model = build_model(ModelConfig(name="gpt-debug"), V, T)
    model.to_empty(device="cpu")
    model.init_weights()
    assert model.lm_head.weight is model.wte.weight
    assert abs(model.wte.weight.std().item() - 0.02) < 2e-3
    assert model(_batch()[0]).shape == (B, T, V)
