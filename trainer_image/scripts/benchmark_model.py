"""Training-step throughput of the native model (and, on CPU, transformers' GPT2LMHeadModel at the same shapes).

Prints one JSON object per line. CPU (fp32): native GPT-2 vs transformers GPT2LMHeadModel (attn sdpa), same weights,
forward + backward + AdamW step, timed steps interleaved so machine noise hits both alike. CUDA: bf16 autocast,
torch.compile, fused AdamW; tokens/s, peak memory and MFU.

    python scripts/benchmark_model.py --device cpu
    python scripts/benchmark_model.py --device cuda --model gpt2-small --batch-size 16 --seq-len 1024
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from distributed_llm_trainer.config.schema import ModelConfig
from distributed_llm_trainer.model.builder import build_model
from distributed_llm_trainer.model.compile import maybe_compile
from distributed_llm_trainer.training.profiling import profile_steps

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def _emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def _step_fn(
    forward: Callable[[], torch.Tensor], params: list[torch.nn.Parameter], fused: bool
) -> Callable[[], torch.Tensor]:
    opt = torch.optim.AdamW(params, lr=1e-4, fused=fused or None)

    def step() -> torch.Tensor:
        loss = forward()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()  # no host sync: on a GPU the next step is queued while this one runs

    return step


def _timed(step: Callable[[], torch.Tensor], sync: Callable[[], None]) -> float:
    sync()
    t0 = time.perf_counter()
    step()
    sync()
    return time.perf_counter() - t0


def run_cpu(a: argparse.Namespace) -> None:
    from transformers import AutoModelForCausalLM

    from distributed_llm_trainer.model.interop import _to_hf_tensors, hf_config

    torch.manual_seed(0)
    cfg = _model_cfg(a)
    native = build_model(cfg, a.vocab_size, a.seq_len).train()
    hf = AutoModelForCausalLM.from_config(hf_config(native.args), attn_implementation="sdpa").train()
    hf.load_state_dict(dict(_to_hf_tensors(native.state_dict(), native.args)), strict=False)
    x = torch.randint(0, a.vocab_size, (a.batch_size, a.seq_len + 1))
    inp, tgt = x[:, :-1], x[:, 1:]
    runs = {
        "native": _step_fn(lambda: native(inp, tgt), list(native.parameters()), a.fused_adamw),
        "transformers": _step_fn(lambda: hf(input_ids=inp, labels=inp).loss, list(hf.parameters()), a.fused_adamw),
    }
    if a.compile:
        compiled = maybe_compile(native, cfg.model_copy(update={"compile": True}), "cpu")
        runs["native_compiled"] = _step_fn(lambda: compiled(inp, tgt), list(native.parameters()), a.fused_adamw)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for name, step in runs.items():
        for _ in range(a.warmup):
            step()
    names = list(runs)
    for i in range(a.steps):  # interleaved, alternating which runs first
        for name in names if i % 2 == 0 else names[::-1]:
            times[name].append(_timed(runs[name], lambda: None))
    tokens = a.batch_size * a.seq_len
    result = {}
    for name, ts in times.items():
        result[name] = tokens * len(ts) / sum(ts)
        _emit(
            backend=name, device="cpu", dtype="fp32", threads=torch.get_num_threads(), batch=a.batch_size,
            fused_adamw=a.fused_adamw, seq_len=a.seq_len, layers=native.args.num_layers,
            hidden=native.args.hidden_size, vocab=a.vocab_size,
            steps=len(ts), tokens_per_s=round(result[name], 1), step_ms_median=round(1e3 * statistics.median(ts), 1),
        )  # fmt: skip
    # Machine speed drifts on shared hosts: the median of the per-round ratios is the robust figure.
    pairs = [h / n for n, h in zip(times["native"], times["transformers"], strict=True)]
    _emit(speedup_native_vs_transformers=round(result["native"] / result["transformers"], 3),
          speedup_median_of_rounds=round(statistics.median(pairs), 3), rounds=len(pairs))
    if a.profile:
        for name, step in runs.items():
            _emit(backend=name, profile=profile_steps(step, a.profile, lambda: None, "cpu"))


def run_cuda(a: argparse.Namespace) -> None:
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    cfg = _model_cfg(a).model_copy(update={"compile": a.compile})
    model = build_model(cfg, a.vocab_size, a.seq_len).cuda().train()
    fwd = maybe_compile(model, cfg, "cuda")
    x = torch.randint(0, a.vocab_size, (a.batch_size, a.seq_len + 1), device="cuda")
    inp, tgt = x[:, :-1], x[:, 1:]

    def forward() -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return fwd(inp, tgt)

    step = _step_fn(forward, list(model.parameters()), True)
    t0 = time.perf_counter()
    for _ in range(a.warmup):
        step()
    torch.cuda.synchronize()
    warmup_s = time.perf_counter() - t0
    torch.cuda.reset_peak_memory_stats()
    # Steps queue back to back (no host sync between them, as in the training loop); events time each one.
    events = [torch.cuda.Event(enable_timing=True) for _ in range(a.steps + 1)]
    events[0].record()
    losses = []
    for i in range(a.steps):
        losses.append(step())
        events[i + 1].record()
    torch.cuda.synchronize()
    ts = [events[i].elapsed_time(events[i + 1]) / 1e3 for i in range(a.steps)]
    tokens_per_s = a.batch_size * a.seq_len * len(ts) / sum(ts)
    name = torch.cuda.get_device_name()
    peak = a.peak_flops or next((v for k, v in PEAK_BF16.items() if k in name), None)
    flops = model.flops_per_token(a.seq_len) * tokens_per_s
    _emit(
        backend="native", device=name, dtype="bf16-autocast", compiled=bool(cfg.compile), model=a.model,
        compile_mode=cfg.compile_mode, attention_backend=cfg.attention_backend,
        params=model.num_parameters(), batch=a.batch_size, seq_len=a.seq_len, steps=len(ts),
        warmup_s=round(warmup_s, 1), tokens_per_s=round(tokens_per_s, 1),
        step_ms_median=round(1e3 * statistics.median(ts), 2),
        peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
        tflops=round(flops / 1e12, 1), mfu=round(flops / peak, 3) if peak else None,
        last_loss=round(float(losses[-1]), 4),
    )  # fmt: skip
    if a.profile:
        _emit(profile=profile_steps(step, a.profile, torch.cuda.synchronize, "cuda"))


def _model_cfg(a: argparse.Namespace) -> ModelConfig:
    over = {"num_layers": a.num_layers, "hidden_size": a.hidden_size, "num_attention_heads": a.heads}
    over = {k: v for k, v in over.items() if v is not None}
    return ModelConfig(name=a.model, dropout=0.0, loss_chunk_size=a.loss_chunk_size,
                       attention_backend=a.attention_backend, compile_mode=a.compile_mode, **over)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--model", default=None, help="preset (default: gpt-debug resized on CPU, gpt2-small on CUDA)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 8 on CPU, 16 on CUDA")
    p.add_argument("--seq-len", type=int, default=None, help="default: 256 on CPU, 1024 on CUDA")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 3 on CPU, 10 on CUDA)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="default: on CUDA only")
    p.add_argument("--num-layers", type=int, default=None)
    p.add_argument("--hidden-size", type=int, default=None)
    p.add_argument("--heads", type=int, default=None)
    p.add_argument("--vocab-size", type=int, default=None, help="default: 8192 on CPU, 50257 on CUDA")
    p.add_argument("--loss-chunk-size", type=int, default=None, help="default: auto (fused chunks unless compiled)")
    p.add_argument("--attention-backend", default="auto", choices=["auto", "flash", "cudnn", "efficient", "math"])
    p.add_argument("--compile-mode", default="default",
                   choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"])
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="after timing, profile N steps: time per step by kernel category and the top kernels")
    p.add_argument("--peak-flops", type=float, default=None, help="bf16 peak for MFU (default: the card's spec)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--fused-adamw", action=argparse.BooleanOptionalAction, default=True,
                   help="CPU: the same AdamW for both models, fused (the pipeline's CPU default) or foreach")
    a = p.parse_args()
    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    cpu = a.device == "cpu"
    if cpu and a.model is None:
        a.model, a.num_layers, a.hidden_size, a.heads = (
            "gpt-debug",
            a.num_layers or 4,
            a.hidden_size or 256,
            a.heads or 4,
        )
    a.model = a.model or "gpt2-small"
    a.batch_size = a.batch_size or (8 if cpu else 16)
    a.seq_len = a.seq_len or (256 if cpu else 1024)
    a.vocab_size = a.vocab_size or (8192 if cpu else 50257)
    a.warmup = a.warmup if a.warmup is not None else (3 if cpu else 10)
    torch.set_num_threads(a.threads)
    if cpu:
        a.compile = bool(a.compile)
        run_cpu(a)
    else:
        a.compile = True if a.compile is None else a.compile
        run_cuda(a)


if __name__ == "__main__":
    main()
