"""Checks on the trainer config that depend on the job's shape, so only the operator can make them, up front.

An elastic job may run at any world size in [minReplicas, maxReplicas] x nprocPerNode. The trainer keeps the global
batch fixed across them (accumulation = global / (micro-batch x world)), so every one of those world sizes must
divide it: the job is refused before any pod starts rather than failing at the first resize that breaks it.
"""

from __future__ import annotations

from typing import Any

from .api import JobSpec


def batch_problem(spec: JobSpec, config: dict[str, Any]) -> str | None:
    """A message naming the field and the fix, or None when every reachable world size keeps the global batch."""
    training = config.get("training") if isinstance(config, dict) else None
    if not isinstance(training, dict):
        return None
    global_batch, micro = training.get("global_batch_size"), training.get("batch_size", 8)
    if not isinstance(global_batch, int) or not isinstance(micro, int) or micro < 1:
        return None  # unset, or batch_size auto: the trainer decides per world size
    procs = spec.procs_per_pod
    bad = [n for n in range(spec.min_replicas, spec.max_replicas + 1) if global_batch % (micro * n * procs)]
    if not bad:
        return None
    sizes = ", ".join(f"{n} pods x {procs} = {n * procs}" for n in bad)
    return (f"spec.config.training.global_batch_size: {global_batch} is not a multiple of batch_size {micro} x the "
            f"world size for {sizes} (the job may run at any size from elastic.minReplicas {spec.min_replicas} to "
            f"maxReplicas {spec.max_replicas}); choose a global batch divisible by every one, or narrow the bounds")
