"""backend: hf adapter (any transformers causal LM) and the torch.compile policy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distributed_llm_trainer.config.schema import ModelConfig
from distributed_llm_trainer.errors import UserError
from distributed_llm_trainer.model.builder import build_model
from distributed_llm_trainer.model.compile import maybe_compile, should_compile
from distributed_llm_trainer.model.interop import export_hf, export_parity

pytest.importorskip("transformers")

V, T = 89, 10


def _ids(b: int = 2, t: int = T) -> torch.Tensor:
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "mistral", "qwen2", "gpt_neox"])
def test_hf_backend_interface(model_type: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(name="llama-debug", backend="hf", hf_model_type=model_type, dropout=0.0)
    model = build_model(cfg, vocab_size=V, seq_len=T).eval()
    assert model.args.hf_model_type == model_type
    assert len(model.blocks) == 2 and isinstance(model.blocks, torch.nn.ModuleList)
    assert not any(k.startswith("blocks.") for k in model.state_dict())
    x, y = _ids(), _ids()
    y[:, :2] = -100
    logits = model(x)
    assert logits.shape == (2, T, V)
    loss = model(x, y)
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, V), y.reshape(-1), ignore_index=-100))
    chunked = build_model(cfg.model_copy(update={"loss_chunk_size": 3}), V, T)
    chunked.load_state_dict(model.state_dict())
    torch.testing.assert_close(chunked.eval()(x, y), loss)
    n = sum(p.numel() for p in model.hf.parameters())
    assert model.num_parameters() == n
    a = model.args
    attn = 12 * a.num_layers * a.num_attention_heads * a.head_dim * T
    assert model.flops_per_token(T) == pytest.approx(6 * model.num_parameters(True) + attn)
    out = model.generate(x[:, :3], 4, temperature=0.0)
    assert out.shape == (2, 7) and torch.equal(out[:, :3], x[:, :3])
    assert model.generate(x[:, :3], 4, temperature=0.9, top_k=5, top_p=0.9).shape == (2, 7)


def test_hf_backend_export_and_native_import_agree(tmp_path) -> None:
    torch.manual_seed(0)
    hf_model = build_model(ModelConfig(name="llama-debug", backend="hf"), vocab_size=V, seq_len=T).eval()
    export_hf(hf_model, tmp_path)
    assert export_parity(hf_model, tmp_path, _ids()) < 1e-5
    native = build_model(ModelConfig(init_from=str(tmp_path)), vocab_size=V, seq_len=T).eval()
    again = build_model(ModelConfig(backend="hf", init_from=str(tmp_path)), vocab_size=V, seq_len=T).eval()
    with torch.no_grad():
        torch.testing.assert_close(native(_ids()), hf_model(_ids()), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(again(_ids()), hf_model(_ids()))


def test_hf_backend_errors() -> None:
    with pytest.raises(UserError) as e:
        build_model(ModelConfig(backend="hf", hf_model_type="not-a-model"), V, T)
    assert e.value.what == "model.hf_model_type"


def test_compile_policy() -> None:
    from lightning.pytorch import LightningModule

    model = torch.nn.Linear(2, 2)
    assert not should_compile(ModelConfig(), "cpu") and should_compile(ModelConfig(), "cuda")
    assert should_compile(ModelConfig(compile=True), "cpu") and not should_compile(ModelConfig(compile=False), "cuda")
    assert maybe_compile(model, ModelConfig(), "cpu") is model
    compiled = maybe_compile(model, ModelConfig(compile=True), "cpu", backend="eager")
    assert compiled is not model and compiled._orig_mod is model
    torch.testing.assert_close(compiled(torch.ones(1, 2)), model(torch.ones(1, 2)))
    with pytest.raises(TypeError):
        maybe_compile(LightningModule(), ModelConfig(compile=True), "cuda")


def test_compile_mode_reaches_torch_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict] = []
    monkeypatch.setattr(torch, "compile", lambda model, **kw: seen.append(kw) or model)
    model = torch.nn.Linear(2, 2)
    maybe_compile(model, ModelConfig(compile=True), "cpu")
    maybe_compile(model, ModelConfig(compile=True, compile_mode="max-autotune-no-cudagraphs"), "cpu")
    maybe_compile(model, ModelConfig(compile_mode="max-autotune"), "cpu")  # compile unset: off on CPU
    assert seen == [{"dynamic": False}, {"dynamic": False, "mode": "max-autotune-no-cudagraphs"}]


def test_cuda_graph_modes_mark_each_step_and_copy_the_output(monkeypatch: pytest.MonkeyPatch) -> None:
    marks: list[int] = []
    monkeypatch.setattr(torch, "compile", lambda model, **kw: model)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    model = torch.nn.Linear(2, 2)
    for mode in ("reduce-overhead", "max-autotune"):
        run = maybe_compile(model, ModelConfig(compile=True, compile_mode=mode), "cuda")
        x = torch.ones(1, 2)
        out = run(x)
        torch.testing.assert_close(out, model(x))
        out.sum().backward()  # the copy stays in the autograd graph
        assert model.weight.grad is not None
    assert marks == [1, 1]
    assert maybe_compile(model, ModelConfig(compile=True, compile_mode="reduce-overhead"), "cpu") is model
    assert maybe_compile(model, ModelConfig(compile=True), "cuda") is model  # no graphs: the module itself


def test_hf_backend_activation_checkpointing_same_grads() -> None:
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        cfg = ModelConfig(name="llama-debug", backend="hf", activation_checkpointing=ckpt)
        model = build_model(cfg, vocab_size=V, seq_len=T).train()
        on = any(getattr(m, "gradient_checkpointing", False) for m in model.hf.modules())
        assert on == ckpt
        model(_ids(), _ids()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for n, g in grads[0].items():
        torch.testing.assert_close(g, grads[1][n], msg=n)


def test_compile_keeps_shapes_static() -> None:
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    counter = CompileCounter()
    model = build_model(ModelConfig(name="gpt-debug", num_layers=1), V, T)
    compiled = maybe_compile(model, ModelConfig(compile=True), "cpu", backend=counter)
    for batch in (4, 3, 2, 3):  # a dynamic graph would have served 2 after 3; static shapes compile each size once
        compiled(torch.zeros(batch, T, dtype=torch.long))
    assert counter.frame_count == 3
    torch._dynamo.reset()


def test_hf_backend_gelu_choice_reaches_the_config() -> None:
    for approximate, act in (("none", "gelu"), ("tanh", "gelu_new")):
        cfg = ModelConfig(name="gpt-debug", backend="hf", gelu_approximate=approximate)
        assert build_model(cfg, vocab_size=V, seq_len=T).hf.config.activation_function == act
