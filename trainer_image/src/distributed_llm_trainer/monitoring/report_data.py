"""Read a run directory for the report: metrics.csv (tolerant of a run still going or crashed), summary.json,
config.yaml, environment.json and samples.jsonl. Only metrics.csv is needed; every other file is optional.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .environment import read_environment
from .files import METRICS_FILE, SAMPLES_FILE

Series = list[tuple[float, float]]  # (step, value), sorted by step


@dataclass
class RunData:
    run_dir: Path
    series: dict[str, Series] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    config_text: str | None = None
    environment: dict[str, Any] | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was missing or skipped while reading

    def get(self, key: str) -> Series:
        return self.series.get(key, [])

    @property
    def last_step(self) -> int | None:
        steps = [s for pts in self.series.values() for s, _ in pts]
        return int(max(steps)) if steps else None

    @property
    def tokens_per_step(self) -> float | None:
        """From the logged token counter (exact for this run), else from summary.json."""
        ratios = [t / s for s, t in self.get("train/tokens_seen") if s > 0]
        if ratios:
            return sorted(ratios)[len(ratios) // 2]
        s = self.summary or {}
        if s.get("steps") and s.get("tokens_seen"):
            return s["tokens_seen"] / s["steps"]
        return None

    def on_cpu(self) -> bool:
        """Did the run train on CPU (accelerator forced to cpu, or no GPU visible)?"""
        if self.config_text and "accelerator: cpu" in self.config_text:
            return True
        if self.environment:
            return self.environment.get("gpu_count", 0) == 0
        # no environment.json (older run): GPU memory metrics are logged on CUDA devices only
        return not any(k.startswith(("memory/", "gpu/")) for k in self.series)


def _number(cell: str | None) -> float | None:
    if cell is None or cell.strip() == "":
        return None
    try:
        return float(cell)
    except ValueError:
        return None


def read_metrics_csv(path: Path, notes: list[str] | None = None) -> dict[str, Series]:
    """key -> [(step, value)] from Lightning's CSV: one row per logging call, empty cells for other keys.

    A row logged again for the same step (a resumed run repeats the steps after its checkpoint) replaces the
    earlier one. Rows with a non-empty ``epoch`` cell come from Lightning's own logging (the module's
    ``self.log`` at validation), which records the step *before* the optimizer step counter advances; they are
    moved one step on so validation lines up with the training rows of the same step.
    """
    notes = notes if notes is not None else []
    values: dict[str, dict[float, float]] = {}
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        notes.append(f"metrics.csv unreadable: {e.strerror}")
        return {}
    if text and not text.endswith("\n"):
        # Rows are written whole, newline last: a missing final newline means the run is writing right now or
        # died mid-row, and the cut row's last cell may be a truncated number ("0.0" of "0.0001"). Drop it.
        text = text[: text.rfind("\n") + 1]
        notes.append("last row of metrics.csv incomplete (still being written, or the run stopped); skipped")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        notes.append("metrics.csv is empty")
        return {}
    header, body = rows[0], rows[1:]
    if "step" not in header:
        notes.append("metrics.csv has no step column")
        return {}
    i_step = header.index("step")
    i_epoch = header.index("epoch") if "epoch" in header else None
    skipped = 0
    for row in body:
        if len(row) != len(header):
            skipped += 1
            continue
        step = _number(row[i_step])
        if step is None:
            skipped += 1
            continue
        if i_epoch is not None and i_epoch < len(row) and row[i_epoch].strip():
            step += 1
        for key, cell in zip(header, row):
            if key in ("step", "epoch"):
                continue
            v = _number(cell)
            if v is not None:
                values.setdefault(key, {})[step] = v
    if skipped:
        notes.append(f"{skipped} malformed row(s) of metrics.csv skipped")
    return {k: sorted(d.items()) for k, d in values.items()}


def _read_json(path: Path, notes: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        notes.append(f"{path.name} unreadable (partially written?)")
        return None


def read_samples(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:  # a line cut short by a crash
            continue
        if isinstance(rec, dict) and "text" in rec:
            out.append(rec)
    return out


def read_run(run_dir: Path) -> RunData:
    run_dir = Path(run_dir)
    data = RunData(run_dir=run_dir)
    metrics = run_dir / METRICS_FILE
    if metrics.is_file():
        data.series = read_metrics_csv(metrics, data.notes)
    else:
        data.notes.append("no metrics.csv yet (no logging interval reached)")
    data.summary = _read_json(run_dir / "summary.json", data.notes)
    if (run_dir / "config.yaml").is_file():
        data.config_text = (run_dir / "config.yaml").read_text(encoding="utf-8", errors="replace")
    data.environment = read_environment(run_dir)
    data.samples = read_samples(run_dir / SAMPLES_FILE, data.notes)
    return data


def finite(values: list[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]
