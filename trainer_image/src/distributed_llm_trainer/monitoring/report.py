"""The run report: one self-contained report.html (inline CSS, plots as base64 PNG; opens offline) and loss.png.

It needs only metrics.csv, so it also describes a run that is still going or has crashed; summary.json,
config.yaml, environment.json and samples.jsonl add their sections when present.
"""

from __future__ import annotations

import base64
import html
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

from .files import LOSS_FILE, REPORT_FILE
from .redact import redact, redact_text
from .report_data import RunData, finite, read_run
from .report_plots import Plot, all_plots, loss_plot

_MAX_EVALS_SHOWN = 8  # sample sections of older evaluations beyond this are summarised in one line

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1360px;
 padding:16px 24px;color:#1d232a;background:#fff;line-height:1.4}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde2e7;
 padding-bottom:4px}
.status{padding:8px 12px;border-radius:6px;margin:8px 0;font-size:14px}
.ok{background:#e8f5e9;border:1px solid #a5d6a7}.warn{background:#fff8e1;border:1px solid #ffd54f}
table{border-collapse:collapse;font-size:13px;margin:4px 0}td,th{border:1px solid #dde2e7;padding:4px 10px;
 text-align:left;vertical-align:top}th{background:#f4f6f8;font-weight:600}td.num{text-align:right;
 font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:14px}
figure{margin:0;border:1px solid #dde2e7;border-radius:6px;padding:6px;background:#fff}
figure img{width:100%;height:auto;display:block}figcaption{font-size:12px;color:#5f6b76;padding:2px 4px}
.absent{height:200px;display:flex;align-items:center;justify-content:center;color:#5f6b76;background:#f4f6f8;
 border-radius:4px;font-size:14px;text-align:center;padding:0 16px}
pre{background:#f4f6f8;border:1px solid #dde2e7;border-radius:6px;padding:10px;font-size:12px;overflow:auto;
 white-space:pre-wrap;word-break:break-word;max-height:520px}
.muted{color:#5f6b76;font-size:13px}
table.samples{width:100%}table.samples td:nth-child(-n+2){width:1%;white-space:nowrap}
pre.sample{margin:0;padding:4px 6px;max-height:160px;border:0}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return str(v)
    if isinstance(v, int) or abs(v) >= 1000:
        return f"{v:,.0f}"
    if v == 0 or abs(v) >= 1e-3:
        return f"{v:.4f}".rstrip("0").rstrip(".")
    return f"{v:.3e}"


def _table(rows: list[tuple[str, Any]], head: tuple[str, str] | None = None) -> str:
    out = ["<table>"]
    if head:
        out.append(f"<tr><th>{_e(head[0])}</th><th>{_e(head[1])}</th></tr>")
    for k, v in rows:
        num = isinstance(v, (int, float)) and not isinstance(v, bool)
        out.append(f"<tr><th>{_e(k)}</th><td{' class=num' if num else ''}>{_e(_fmt(v))}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _last(data: RunData, key: str) -> float | None:
    pts = data.get(key)
    return pts[-1][1] if pts else None


def key_numbers(data: RunData) -> list[tuple[str, Any]]:
    """Headline numbers: from summary.json when the run finished, else from the metrics logged so far."""
    s = data.summary or {}
    vals = finite([v for _, v in data.get("val/loss")])
    val0 = [v for st, v in data.get("val/loss") if st == 0]
    tps = finite([v for _, v in data.get("perf/tokens_per_s")])
    mfu = finite([v for _, v in data.get("perf/mfu")])
    tokens = _last(data, "train/tokens_seen")
    rows: list[tuple[str, Any]] = [
        ("steps", s.get("steps", data.last_step)),
        ("tokens seen", s.get("tokens_seen", int(tokens) if tokens is not None else None)),
        ("initial val loss", s.get("initial_val_loss", val0[0] if val0 else None)),
        ("best val loss", s.get("best_val_loss", min(vals) if vals else None)),
        ("final train loss", s.get("final_train_loss", _last(data, "train/loss"))),
        ("final val loss", s.get("final_val_loss", vals[-1] if vals else None)),
        ("tokens/s", s.get("tokens_per_s") or (statistics.median(tps[-5:]) if tps else None)),
        ("MFU (median of last 5 logs)", f"{100 * statistics.median(mfu[-5:]):.1f} %" if mfu else
         ("n/a on CPU" if data.on_cpu() else "-")),
    ]
    for key, label in [("num_parameters", "parameters"), ("flops_per_token", "training FLOPs/token"),
                       ("wall_time_s", "wall time (s)"), ("train_time_s", "train time (s)"),
                       ("world_size", "devices"),
                       ("global_batch_size", "global batch (samples)"), ("precision", "precision"),
                       ("stop_reason", "stop reason"), ("export_parity_max_abs_diff", "HF export parity")]:
        if key in s:
            rows.append((label, s[key]))
    if s.get("peak_memory_bytes"):
        rows.append(("peak memory", f"{s['peak_memory_bytes'] / 2**20:,.0f} MiB"))
    return rows


def _plot_html(p: Plot) -> str:
    if p.png is None:
        return f'<figure><div class="absent">{_e(p.title)}: {_e(p.note)}</div><figcaption>{_e(p.title)}' \
               "</figcaption></figure>"
    b64 = base64.b64encode(p.png).decode("ascii")
    return f'<figure><img alt="{_e(p.title)}" src="data:image/png;base64,{b64}"><figcaption>{_e(p.title)}' \
           "</figcaption></figure>"


def _samples_html(data: RunData) -> str:
    parts = []
    final = (data.summary or {}).get("samples") or {}
    if final:
        parts.append("<p>end of run</p>" + _sample_table([("end", p, t) for p, t in final.items()]))
    steps = list(dict.fromkeys(r.get("step") for r in data.samples))
    shown = steps[-_MAX_EVALS_SHOWN:][::-1]  # newest evaluation first
    rows = [(_fmt(step), str(r.get("prompt", "")), str(r.get("text", "")))
            for step in shown for r in data.samples if r.get("step") == step]
    if rows:
        parts.append("<p>at evaluations</p>" + _sample_table(rows))
    if len(steps) > len(shown):
        parts.append(f'<p class="muted">{len(steps) - len(shown)} earlier evaluation(s) in samples.jsonl.</p>')
    return "".join(parts) or '<p class="muted">no samples (logging.sample_tokens is 0, or no evaluation yet)</p>'


def _sample_table(rows: list[tuple[str, str, str]]) -> str:
    body = "".join(f"<tr><td class=num>{_e(s)}</td><td><code>{_e(repr(p))}</code></td><td><pre class=sample>"
                   f"{_e(t)}</pre></td></tr>" for s, p, t in rows)
    return f"<table class=samples><tr><th>step</th><th>prompt</th><th>text</th></tr>{body}</table>"


def _status(data: RunData) -> str:
    if data.summary is not None:
        reason = data.summary.get("stop_reason")
        return f'<div class="status ok">finished{": " + _e(reason) if reason else ""}</div>'
    last = data.last_step
    where = f" (last logged step {last:,})" if last is not None else ""
    return ('<div class="status warn">in progress or stopped early: no summary.json; built from metrics.csv'
            f"{_e(where)}</div>")


def render_html(data: RunData, plots: list[Plot]) -> str:
    name = data.run_dir.resolve().name
    env = redact(data.environment) if data.environment else None
    stats = (data.summary or {}).get("data")
    sections = [
        f"<h1>run report: {_e(name)}</h1>", _status(data),
        f'<p class="muted">{_e(data.run_dir.resolve())} &middot; generated {_e(time.strftime("%Y-%m-%d %H:%M:%S"))}'
        "</p>",
        "<h2>summary</h2>", _table(key_numbers(data)),
    ]
    if data.notes:
        sections.append("<ul class=muted>" + "".join(f"<li>{_e(n)}</li>" for n in data.notes) + "</ul>")
    sections += ["<h2>metrics</h2>", '<div class="grid">', *(_plot_html(p) for p in plots), "</div>"]
    sections += ["<h2>samples</h2>", _samples_html(data)]
    sections.append("<h2>data</h2>")
    if isinstance(stats, dict) and stats:
        sections.append(_table([(str(k), v) for k, v in redact(stats).items()]))
    else:
        sections.append('<p class="muted">no data statistics (summary.json not written yet)</p>')
    sections.append("<h2>config</h2>")
    sections.append(f"<pre>{_e(redact_text(data.config_text))}</pre>" if data.config_text
                    else '<p class="muted">no config.yaml</p>')
    sections.append("<h2>environment</h2>")
    if env:
        rows = [(k, (", ".join(map(str, v)) or "none") if isinstance(v, list) else v) for k, v in env.items()]
        if "ram_bytes" in env:
            rows.append(("ram", f"{env['ram_bytes'] / 2**30:.1f} GiB"))
        sections.append(_table(rows))
    else:
        sections.append('<p class="muted">no environment.json (recorded at the start of a run)</p>')
    body = "\n".join(sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(name)} - run report</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f"<body>\n{body}\n</body></html>\n")


def _atomic_write(path: Path, data: bytes) -> None:
    # Readers (a browser refreshing a live run's report) never see half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_report(run_dir: Path) -> Path:
    """Write report.html and loss.png into ``run_dir`` from whatever the run has written so far."""
    run_dir = Path(run_dir)
    data = read_run(run_dir)
    plots = all_plots(data)
    loss = loss_plot(data, size=(8.0, 4.5))
    if loss is not None:
        _atomic_write(run_dir / LOSS_FILE, loss)
    path = run_dir / REPORT_FILE
    _atomic_write(path, render_html(data, plots).encode("utf-8"))
    return path
