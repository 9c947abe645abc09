"""Document preprocessing: built-ins (normalize, strip, min_chars, dedup) and the user hook.

Order per batch: unicode normalization -> strip -> user hook -> drop empty / shorter than ``min_chars``
-> exact-duplicate removal. Empty documents are always dropped (they would only add a lone EOS).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import sys
import unicodedata
from collections.abc import Callable
from typing import Any

from ..config.schema import DataConfig
from ..errors import UserError

Hook = Callable[[list[str]], list[str]]


def load_hook(spec: str) -> Hook:
    """Import ``module:function`` (the cwd is importable, like ``python -m``); UserError if that fails."""
    module_name, sep, func_name = spec.partition(":")
    if not sep or not module_name or not func_name:
        raise UserError("data.preprocess", f"'{spec}' is not 'module:function'; write e.g. my_hooks:clean")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - ImportError or an error while importing the user's module
        raise UserError(
            "data.preprocess",
            f"cannot import module '{module_name}' ({type(e).__name__}: {e}); check the name "
            "and that it is on PYTHONPATH or in the working directory",
        ) from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise UserError("data.preprocess", f"module '{module_name}' has no function '{func_name}'; check the name")
    return func


def hook_fingerprint(spec: str | None) -> str | None:
    """Hash of the hook's module source, so editing the hook invalidates the token cache."""
    if spec is None:
        return None
    func = load_hook(spec)
    module = sys.modules.get(getattr(func, "__module__", ""), None)
    try:
        source = inspect.getsource(module) if module is not None else inspect.getsource(func)
    except (OSError, TypeError):
        source = getattr(func, "__qualname__", spec)
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def preprocess_settings(cfg: DataConfig) -> dict[str, Any]:
    """Everything about preprocessing that changes the documents (part of the cache key)."""
    return {
        "normalize": cfg.normalize,
        "strip": cfg.strip,
        "min_chars": cfg.min_chars,
        "dedup": cfg.dedup,
        "preprocess": cfg.preprocess,
        "preprocess_source": hook_fingerprint(cfg.preprocess),
        "encoding_errors": cfg.encoding_errors,
        "max_documents": cfg.max_documents,
        "text_field": cfg.text_field,
    }


def _valid_unicode(text: str) -> str:
    """Replace lone surrogates (e.g. from JSON ``\\ud800`` escapes): the Rust tokenizer cannot take them."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


class Preprocessor:
    """Batched ``datasets.map`` function: ``{"text": [str, ...]} -> {"text": [str, ...]}`` (may shrink).

    Holds the dedup set, so it must run in one process over the documents in order (num_proc=1).
    """

    def __init__(self, cfg: DataConfig) -> None:
        self.normalize = cfg.normalize
        self.strip = cfg.strip
        self.min_chars = max(1, cfg.min_chars)
        self.dedup = cfg.dedup
        self.hook = load_hook(cfg.preprocess) if cfg.preprocess else None
        self.hook_name = cfg.preprocess
        self._seen: set[bytes] = set()

    def texts(self, texts: list[str | None]) -> list[str]:
        """Apply all steps to one batch of documents."""
        out = ["" if t is None else _valid_unicode(t) for t in texts]
        if self.normalize != "none":
            out = [unicodedata.normalize(self.normalize, t) for t in out]
        if self.strip:
            out = [t.strip() for t in out]
        if self.hook is not None:
            out = self.hook(out)
            if not isinstance(out, list) or not all(isinstance(t, str) for t in out):
                raise UserError(
                    "data.preprocess", f"'{self.hook_name}' must return a list of str, got {type(out).__name__}"
                )
        out = [t for t in out if len(t) >= self.min_chars]
        if self.dedup:
            kept = []
            for t in out:
                h = hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest()
                if h not in self._seen:
                    self._seen.add(h)
                    kept.append(t)
            out = kept
        return out

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[str]]:
        return {"text": self.texts(batch["text"])}
