"""distributed_llm_trainer: pre-train language models from a laptop CPU to many GPUs on PyTorch Lightning."""

__version__ = "0.1.0"
