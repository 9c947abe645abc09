"""Data: sources, tokenizers, preprocessing, token cache, sampling and loaders.

Public API (imported lazily so ``prepare_data`` does not pull in Lightning):
``prepare_data``, ``PreparedData``, ``TokenDataModule``, ``tokenizer_fingerprint``, ``load_tokenizer``.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "prepare_data": "pipeline",
    "PreparedData": "pipeline",
    "TokenDataModule": "datamodule",
    "tokenizer_fingerprint": "tokenizer",
    "load_tokenizer": "tokenizer",
    "ShardedSampler": "sampler",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
