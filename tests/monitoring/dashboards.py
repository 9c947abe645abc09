"""The chart's Grafana dashboards as data: their panels' queries and variables, with Grafana's variables filled in
the way Grafana would for one namespace and job, ready for a Prometheus HTTP API."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "helm" / "llm-training-operator" / "dashboards"
# Series only a GPU gives (NVML through our endpoint, or NVIDIA's DCGM exporter): empty on a machine without one
GPU_ONLY = re.compile(r"\b(llmtj_gpu_\w+|DCGM_\w+)")


def boards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in board["panels"]:
        yield p
        yield from p.get("panels", [])  # a collapsed row keeps its panels inside


def queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL with Grafana's template variables left in)."""
    for p in panels(board):
        for t in p.get("targets", []):
            yield p["title"], t["expr"]


def grafana_escape(value: str) -> str:
    """A single value in a ``=~`` matcher as Grafana writes it: regex specials escaped for PromQL's string syntax."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", value)


def fill(expr: str, values: dict[str, str], rate_interval: str = "15s", range_: str = "10m") -> str:
    """Grafana's substitution: $var and ${var} from ``values`` (".*" is the All value, put in as is; others are
    escaped), the built-in intervals from the arguments."""
    out = expr.replace("$__rate_interval", rate_interval).replace("$__range", range_)

    def value(m: re.Match) -> str:
        v = values.get(m.group(1))
        return m.group(0) if v is None else v if v == ".*" else grafana_escape(v)

    return re.sub(r"\$\{?(\w+)\}?", value, out)


LABEL_VALUES = re.compile(r"^label_values\((?:(.+),\s*)?(\w+)\)$")


def variable_queries(board: dict[str, Any]) -> Iterator[tuple[str, str | None, str]]:
    """(variable, series selector or None, label) for each ``label_values(...)`` query variable."""
    for v in board["templating"]["list"]:
        if v["type"] == "query":
            query = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = LABEL_VALUES.match(query)
            assert m, f"{v['name']}: only label_values(...) variables are used: {query}"
            yield v["name"], m.group(1), m.group(2)
