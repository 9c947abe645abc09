"""Models: native GPT-2/Llama family, transformers backend, presets, HF interop, FLOPs accounting."""

from distributed_llm_trainer.model.builder import build_model
from distributed_llm_trainer.model.compile import maybe_compile
from distributed_llm_trainer.model.registry import PRESETS, ModelArgs, resolve_model_args

__all__ = ["PRESETS", "ModelArgs", "build_model", "maybe_compile", "resolve_model_args"]
