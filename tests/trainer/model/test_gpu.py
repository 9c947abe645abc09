"""CUDA checks (skipped without a GPU): bf16 autocast, GQA kernel path, chunked loss, torch.compile, KV cache."""

from __future__ import annotations

import pytest
import torch

from distributed_llm_trainer.config.schema import ModelConfig
from distributed_llm_trainer.model.builder import build_model
from distributed_llm_trainer.model.compile import maybe_compile

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

V, T, B = 512, 128, 4


def _pair(name: str, **kw):
    torch.manual_seed(0)
    cpu = build_model(ModelConfig(name=name, **kw), V, T)
    gpu = build_model(ModelConfig(name=name, **kw), V, T).cuda()
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu


def _batch(device: str = "cuda") -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, V, (B, T), generator=g), torch.randint(0, V, (B, T), generator=g)
    return x.to(device), y.to(device)


@pytest.mark.parametrize("name", ["gpt-debug", "llama-debug"])
def test_cuda_bf16_matches_cpu_fp32_and_chunked(name: str) -> None:
    cpu, gpu = _pair(name)
    x, y = _batch()
    ref = cpu(x.cpu(), y.cpu())
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = gpu(x, y)
        logits = gpu(x)
    assert logits.dtype == torch.bfloat16
    torch.testing.assert_close(loss.float().cpu(), ref, atol=2e-2, rtol=2e-2)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in gpu.named_parameters()}
    gpu.zero_grad()
    gpu.args = gpu.args.replace(loss_chunk_size=100)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        chunked = gpu(x, y)
    chunked.backward()
    torch.testing.assert_close(chunked, loss, atol=1e-3, rtol=1e-3)
    for n, p in gpu.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], atol=1e-3, rtol=2e-2, msg=n)


def test_gqa_kernel_path_matches_fp32_reference() -> None:
    cpu, gpu = _pair("llama-debug")
    x, _ = _batch()
    with torch.no_grad():
        ref = cpu(x.cpu())
        torch.testing.assert_close(gpu(x).cpu(), ref, atol=1e-3, rtol=1e-3)  # fp32 (tf32 off by default)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            torch.testing.assert_close(gpu(x).float().cpu(), ref, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("name", ["gpt-debug", "llama-debug"])
@pytest.mark.parametrize("backend", ["flash", "cudnn", "efficient"])
def test_forced_attention_kernel_matches_auto_bf16(name: str, backend: str) -> None:
    _, auto = _pair(name)
    _, forced = _pair(name, attention_backend=backend)
    x, y = _batch()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        ref, loss = auto(x, y), forced(x, y)
    loss.backward()
    ref.backward()
    torch.testing.assert_close(loss, ref, atol=2e-2, rtol=2e-2)
    for (n, p), q in zip(forced.named_parameters(), auto.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=2e-2, rtol=5e-2, msg=n)


@pytest.mark.parametrize("name", ["gpt-debug", "llama-debug"])
def test_compile_matches_eager(name: str) -> None:
    _, gpu = _pair(name, activation_checkpointing=True)
    x, y = _batch()
    compiled = maybe_compile(gpu, ModelConfig(), "cuda")
    assert compiled is not gpu
    with torch.autocast("cuda", dtype=torch.bfloat16):
        eager = gpu(x, y)
        fast = compiled(x, y)
    fast.backward()
    torch.testing.assert_close(fast, eager, atol=2e-2, rtol=2e-2)
    assert all(torch.isfinite(p.grad).all() for p in gpu.parameters())


def test_cuda_graphs_training_keeps_every_step_loss() -> None:
    (_, eager), (_, graphs) = _pair("gpt-debug"), _pair("gpt-debug")  # same seed: same weights
    run = maybe_compile(graphs, ModelConfig(compile=True, compile_mode="reduce-overhead"), "cuda")
    x, y = _batch()
    losses: dict[str, list[torch.Tensor]] = {"eager": [], "graphs": []}
    for name, model, fwd in (("eager", eager, eager), ("graphs", graphs, run)):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
        for _ in range(4):  # the graphs are recorded on the first calls, then replayed
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = fwd(x, y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses[name].append(loss.detach())
    torch.testing.assert_close(torch.stack(losses["graphs"]), torch.stack(losses["eager"]), atol=3e-2, rtol=3e-2)
    assert len({round(float(v), 4) for v in losses["graphs"]}) == 4  # each step's own value, not the last replay's


@pytest.mark.parametrize("name", ["gpt-debug", "llama-debug"])
def test_decoding_never_uses_cudnn_attention(name: str) -> None:
    # cuDNN builds an execution plan per new key length: every decoding step would pay it (even when forced).
    _, gpu = _pair(name, attention_backend="cudnn")
    prompt = _batch()[0][:2, :5]
    with torch.autocast("cuda", dtype=torch.bfloat16), torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CUDA]
    ) as prof:
        out = gpu.generate(prompt, 6, temperature=0.0)
    assert out.shape == (2, 11)
    kernels = [e.key.lower() for e in prof.key_averages()]
    assert not [k for k in kernels if "cudnn" in k and "sdpa" in k], kernels


@pytest.mark.parametrize("name", ["gpt-debug", "llama-debug"])
def test_cuda_kv_cache_greedy_equals_recompute(name: str) -> None:
    _, gpu = _pair(name)
    gpu.eval()
    prompt = _batch()[0][:2, :7]
    out = gpu.generate(prompt, 12, temperature=0.0)
    ids = prompt
    with torch.no_grad():
        for _ in range(12):
            ids = torch.cat([ids, gpu(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, ids)
