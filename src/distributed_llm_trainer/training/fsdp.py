"""FSDP2 (``fully_shard``) per transformer block, full or hybrid sharding, bf16 policy, optional CPU offload."""

from __future__ import annotations

from typing import Any

import torch


def fsdp_mesh(module: Any) -> Any:
    """1-D mesh over all ranks (full sharding) or 2-D (replicate across nodes, shard within a node) for hybrid."""
    cfg = module.cfg.distributed
    mesh = module.device_mesh["data_parallel"]
    if cfg.fsdp.sharding != "hybrid":
        return mesh
    from torch.distributed.device_mesh import init_device_mesh

    world = mesh.size()
    nodes = cfg.num_nodes
    if world % nodes:
        raise RuntimeError(f"hybrid sharding needs world size {world} divisible by num_nodes {nodes}")
    return init_device_mesh(mesh.device_type, (nodes, world // nodes), mesh_dim_names=("replicate", "shard"))


def shard_model(module: Any) -> None:
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    cfg = module.cfg
    kwargs: dict[str, Any] = {"mesh": fsdp_mesh(module)}
    precision = str(module.trainer.precision)
    if cfg.distributed.fsdp.mixed_precision and precision.startswith("bf16"):
        # Compute in bf16, reduce gradients in fp32: the usual FSDP2 recipe for stable large runs.
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    if cfg.distributed.fsdp.cpu_offload:
        kwargs["offload_policy"] = CPUOffloadPolicy()
    model = module.model
    for block in model.blocks:
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)
