"""Speed switches from ``training.*``: TF32 matmuls and FP8 (torchao float8) training.

Both are checked before the run directory is written (``check_speed_features``), applied once per process
(``apply_tf32``) or to the inner model before FSDP and torch.compile (``apply_fp8``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config.schema import Config, TrainingConfig
from ..errors import UserError

FP8_MIN_CAPABILITY = (8, 9)  # Ada/Hopper and newer have FP8 tensor cores
FP8_DIM_MULTIPLE = 16  # float8 matmuls need both dimensions divisible by 16


def apply_tf32(t: TrainingConfig) -> None:
    """TF32 tensor-core matmuls/convolutions on CUDA when ``training.tf32`` (full fp32 otherwise)."""
    if not torch.cuda.is_available():
        return
    torch.set_float32_matmul_precision("high" if t.tf32 else "highest")  # "high" = matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = t.tf32


def check_fp8(cfg: Config) -> None:
    """``training.fp8`` needs torchao and a CUDA GPU with compute capability >= 8.9 (a clear error otherwise)."""
    if not cfg.training.fp8:
        return
    if cfg.distributed.accelerator == "cpu" or not torch.cuda.is_available():
        raise UserError("training.fp8", "FP8 training needs a CUDA GPU with compute capability >= 8.9 (Hopper, "
                                        "Ada) and none is visible; set training.fp8=false")
    cap = torch.cuda.get_device_capability()
    if cap < FP8_MIN_CAPABILITY:
        raise UserError("training.fp8", f"{torch.cuda.get_device_name()} has compute capability {cap[0]}.{cap[1]}; "
                                        "FP8 needs >= 8.9 (Hopper, Ada); set training.fp8=false")
    try:
        import torchao.float8  # noqa: F401
    except ImportError:
        raise UserError("training.fp8", "torchao is not installed; pip install '.[fp8]' (torchao) or set "
                                        "training.fp8=false") from None


def check_attention_backend(cfg: Config) -> None:
    """A forced ``model.attention_backend`` must have a kernel on this device and precision (else SDPA fails late).

    CPU has flash (any float dtype) and math; efficient and cudnn are CUDA-only; on CUDA, flash and cudnn take
    only bf16/fp16 inputs (a bf16/16 precision setting).
    """
    backend = cfg.model.attention_backend
    if backend in ("auto", "math"):
        return
    on_gpu = cfg.distributed.accelerator != "cpu" and torch.cuda.is_available()
    if backend in ("cudnn", "efficient") and not on_gpu:
        raise UserError("model.attention_backend", f"{backend} is a CUDA kernel and this run has no GPU; "
                                                   "use auto, flash or math on a CPU")
    if backend in ("flash", "cudnn") and on_gpu and not cfg.training.precision.startswith(("bf16", "16")):
        raise UserError("model.attention_backend", f"{backend} on CUDA needs bf16/fp16 inputs but training.precision "
                                                   f"is {cfg.training.precision}; set bf16-mixed or use efficient")


def check_speed_features(cfg: Config) -> None:
    check_fp8(cfg)
    check_attention_backend(cfg)


def fp8_filter(module: nn.Module, fqn: str) -> bool:
    """Convert Linear layers whose in/out features are multiples of 16, never the output head."""
    if not isinstance(module, nn.Linear) or fqn.split(".")[-1] == "lm_head":
        return False
    return module.in_features % FP8_DIM_MULTIPLE == 0 and module.out_features % FP8_DIM_MULTIPLE == 0


def apply_fp8(model: nn.Module, t: TrainingConfig) -> nn.Module:
    """Swap the eligible Linear layers of the inner model for torchao Float8Linear (in place) when ``fp8``."""
    if not t.fp8:
        return model
    from torchao.float8 import convert_to_float8_training

    convert_to_float8_training(model, module_filter_fn=fp8_filter)
    return model


def fp8_linear_count(model: nn.Module) -> int:
    """How many layers run in FP8 (for the console and tests)."""
    return sum(1 for m in model.modules() if type(m).__name__ == "Float8Linear")


def describe(cfg: Config, model: Any = None) -> dict[str, Any]:
    """The speed settings in force, for benchmark output."""
    from ..model.compile import should_compile
    from .optim import fused_available

    device = "cuda" if cfg.distributed.accelerator != "cpu" and torch.cuda.is_available() else "cpu"
    t = cfg.training
    out: dict[str, Any] = {
        "compile": should_compile(cfg.model, device),
        "fused_adamw": bool(t.fused_adamw if t.fused_adamw is not None else fused_available(device)),
        "tf32": bool(t.tf32 and device == "cuda"),
        "fp8": t.fp8,
        "attention_backend": cfg.model.attention_backend,
        "compile_mode": cfg.model.compile_mode,
    }
    if model is not None and t.fp8:
        out["fp8_linears"] = fp8_linear_count(model)
    return out
