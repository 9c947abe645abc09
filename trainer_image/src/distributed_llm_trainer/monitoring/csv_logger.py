"""CSV logger that keeps ``metrics.csv`` across resumes and writes it at every logging call.

Lightning's CSVLogger deletes an existing metrics.csv when its folder is not empty (a run dir always holds
config.yaml), rewrites the file with only the keys it has seen itself, and flushes every N steps only, so a
crashed run would have no metrics. Here a resumed run appends to its history, and a row is on disk as soon as it
is logged (one appended line per logging interval: cheap).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only

from ..utils.fs import atomic_write_text
from .redact import redact


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        # keep earlier rows, and continue with their header so that a rewrite for a new key keeps old columns
        if os.path.isfile(self.metrics_file_path):
            try:
                with open(self.metrics_file_path, newline="") as f:
                    self.metrics_keys = sorted(set(next(csv.reader(f), [])))
            except OSError:
                pass

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        with open(self.metrics_file_path, newline="") as f:
            # a crash can leave a short last row (missing cells are fine) or junk cells (key None: dropped)
            rows = [{k: v for k, v in r.items() if k is not None} for r in csv.DictReader(f)]
        with open(self.metrics_file_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


class ResumableCSVLogger(CSVLogger):
    """metrics.csv and hparams.yaml directly in ``save_dir`` (the run dir); hyper-parameters with secrets masked."""

    def __init__(self, save_dir: str | Path, name: str = "", version: str = "") -> None:
        super().__init__(save_dir=str(save_dir), name=name, version=version)

    @property
    def experiment(self) -> ExperimentWriter:  # type: ignore[override]
        if self._experiment is None:
            Path(self.log_dir).mkdir(parents=True, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def log_hyperparams(self, params: Any = None) -> None:
        super().log_hyperparams(redact(as_dict(params)))

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        super().log_metrics(metrics, step)
        self.save()


def as_dict(params: Any) -> dict[str, Any]:
    """Hyper-parameters (dict, Namespace or AttributeDict) as a plain dict."""
    from lightning.fabric.utilities.logger import _convert_params

    return dict(_convert_params(params) or {})


def truncate_after(metrics_csv: Path, step: int) -> None:
    """Drop rows logged after ``step`` (a resumed run will log those steps again)."""
    if not metrics_csv.is_file():
        return
    text = metrics_csv.read_text(encoding="utf-8", errors="replace")
    if text and not text.endswith("\n"):  # a row cut by the crash: its cells may be truncated numbers
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = reader.fieldnames or []
    rows = []
    for r in reader:
        try:
            if r.get("step") and float(r["step"]) > step:
                continue
        except ValueError:
            continue
        rows.append({k: v for k, v in r.items() if k is not None})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(metrics_csv, buf.getvalue())
