"""Parity with transformers (CPU, fp32, tiny configs, no network): logits, loss, import, export, KV cache, FLOPs."""

from __future__ import annotations

import json

import pytest
import torch

from distributed_llm_trainer.config.schema import ModelConfig
from distributed_llm_trainer.errors import UserError
from distributed_llm_trainer.model.builder import build_model
from distributed_llm_trainer.model.interop import _to_hf_tensors, export_hf, export_parity, hf_config

transformers = pytest.importorskip("transformers")

V, T = 101, 12
TOL = dict(atol=1e-4, rtol=1e-4)
CASES = {
    "gpt2": dict(name="gpt-debug"),
    "gpt2-exact-gelu": dict(name="gpt-debug", gelu_approximate="none"),  # nanoGPT's nn.GELU(); HF "gelu"
    "llama-gqa-untied": dict(name="llama-debug"),
    "llama-tied-bias": dict(name="llama-debug", tie_embeddings=True, bias=True, rope_theta=500.0),
}


def _native(**kw):
    torch.manual_seed(0)
    model = build_model(ModelConfig(**kw), vocab_size=V, seq_len=T).eval()
    with torch.no_grad():  # perturb everything (norm weights, biases too) so every mapping error shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def _ids(b: int = 2, t: int = T, seed: int = 3) -> torch.Tensor:
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(seed))


def _hf_copy(model):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_config(hf_config(model.args), attn_implementation="sdpa").eval()
    missing, unexpected = hf.load_state_dict(dict(_to_hf_tensors(model.state_dict(), model.args)), strict=False)
    assert not unexpected and all("lm_head" in k for k in missing), (missing, unexpected)
    return hf


@pytest.mark.parametrize("case", CASES)
def test_logits_and_loss_match_transformers(case: str) -> None:
    model = _native(**CASES[case])
    hf = _hf_copy(model)
    assert type(hf).__name__ == ("GPT2LMHeadModel" if case.startswith("gpt2") else "LlamaForCausalLM")
    x = _ids()
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf(input_ids=x).logits, **TOL)
        ours = model(x[:, :-1], x[:, 1:])  # our targets are already shifted
        theirs = hf(input_ids=x, labels=x).loss  # transformers shifts internally
    torch.testing.assert_close(ours, theirs, **TOL)


@pytest.mark.parametrize("family", ["gpt2", "gpt2-exact-gelu", "llama"])
def test_init_from_transformers_checkpoint(family: str, tmp_path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    if family.startswith("gpt2"):
        act = "gelu" if family == "gpt2-exact-gelu" else "gelu_new"
        cfg = GPT2Config(vocab_size=V + 3, n_positions=32, n_embd=48, n_layer=2, n_head=4, bos_token_id=0,
                         eos_token_id=0, activation_function=act)  # fmt: skip
        hf = GPT2LMHeadModel(cfg)
    else:
        cfg = LlamaConfig(vocab_size=V + 3, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, rope_theta=1000.0, bos_token_id=0,
                          eos_token_id=0)  # fmt: skip
        hf = LlamaForCausalLM(cfg)
    hf.save_pretrained(tmp_path)
    model = build_model(ModelConfig(init_from=str(tmp_path)), vocab_size=V, seq_len=T).eval()
    assert model.args.family == family.split("-")[0] and model.args.vocab_size == V + 3 and model.args.hidden_size == 48
    assert model.args.gelu_approximate == ("none" if family == "gpt2-exact-gelu" else "tanh")
    assert all(not p.is_meta and p.dtype == torch.float32 for p in model.parameters())
    assert (model.lm_head.weight is model.wte.weight) == family.startswith("gpt2")
    x = _ids()
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf.eval()(input_ids=x).logits, **TOL)


def test_init_from_errors(tmp_path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    from distributed_llm_trainer.errors import UserError

    GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=1, n_head=2)).save_pretrained(tmp_path)
    with pytest.raises(UserError, match="vocabulary"):
        build_model(ModelConfig(init_from=str(tmp_path)), vocab_size=V, seq_len=8)
    with pytest.raises(UserError) as e:
        build_model(ModelConfig(init_from=str(tmp_path), hidden_size=64), vocab_size=40, seq_len=8)
    assert e.value.what == "model.hidden_size"
    with pytest.raises(UserError):
        build_model(ModelConfig(init_from=str(tmp_path / "nope")), vocab_size=40, seq_len=8)


@pytest.mark.parametrize("case", CASES)
def test_export_reloads_with_same_logits(case: str, tmp_path) -> None:
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    model = _native(**CASES[case])
    vocab = {f"t{i}": i for i in range(V)}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0")), eos_token="t1")
    export_hf(model, tmp_path, tokenizer=tok)
    for f in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json"):
        assert (tmp_path / f).is_file(), f
    assert json.loads((tmp_path / "config.json").read_text())["eos_token_id"] == 1
    assert export_parity(model, tmp_path, _ids()) < 1e-4


def test_sharded_export_and_reimport(tmp_path) -> None:
    model = _native(name="llama-debug")
    export_hf(model, tmp_path, max_shard_bytes=30_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert export_parity(model, tmp_path, _ids()) < 1e-4
    again = build_model(ModelConfig(name="llama-debug", init_from=str(tmp_path)), vocab_size=V, seq_len=T).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(_ids()), model(_ids()), atol=0, rtol=0)


@pytest.mark.parametrize("case", ["gpt2", "llama-gqa-untied"])
def test_kv_cache_greedy_equals_full_recompute(case: str) -> None:
    model = _native(**CASES[case])
    prompt = _ids(2, 5)
    out = model.generate(prompt, 10, temperature=0.0)
    ids = prompt
    with torch.no_grad():
        for _ in range(10):
            nxt = model(ids)[:, -1].argmax(-1, keepdim=True)  # full recomputation, no cache
            ids = torch.cat([ids, nxt], dim=1)
    assert torch.equal(out, ids)
    eos = int(ids[0, 7])  # first row stops at its 3rd new token and is padded with eos from there
    out = model.generate(prompt, 10, temperature=0.0, eos_token_id=eos)
    assert torch.equal(out[0, :8], ids[0, :8]) and (out[0, 7:] == eos).all()


def test_gpt2_small_params_and_flops() -> None:
    with torch.device("meta"):
        model = build_model(ModelConfig(name="gpt2-small"), vocab_size=50257, seq_len=1024)
    V_, D, L, P, H, Q = 50257, 768, 12, 1024, 12, 64
    per_layer = (
        2 * D  # ln_1
        + D * 3 * D + 3 * D  # c_attn
        + D * D + D  # attn c_proj
        + 2 * D  # ln_2
        + D * 4 * D + 4 * D  # c_fc
        + 4 * D * D + D  # mlp c_proj
    )  # fmt: skip
    assert per_layer == 7_087_872
    total = V_ * D + P * D + L * per_layer + 2 * D  # wte (tied with lm_head) + wpe + blocks + ln_f
    assert total == 124_439_808
    assert model.num_parameters() == total
    n = total - P * D
    assert model.num_parameters(exclude_position_embeddings=True) == n == 123_653_376
    flops = 6 * n + 12 * L * H * Q * 1024  # 741,920,256 + 113,246,208
    assert flops == 855_166_464
    assert model.flops_per_token(1024) == pytest.approx(flops)


def test_padded_vocab_exports_and_reimports(tmp_path) -> None:
    model = _native(name="gpt-debug", padded_vocab_size=V + 31)
    assert model.wte.weight.shape[0] == V + 31 and model.lm_head.weight.shape[0] == V + 31
    assert model(_ids()).shape[-1] == V + 31
    export_hf(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["vocab_size"] == V + 31
    assert export_parity(model, tmp_path, _ids()) < 1e-4
    again = build_model(ModelConfig(init_from=str(tmp_path)), vocab_size=V, seq_len=T).eval()  # checkpoint's rows win
    with torch.no_grad():
        torch.testing.assert_close(again(_ids()), model(_ids()), atol=0, rtol=0)
    with pytest.raises(UserError) as e:
        build_model(ModelConfig(init_from=str(tmp_path), padded_vocab_size=V + 1), vocab_size=V, seq_len=T)
    assert e.value.what == "model.padded_vocab_size"
