"""Lightning strategy from ``distributed.*``: auto/single device, DDP, FSDP2 (ModelParallelStrategy), DeepSpeed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ..config.schema import Config
from ..errors import UserError


def world_size(cfg: Config) -> int:
    """Devices x nodes for this launch (torchrun/SLURM environment wins)."""
    import os

    import torch

    if os.environ.get("WORLD_SIZE"):
        return int(os.environ["WORLD_SIZE"])
    devices = cfg.distributed.devices
    if devices == "auto":
        devices = torch.cuda.device_count() if cfg.distributed.accelerator != "cpu" and torch.cuda.is_available() else 1
    return int(devices) * cfg.distributed.num_nodes


def check_world(cfg: Config) -> None:
    """The launched world must fit the config (before any collective, so the user gets one clear line).

    Lightning itself computes ``devices x num_nodes``, which hybrid sharding always divides; a launcher
    (torchrun, SLURM) can start another number of processes, e.g. nodes with different ``--nproc-per-node``.
    """
    import os

    d = cfg.distributed
    world = world_size(cfg)
    if d.strategy == "fsdp" and d.fsdp.sharding == "hybrid" and world % d.num_nodes:
        raise UserError("distributed.fsdp.sharding", f"hybrid shards within each node and replicates across nodes, "
                        f"so the world size {world} must be divisible by distributed.num_nodes {d.num_nodes}; start "
                        "the same number of processes on every node, fix num_nodes, or use sharding=full")
    launched = os.environ.get("WORLD_SIZE")
    if launched and d.devices != "auto" and int(launched) != d.devices * d.num_nodes:
        raise UserError("distributed.devices", f"the launcher started {launched} processes but devices {d.devices} "
                        f"x num_nodes {d.num_nodes} = {d.devices * d.num_nodes}; set distributed.devices to the "
                        "processes per node (torchrun --nproc-per-node) and distributed.num_nodes to --nnodes")


def build_strategy(cfg: Config, accelerator: str, precision: str, accumulation: int = 1) -> Any:
    check_world(cfg)
    d = cfg.distributed
    timeout = timedelta(seconds=d.timeout_s)
    multi = world_size(cfg) > 1
    if d.strategy == "auto":
        if not multi:
            return "auto"
        kind = "ddp"
    else:
        kind = d.strategy
    if kind == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(
            process_group_backend="nccl" if accelerator == "gpu" else "gloo",
            timeout=timeout,
            gradient_as_bucket_view=d.ddp.gradient_as_bucket_view,
            # torch DDP's static graph breaks under no_sync (Lightning's accumulation): the first backward
            # fails with "expect_autograd_hooks_ INTERNAL ASSERT FAILED" (pytorch/pytorch#143580).
            static_graph=d.ddp.static_graph and accumulation == 1,
            find_unused_parameters=d.ddp.find_unused_parameters,
        )
    if kind == "fsdp":
        from lightning.pytorch.strategies import ModelParallelStrategy

        # FSDP2 (fully_shard) is applied per block in LMModule.configure_model; the mesh is (data, tensor=1).
        return ModelParallelStrategy(
            data_parallel_size=world_size(cfg), tensor_parallel_size=1, save_distributed_checkpoint=True,
            process_group_backend="nccl" if accelerator == "gpu" else "gloo", timeout=timeout,
        )
    if kind == "deepspeed":
        if accelerator != "gpu":
            raise UserError("distributed.strategy", "deepspeed runs only on CUDA GPUs here; use ddp or fsdp on CPU")
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            raise UserError("distributed.strategy", "deepspeed is not installed; pip install '.[deepspeed]'") from None
        from lightning.pytorch.strategies import DeepSpeedStrategy

        return DeepSpeedStrategy(stage=d.deepspeed.stage, offload_optimizer=d.deepspeed.offload_optimizer,
                                 timeout=timeout)
    raise UserError("distributed.strategy", f"unknown strategy {kind!r}; use auto, ddp, fsdp or deepspeed")
