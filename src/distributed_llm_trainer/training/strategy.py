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


def build_strategy(cfg: Config, accelerator: str, precision: str) -> Any:
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
            static_graph=d.ddp.static_graph,
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
