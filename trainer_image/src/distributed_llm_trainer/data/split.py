"""Train/validation split: whole documents chosen by a seeded permutation, or the tail of the token stream."""

from __future__ import annotations

import numpy as np

from ..config.schema import DataConfig
from ..errors import UserError


def _n_val(n_docs: int, val_fraction: float) -> int:
    return int(round(n_docs * val_fraction))


def choose_split(n_docs: int, cfg: DataConfig) -> str:
    """``none`` (val_fraction 0), ``documents`` or ``tail``; ``auto`` picks tail when docs are too few.

    ``auto`` holds out whole documents when ``round(n_docs * val_fraction)`` is at least 1 and leaves at
    least one training document; otherwise (e.g. one big file) the last ``val_fraction`` of the tokens.
    """
    if cfg.val_fraction == 0:
        return "none"
    n_val = _n_val(n_docs, cfg.val_fraction)
    if cfg.split == "tail":
        return "tail"
    if cfg.split == "documents":
        if n_docs < 2:
            raise UserError(
                "data.split", f"'documents' needs at least 2 documents, the source has {n_docs}; use split: tail"
            )
        return "documents"
    return "documents" if 1 <= n_val < n_docs else "tail"


def val_document_mask(n_docs: int, val_fraction: float, seed: int) -> np.ndarray:
    """Bool (n_docs,): True for the validation documents; same seed and count -> same choice."""
    n_val = min(max(1, _n_val(n_docs, val_fraction)), n_docs - 1)
    mask = np.zeros(n_docs, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n_docs)[:n_val]] = True
    return mask


def tail_cut(n_tokens: int, val_fraction: float) -> int:
    """Index of the first validation token for the tail split (nanoGPT: ``int(n * 0.9)``)."""
    return int(n_tokens * (1.0 - val_fraction))
