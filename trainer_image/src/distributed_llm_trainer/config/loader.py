"""Load a YAML config, apply ``a.b.c=value`` overrides, validate, and report errors by key."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import UserError
from .schema import Config


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError("--config", f"file not found: {path}; pass an existing YAML file (see config/)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise UserError(str(path), f"not valid YAML{at}; fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(str(path), "top level must be a mapping of sections (run:, model:, training:, ...)")
    return data


def _suggest(key: str, options: list[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.5)
    return f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(sorted(options))}"


def _is_section(model: type[BaseModel], name: str) -> bool:
    ann = model.model_fields[name].annotation
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["training.max_steps=50", "model.dropout=0.1"]`` -> nested dict with YAML-typed values."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UserError(item, "overrides look like section.key=value (e.g. training.max_steps=50)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        parts = key.strip().split(".")
        if any(not p for p in parts):
            raise UserError(key, "empty part in dotted key; write section.key=value")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(key, "conflicting overrides for the same key")
        node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _check_keys(data: dict[str, Any], model: type[BaseModel], prefix: str = "") -> None:
    """Reject unknown keys with a did-you-mean suggestion before pydantic sees them."""
    fields = model.model_fields
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            raise UserError(dotted, f"unknown key; {_suggest(str(key), list(fields))}")
        if _is_section(model, key):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise UserError(dotted, f"must be a section (mapping), got {type(value).__name__} {value!r}")
            _check_keys(value, fields[key].annotation, f"{dotted}.")  # type: ignore[arg-type]


def _format_validation(err: ValidationError) -> UserError:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-after"))
    msg = first["msg"]
    if msg.startswith("Value error, "):
        # Model validators write "<field>: why" (or "<section.field>: why" at the top level).
        field, _, why = msg[len("Value error, ") :].partition(": ")
        if why and " " not in field:
            loc = field if ("." in field or not loc) else f"{loc}.{field}"
            return UserError(loc, why)
        msg = msg[len("Value error, ") :]
    got = first.get("input")
    if not isinstance(got, dict):
        msg = f"{msg}, got {got!r}; fix the value in the YAML file or the override"
    return UserError(loc or "config", msg)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read ``path`` (None: empty), apply overrides, validate; raise UserError naming the key."""
    data = _read_yaml(Path(path)) if path is not None else {}
    if overrides:
        data = _merge(data, parse_overrides(overrides))
    data = {k: ({} if v is None else v) for k, v in data.items()}
    _check_keys(data, Config)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise _format_validation(e) from None


def dump_config(cfg: Config) -> str:
    """Resolved config as YAML (round-trips through load_config)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
