"""CPU threads per process: too many threads for the free cores slow CPU training 5-30x."""

from __future__ import annotations

import os


def local_process_count(devices: int | str, accelerator: str) -> int:
    """Processes this launch will run on this node (what shares the CPU cores)."""
    if os.environ.get("LOCAL_WORLD_SIZE"):
        return max(1, int(os.environ["LOCAL_WORLD_SIZE"]))
    if os.environ.get("SLURM_NTASKS_PER_NODE"):
        return max(1, int(os.environ["SLURM_NTASKS_PER_NODE"].split("(")[0]))
    if isinstance(devices, int) and accelerator != "gpu":
        return max(1, devices)
    return 1


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def configure_threads(processes: int) -> int:
    """Set OMP_NUM_THREADS (and torch's pool) to cores / local processes unless the user set it."""
    import torch

    if "OMP_NUM_THREADS" in os.environ:
        n = max(1, int(os.environ["OMP_NUM_THREADS"]))
    else:
        n = max(1, cpu_cores() // max(1, processes))
        os.environ["OMP_NUM_THREADS"] = str(n)  # inherited by spawned ranks and data workers
    torch.set_num_threads(n)
    return n
