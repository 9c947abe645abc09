"""torch.compile policy for the inner model."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from distributed_llm_trainer.config.schema import ModelConfig

log = logging.getLogger(__name__)
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")  # torch.compile modes that replay CUDA graphs


def should_compile(cfg: ModelConfig, device_type: str) -> bool:
    """``cfg.compile`` if set, else on for CUDA and off elsewhere (CPU compile rarely pays for its start-up)."""
    return cfg.compile if cfg.compile is not None else device_type == "cuda"


def maybe_compile(model: nn.Module, cfg: ModelConfig, device_type: str, **compile_kwargs: Any) -> Callable[..., Any]:
    """``torch.compile(model)`` when :func:`should_compile` says so, else ``model`` itself.

    Pass the inner nn.Module (the native or hf model), never a LightningModule: compiling the wrapper would trace
    logging and optimizer hooks. The compiled module shares parameters with ``model`` (state_dict keys of the
    wrapper carry an ``_orig_mod.`` prefix, so checkpoint ``model``, not the wrapper).
    """
    try:
        from lightning.pytorch import LightningModule
    except ImportError:  # pragma: no cover
        LightningModule = ()  # type: ignore[assignment]  # noqa: N806
    if isinstance(model, LightningModule):
        raise TypeError("maybe_compile expects the inner nn.Module, not a LightningModule")
    if not should_compile(cfg, device_type):
        return model
    log.info("compiling %s with torch.compile", type(model).__name__)
    # Static shapes: a short batch (the end of the val set, an epoch's last train batch) gets its own graph instead
    # of turning every later step into a dynamic-shape graph (measured on an H200: that cost two extra compiles).
    compile_kwargs.setdefault("dynamic", False)
    if cfg.compile_mode != "default":
        compile_kwargs.setdefault("mode", cfg.compile_mode)
    compiled = torch.compile(model, **compile_kwargs)
    if cfg.compile_mode not in CUDAGRAPH_MODES or device_type != "cuda":
        return compiled

    def replayed(*args: Any, **kwargs: Any) -> Any:
        # Each call starts a new CUDA-graph step, and its output is copied out of the graph's static memory:
        # callers keep losses across steps (logging sums, the bare loop's list) that a later replay would overwrite.
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(*args, **kwargs).clone()

    return replayed
