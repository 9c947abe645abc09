"""The CRD is generated from its two sources; the checked-in copies must match, and the schema must be structural."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, Field

from llmtj_operator.crd import build_crd
from llmtj_operator.structural import structural

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_crd_matches_the_generator():
    proc = subprocess.run([sys.executable, str(ROOT / "crds" / "generate.py"), "--check"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr


def test_config_schema_is_the_trainers():
    from distributed_llm_trainer.config.schema import Config

    crd = yaml.safe_load((ROOT / "crds" / "llmtrainingjobs.llmtj.dev.yaml").read_text())
    config = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["config"]
    assert set(config["properties"]) == set(Config.model_fields)
    for section, field in Config.model_fields.items():
        sub = field.annotation.model_fields  # every trainer key is in the CRD, documented
        assert set(config["properties"][section]["properties"]) == set(sub), section
        for key, info in sub.items():
            assert config["properties"][section]["properties"][key].get("description") == info.description


def _walk(node, path="$"):
    yield path, node
    for k, v in (node.get("properties") or {}).items():
        yield from _walk(v, f"{path}.{k}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def test_schema_is_structural():
    from distributed_llm_trainer.config.schema import Config

    schema = build_crd(Config.model_json_schema())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node and "anyOf" not in node or node.get("x-kubernetes-int-or-string"), path
        assert "type" in node or node.get("x-kubernetes-int-or-string") or \
            node.get("x-kubernetes-preserve-unknown-fields"), path
        assert node.get("additionalProperties") is not False, path


class Inner(BaseModel):
    n: int = Field(3, gt=0, lt=10, description="n")


class Outer(BaseModel):
    inner: Inner | None = None
    size: int | str = Field(1, description="q")
    mode: int | str = "auto"
    kinds: list[str] = Field(default_factory=list)
    free: dict = Field(default_factory=dict)


@pytest.mark.parametrize("path, expected", [
    (("inner",), {"nullable": True, "type": "object"}),
    (("inner", "n"), {"type": "integer", "minimum": 0, "exclusiveMinimum": True, "maximum": 10,
                      "exclusiveMaximum": True, "default": 3}),
    (("size",), {"x-kubernetes-int-or-string": True}),
    (("kinds",), {"type": "array", "items": {"type": "string"}}),
    (("free",), {"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
])
def test_structural_conversion(path, expected):
    node = structural(Outer.model_json_schema())
    for key in path:
        node = node["properties"][key]
    assert expected.items() <= node.items()
