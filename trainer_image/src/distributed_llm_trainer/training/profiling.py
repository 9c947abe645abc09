"""Where a training step's time goes: a short torch.profiler capture summarized by kernel category.

Used by ``scripts/benchmark_model.py --profile``. On CUDA the figures are GPU kernel times (self device time);
on CPU, operators' self CPU time. ``busy_share`` (kernel time / wall time) below ~0.95 on a GPU means the card
waits on the host: launch overhead, a sync, or the data loader.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter

from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

# First match wins, so the specific names come before the generic ones (a fused softmax kernel is "loss").
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("attention", ("flash", "fmha", "sdpa", "attention", "attn")),
    ("optimizer", ("adam", "multi_tensor", "foreach", "clip_grad")),
    ("loss", ("cross_entropy", "nll_loss", "log_softmax", "logsumexp")),
    ("matmul", ("gemm", "nvjet", "cutlass", "xmma", "cublas", "sm90_", "sm80_", "ampere_", "aten::mm", "aten::addmm",
                "aten::bmm", "aten::linear", "aten::matmul")),
    ("norm", ("layer_norm", "rms_norm")),
    ("embedding", ("embedding", "index_add", "indexing_backward", "index_put", "gather", "scatter")),
    ("fused_elementwise", ("triton_",)),  # inductor's other kernels (their names may say "_to_copy": not copies)
    ("copy_fill", ("memcpy", "memset", "copy", "fill", "zero")),
)


def category(name: str) -> str:
    """The category of a kernel or operator name (``other`` when none matches)."""
    low = name.lower()
    for cat, keys in CATEGORIES:
        if any(k in low for k in keys):
            return cat
    return "other"


def event_us(ev: object, gpu: bool) -> float:
    """Self time (µs) an aggregated profiler event adds to the step, counting each piece of work once.

    GPU: kernels, copies and fills only; CPU operators would count their kernels' device time a second time, and
    annotation ranges (``## Call CompiledFxGraph ...``) span kernels already counted. CPU: ``aten::`` operators.
    """
    key = str(getattr(ev, "key", ""))
    if gpu:
        if getattr(ev, "device_type", None) != DeviceType.CUDA or getattr(ev, "is_user_annotation", False):
            return 0.0
        if key.startswith("##"):
            return 0.0
        return float(getattr(ev, "self_device_time_total", 0.0) or 0.0)
    return float(getattr(ev, "self_cpu_time_total", 0.0) or 0.0) if key.startswith("aten::") else 0.0


def profile_steps(step: Callable[[], object], steps: int, sync: Callable[[], None], device_type: str,
                  top: int = 12) -> dict[str, object]:
    """Run ``step`` ``steps`` times under the profiler; milliseconds per step by category and the top kernels."""
    gpu = device_type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    sync()
    with profile(activities=activities) as prof:
        t0 = perf_counter()
        for _ in range(steps):
            step()
        sync()
        wall_s = perf_counter() - t0
    per_name: dict[str, float] = {}
    for ev in prof.key_averages():
        us = event_us(ev, gpu)
        if us > 0:
            per_name[ev.key] = per_name.get(ev.key, 0.0) + us / 1e3 / steps  # ms per step
    cats: dict[str, float] = {}
    for name, ms in per_name.items():
        cats[category(name)] = cats.get(category(name), 0.0) + ms
    busy = sum(per_name.values())
    wall_ms = 1e3 * wall_s / steps
    ranked = sorted(per_name.items(), key=lambda kv: -kv[1])[:top]
    return {
        "profiled_steps": steps,
        "wall_ms_per_step": round(wall_ms, 3),
        "busy_ms_per_step": round(busy, 3),
        "busy_share": round(busy / wall_ms, 3) if wall_ms > 0 else None,
        "ms_per_step_by_category": {k: round(v, 3) for k, v in sorted(cats.items(), key=lambda kv: -kv[1])},
        "top": [{"name": n[:120], "ms_per_step": round(ms, 3), "category": category(n)} for n, ms in ranked],
    }
