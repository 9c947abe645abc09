"""``training.batch_size: auto``: pick the micro-batch before the budget is computed.

CUDA (one device): try micro-batches 1, 2, 4, ... (a few real forward/backward/AdamW steps each, eager, with the
run's precision and FP8 setting), stop at the first that runs out of memory or peaks above ``MEMORY_HEADROOM`` of
the card (evaluation, fragmentation and a long run need the rest), or when throughput stops improving, and keep
the one with the most tokens/s. The global batch is then kept through accumulation:

* ``training.global_batch_size`` set: only micro-batches that divide ``global_batch_size / devices`` are tried,
  and accumulation makes up the rest (the optimization is the same on any GPU);
* not set: the chosen micro-batch is the global batch (accumulation 1); the console says so, and setting
  ``global_batch_size`` pins it.

CPU (and anything else): ``auto`` is ``AUTO_CPU_BATCH`` (8), or the largest divisor of the per-device global batch
below it. A resumed run reuses the values its saved ``config.yaml`` resolved to, so it never changes geometry.
Searching on several GPUs is not supported (ranks would have to agree on a timing): that is a clear error.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..config.schema import Config
from ..errors import UserError

AUTO_CPU_BATCH = 8
MAX_AUTO_BATCH = 1024
TRIAL_STEPS = 3  # the first warms up kernels and allocator; the rest are timed
MIN_GAIN = 1.03  # a larger micro-batch must be this much faster to count as an improvement
MEMORY_HEADROOM = 0.9  # a trial may peak at this share of the card's memory (an H200 trial at 98% was kept before)


def saved_batch(run_root: Path) -> tuple[int, int | None] | None:
    """(batch_size, global_batch_size) from a run's saved config.yaml, if it holds resolved values."""
    import yaml

    path = run_root / "config.yaml"
    if not path.is_file():
        return None
    training = (yaml.safe_load(path.read_text()) or {}).get("training", {})
    bs = training.get("batch_size")
    return (bs, training.get("global_batch_size")) if isinstance(bs, int) else None


def candidates(per_device_global: int | None, limit: int = MAX_AUTO_BATCH) -> list[int]:
    """Powers of two up to ``limit`` that divide ``per_device_global`` (all of them when it is None)."""
    out, b = [], 1
    while b <= limit:
        if per_device_global is None or per_device_global % b == 0:
            out.append(b)
        b *= 2
    return out


def cpu_default(per_device_global: int | None) -> int:
    if per_device_global is None:
        return AUTO_CPU_BATCH
    return max(b for b in range(1, AUTO_CPU_BATCH + 1) if per_device_global % b == 0)


def trial_tokens_per_s(cfg: Config, vocab_size: int, micro: int, device: torch.device, precision: str
                       ) -> tuple[float, int]:
    """(tokens/s, peak reserved bytes) of ``TRIAL_STEPS`` real training steps at micro-batch ``micro`` (raises
    OutOfMemoryError)."""
    from .bare_loop import BareLoop
    from .budget import Budget

    seq = cfg.data.seq_len
    eager = cfg.model_copy(update={"model": cfg.model.model_copy(update={"compile": False})})
    budget = Budget(micro, 1, 1, micro, seq, TRIAL_STEPS, 0, "max_steps")
    loop = BareLoop(eager, vocab_size, budget, device, precision)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab_size, (micro, seq + 1), generator=gen)
    batch = {"input_ids": ids[:, :-1].contiguous(), "targets": ids[:, 1:].contiguous()}

    def stream() -> Any:
        while True:
            yield batch

    it = stream()
    torch.cuda.reset_peak_memory_stats(device)
    try:
        loop.step(it)
        torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(TRIAL_STEPS - 1):
            loop.step(it)
        torch.cuda.synchronize(device)
        tps = micro * seq * (TRIAL_STEPS - 1) / (time.perf_counter() - t0)
        return tps, torch.cuda.max_memory_reserved(device)
    finally:
        del loop, it
        gc.collect()
        torch.cuda.empty_cache()


def search(cfg: Config, vocab_size: int, per_device_global: int | None, device: torch.device, precision: str,
           trial: Callable[[int], tuple[float, int]] | None = None, capacity: int | None = None,
           ) -> tuple[int, list[tuple[int, float]]]:
    """(best micro-batch, [(micro, tokens/s), ...] kept) on ``device``; ``trial(micro)`` -> (tokens/s, peak bytes)
    and ``capacity`` (bytes) default to real trials and the card's memory."""
    if trial is None:
        def trial(micro: int) -> tuple[float, int]:
            return trial_tokens_per_s(cfg, vocab_size, micro, device, precision)
    if capacity is None:
        capacity = torch.cuda.get_device_properties(device).total_memory
    tried: list[tuple[int, float]] = []
    best: tuple[int, float] | None = None
    misses = 0
    for micro in candidates(per_device_global):
        result = None
        try:
            result = trial(micro)
        except torch.OutOfMemoryError:
            pass  # memory is freed below, once the traceback (which holds the trial's tensors) is gone
        if result is None or result[1] > MEMORY_HEADROOM * capacity:
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            break
        tps = result[0]
        tried.append((micro, tps))
        if best is None or tps > best[1] * MIN_GAIN:
            best, misses = (micro, tps), 0
        else:
            misses += 1
            if misses >= 2:  # throughput saturated: larger micro-batches only cost memory
                break
    if best is None:
        raise UserError("training.batch_size", "auto: even a micro-batch of 1 runs out of GPU memory; use a smaller "
                                               "model or seq_len, or enable model.activation_checkpointing")
    return best[0], tried


def resolve_batch_size(cfg: Config, vocab_size: int, world: int, accelerator: str, precision: str,
                       run_root: Path | None, note: Callable[[str], None]) -> None:
    """Replace ``training.batch_size: auto`` in ``cfg`` by an int (and set the global batch when it was unset)."""
    t = cfg.training
    if t.batch_size != "auto":
        return
    saved = saved_batch(run_root) if run_root is not None else None
    if saved is not None:  # a resumed run keeps the geometry it started with
        t.batch_size, t.global_batch_size = saved
        return
    per_device = None
    if t.global_batch_size is not None:
        if t.global_batch_size % world:
            raise UserError("training.global_batch_size", f"{t.global_batch_size} is not a multiple of the "
                                                          f"{world} devices; use a multiple of {world}")
        per_device = t.global_batch_size // world
    if accelerator != "gpu":
        t.batch_size = cpu_default(per_device)
        note(f"batch_size auto: {t.batch_size} (the default off CUDA; the memory search runs on GPUs)")
        return
    if world > 1:
        raise UserError("training.batch_size", "auto searches on one GPU only; run it once with "
                                               "distributed.devices=1, then set the batch_size it reports")
    micro, tried = search(cfg, vocab_size, per_device, torch.device("cuda", torch.cuda.current_device()), precision)
    t.batch_size = micro
    summary = ", ".join(f"{b}: {tps:,.0f}" for b, tps in tried)
    if t.global_batch_size is None:
        note(f"batch_size auto: {micro} (tokens/s by micro-batch: {summary}); global batch {micro}, no accumulation "
             "(set training.global_batch_size to pin it)")
    else:
        note(f"batch_size auto: {micro} (tokens/s by micro-batch: {summary}); global batch {t.global_batch_size} "
             f"through {t.global_batch_size // micro} accumulation steps")
