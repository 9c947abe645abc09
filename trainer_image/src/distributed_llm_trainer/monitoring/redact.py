"""Keep API keys and tokens out of every output: logged hyper-parameters, config/environment dumps, reports.

Two nets: values under secret-looking keys are replaced, and any string containing the value of a secret-looking
environment variable (WANDB_API_KEY, HF_TOKEN, ...) or a well-known token shape is masked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

# Key names whose values are secrets. Deliberately narrow: "tokens_per_step", "eos_token", "cache_key" or
# "tokenizer" are ordinary settings and must stay readable.
_SECRET_KEY = re.compile(
    r"(api[_-]?key|secret|passw(or)?d|credential|private[_-]?key|(access|auth|hf|hub|bearer|api|wandb)[_-]?token)$"
    r"|^token$",
    re.IGNORECASE,
)
# Environment variables whose values must never be written anywhere.
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
# Token shapes worth masking even when they did not come from the environment.
_TOKEN_SHAPES = [
    re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),  # Hugging Face user access tokens
    re.compile(r"\b(local-)?[0-9a-f]{40}\b"),  # W&B API keys (40 hex; "local-" for self-hosted)
]
_MIN_SECRET_LEN = 8  # shorter env values ("1", "true") would mask innocent text


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(str(key)))


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of secret-looking environment variables, longest first (so overlapping ones mask fully)."""
    env = os.environ if environ is None else environ
    vals = {v for k, v in env.items() if _SECRET_ENV.search(k) and len(v) >= _MIN_SECRET_LEN}
    return sorted(vals, key=len, reverse=True)


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with every known secret value and token-shaped string replaced by ``***``."""
    for value in secret_values() if secrets is None else secrets:
        text = text.replace(value, MASK)
    for shape in _TOKEN_SHAPES:
        text = shape.sub(MASK, text)
    return text


def redact(obj: Any, secrets: list[str] | None = None) -> Any:
    """Deep copy of a config/env structure (dicts, lists, tuples, strings) with secrets masked."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(obj, Mapping):
        return {k: (MASK if is_secret_key(k) and obj[k] not in (None, "") else redact(v, secrets))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v, secrets) for v in obj)
    if isinstance(obj, str):
        return redact_text(obj, secrets)
    return obj
