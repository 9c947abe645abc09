"""Window geometry of a packed token stream, and the check that each split can fill one sample (no torch)."""

from __future__ import annotations

from ..config.schema import DataConfig
from ..errors import UserError


def window_grid(n_tokens: int, seq_len: int, random_offset: bool) -> tuple[int, int]:
    """(number of windows, largest start shift) for a stream of ``n_tokens``.

    Windows start at ``shift + i * seq_len`` and span ``seq_len + 1`` tokens (each token is a target once).
    With ``random_offset`` one window is given up when needed so every shift in ``[0, seq_len)`` fits, and the
    count stays the same every epoch.
    """
    n = (n_tokens - 1) // seq_len
    if n <= 0:
        return 0, 0
    slack = (n_tokens - 1) - n * seq_len
    if not random_offset:
        return n, 0
    if n >= 2 and slack < seq_len - 1:
        n -= 1
        slack += seq_len
    return n, min(slack, seq_len - 1)


def check_windows(train_tokens: int, val_tokens: int, train_docs: int, cfg: DataConfig) -> None:
    """UserError when the splits cannot fill one sample (checked before a cache entry is published)."""
    need = cfg.seq_len + 1
    if not cfg.pack:
        if train_docs < 1:
            raise UserError("data.path", "the train split holds no documents; add data or lower data.val_fraction")
        return
    if train_tokens < need:
        raise UserError(
            "data.seq_len",
            f"the train split has {train_tokens} tokens, fewer than one window of seq_len + 1 = {need}; "
            "lower data.seq_len or add data",
        )
    if 0 < val_tokens < need:
        raise UserError(
            "data.val_fraction",
            f"the validation split has {val_tokens} tokens, fewer than one window of seq_len + 1 = {need}; "
            "raise data.val_fraction, lower data.seq_len, or set data.val_fraction=0",
        )
