"""Hardware facts for metrics: peak FLOP/s of known GPUs (for MFU), device memory, peak memory of a run."""

from __future__ import annotations

import resource
import sys

import torch

# Dense bf16 tensor-core peak FLOP/s (no sparsity), by substring of torch.cuda.get_device_name().
GPU_PEAK_BF16_FLOPS: dict[str, float] = {
    "H200": 989e12,
    "H100 NVL": 835e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,  # SXM
    "GH200": 989e12,
    "B200": 2250e12,
    "A100": 312e12,
    "A10G": 70e12,
    "A10": 125e12,
    "L40S": 362e12,
    "L4": 121e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
    "V100": 125e12,  # fp16
    "T4": 65e12,  # fp16
}


def peak_flops_per_device(device: torch.device) -> float | None:
    """Known bf16 peak of this GPU; None on CPU or an unknown GPU (MFU is then reported as null)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, flops in GPU_PEAK_BF16_FLOPS.items():
        if key in name:
            return flops
    return None


def device_memory(device: torch.device) -> dict[str, float | None]:
    """GPU memory allocated/reserved/peak in bytes (None on CPU)."""
    if device.type != "cuda":
        return {}
    return {
        "memory/allocated_bytes": float(torch.cuda.memory_allocated(device)),
        "memory/reserved_bytes": float(torch.cuda.memory_reserved(device)),
        "memory/peak_allocated_bytes": float(torch.cuda.max_memory_allocated(device)),
    }


def peak_memory_bytes(device: torch.device) -> int:
    """Peak GPU memory allocated on CUDA; else the process's peak resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB
