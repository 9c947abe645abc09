"""Pydantic JSON Schema (2020-12) -> Kubernetes structural OpenAPI v3 schema, the subset a CRD accepts.

A structural schema has a type on every node, no ``$ref``, no types inside ``anyOf``, ``nullable`` instead of a
``null`` branch, boolean ``exclusiveMinimum``, and no ``additionalProperties: false`` (unknown fields are pruned,
and refused with the field's path under strict field validation, kubectl's default). What a schema cannot say
(``int | "auto"``) becomes an int-or-string node with a CEL rule.
"""

from __future__ import annotations

import json
from typing import Any

DROP = {"title", "additionalProperties", "$defs", "discriminator"}


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"].split("/")[-1]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        node = {**defs[ref], **rest}
    return node


def _branches(node: dict[str, Any]) -> list[dict[str, Any]] | None:
    return node.get("anyOf") or node.get("oneOf")


def _int_or_string(branches: list[dict[str, Any]], desc: str | None) -> dict[str, Any]:
    """``int | Literal["auto", ...]`` (or ``int | str``): int-or-string, restricted by CEL when the strings are few."""
    out: dict[str, Any] = {"x-kubernetes-int-or-string": True}
    strings = [b for b in branches if b.get("type") == "string" or "const" in b or "enum" in b]
    allowed = [v for b in strings for v in ([b["const"]] if "const" in b else b.get("enum", []))]
    if allowed:
        names = " or ".join(json.dumps(v) for v in allowed)
        rule = " || ".join(f"self == {json.dumps(v)}" for v in allowed)
        minimum = next((b.get("minimum") for b in branches if b.get("type") == "integer"), None)
        int_rule = "type(self) == int" + (f" && self >= {minimum}" if minimum is not None else "")
        out["x-kubernetes-validations"] = [{"rule": f"({int_rule}) || {rule}",
                                            "message": f"must be an integer or {names}"}]
    if desc:
        out["description"] = desc
    return out


def convert(node: dict[str, Any], defs: dict[str, Any], keep_defaults: bool = True) -> dict[str, Any]:
    """One schema node, recursively; ``defs`` is the root's ``$defs``."""
    node = _resolve(node, defs)
    desc = node.get("description")
    branches = _branches(node)
    if branches:
        branches = [_resolve(b, defs) for b in branches]
        nullable = any(b.get("type") == "null" for b in branches)
        rest = [b for b in branches if b.get("type") != "null"]
        kinds = {b.get("type") or ("string" if isinstance(b.get("const", b.get("enum", [None])[0]), str) else "x")
                 for b in rest}
        if len(rest) == 1:
            merged = {**{k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}, **rest[0]}
            if desc:
                merged["description"] = desc
            out = convert(merged, defs, keep_defaults)
        elif kinds == {"integer", "string"}:
            out = _int_or_string(rest, desc)
        else:
            raise ValueError(f"cannot express {node} as a structural schema")
        if nullable:
            out["nullable"] = True
        if not keep_defaults:
            out.pop("default", None)
        elif "default" in node and node["default"] is not None:
            out["default"] = node["default"]
        return out
    out: dict[str, Any] = {}
    kind = node.get("type")
    if "const" in node:
        out["enum"] = [node["const"]]
        kind = kind or ("string" if isinstance(node["const"], str) else "integer")
    if "enum" in node:
        out["enum"] = list(node["enum"])
        kind = kind or ("string" if all(isinstance(v, str) for v in node["enum"]) else "integer")
    if kind is None:  # Any
        return {"x-kubernetes-preserve-unknown-fields": True, **({"description": desc} if desc else {})}
    out["type"] = kind
    if desc:
        out["description"] = desc
    for key in ("minimum", "maximum", "minLength", "maxLength", "pattern", "minItems", "maxItems", "format"):
        if key in node:
            out[key] = node[key]
    for key, base in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if key in node:
            out[base], out[key] = node[key], True
    if kind == "object":
        props = node.get("properties")
        extra = node.get("additionalProperties")
        if props:
            out["properties"] = {k: convert(v, defs, keep_defaults) for k, v in props.items()}
            if node.get("required"):
                out["required"] = list(node["required"])
        elif isinstance(extra, dict) and extra:
            out["additionalProperties"] = convert(extra, defs, keep_defaults)
        else:
            out["x-kubernetes-preserve-unknown-fields"] = True
    if kind == "array":
        out["items"] = convert(node.get("items", {}), defs, keep_defaults)
    if keep_defaults and "default" in node and node["default"] is not None and kind != "object":
        out["default"] = node["default"]
    return out


def structural(schema: dict[str, Any], keep_defaults: bool = True) -> dict[str, Any]:
    """Convert a whole pydantic ``model_json_schema()``."""
    return convert(schema, schema.get("$defs", {}), keep_defaults)
