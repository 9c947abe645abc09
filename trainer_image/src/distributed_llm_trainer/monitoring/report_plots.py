"""The report's plots as PNG bytes, drawn with matplotlib's Agg canvas (no display, no pyplot global state)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from .report_data import RunData, Series

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"]


@dataclass
class Plot:
    title: str
    png: bytes | None  # None: not drawn, see note
    note: str = ""


@dataclass
class Line:
    label: str
    points: Series
    marker: str = ""
    scale: float = 1.0


def render(title: str, lines: list[Line], xlabel: str, ylabel: str, x_scale: float = 1.0, logy: bool = False,
           size: tuple[float, float] = (6.4, 3.6)) -> bytes | None:
    """A line chart of ``lines`` (x = step * x_scale) as PNG; None when no line has a point."""
    lines = [ln for ln in lines if ln.points]
    if not lines:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter, FuncFormatter, NullFormatter

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for color, ln in zip(COLORS, lines):
        xs = [s * x_scale for s, _ in ln.points]
        ys = [v * ln.scale for _, v in ln.points]
        single = len(xs) == 1  # one point draws no line: show it as a marker
        ax.plot(xs, ys, label=ln.label, color=color, marker=ln.marker or ("o" if single else None),
                markersize=4, linewidth=1.6)
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    if max(abs(v * ln.scale) for ln in lines for _, v in ln.points) >= 1e4:  # 12k, 1.5M: short tick labels
        ax.yaxis.set_major_formatter(EngFormatter(sep=""))
    elif not logy:  # 0.00060 would push the axis label off the figure: 6 with a "1e-4" multiplier on top
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 4))
    if logy and all(v * ln.scale > 0 for ln in lines for _, v in ln.points):
        ax.set_yscale("log")
        # "0.6", not "6 x 10^-1", which pushes the axis label out; minor ticks labelled within one decade only
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ys = [v * ln.scale for ln in lines for _, v in ln.points]
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain if max(ys) / min(ys) < 10 else NullFormatter())
    ax.grid(True, alpha=0.3)
    if len(lines) > 1:
        ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.13, right=0.97, top=0.9, bottom=0.15)  # fixed margins: tight_layout is slow
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white")
    return buf.getvalue()


def loss_plot(data: RunData, size: tuple[float, float] = (6.4, 3.6)) -> bytes | None:
    tps = data.tokens_per_step
    lines = [Line("train", data.get("train/loss")), Line("val", data.get("val/loss"), marker="o")]
    return render("loss", lines, "tokens" if tps else "step", "cross-entropy (nats/token)", x_scale=tps or 1.0,
                  size=size)


def all_plots(data: RunData) -> list[Plot]:
    """Every plot of the report, in order; an absent metric gives a Plot with a note instead of an image."""
    GiB = 1 / 2**30
    plots = [Plot("loss vs tokens", loss_plot(data), "no loss logged yet")]
    plots.append(Plot("learning rate", render("learning rate", [Line("lr", data.get("train/lr"))], "step", "lr"),
                      "no learning rate logged yet"))
    throughput = [Line("all devices", data.get("perf/tokens_per_s"))]
    if data.get("perf/tokens_per_s_per_device") != data.get("perf/tokens_per_s"):  # one device: same line
        throughput.append(Line("per device", data.get("perf/tokens_per_s_per_device")))
    plots.append(Plot("throughput", render("throughput", throughput, "step", "tokens/s"), "no throughput logged yet"))
    if data.get("perf/mfu"):
        plots.append(Plot("MFU", render("model FLOPs utilization", [Line("MFU", data.get("perf/mfu"), scale=100)],
                                        "step", "% of peak bf16 FLOP/s")))
    elif data.on_cpu():
        plots.append(Plot("MFU", None, "n/a on CPU (MFU needs a GPU's peak FLOP/s)"))
    else:
        plots.append(Plot("MFU", None, "not logged: peak FLOP/s of this device unknown; set logging.peak_flops"))
    memory = [
        Line("allocated", data.get("memory/allocated_bytes"), scale=GiB),
        Line("reserved", data.get("memory/reserved_bytes"), scale=GiB),
        Line("peak allocated", data.get("memory/peak_allocated_bytes"), scale=GiB),
        Line("process RSS (host)", data.get("system/process_rss_bytes"), scale=GiB),
    ]
    plots.append(Plot("memory", render("memory", memory, "step", "GiB"), "no memory metrics logged"))
    plots.append(Plot("data wait", render("data-wait share of step time", [
        Line("data wait", data.get("perf/data_wait_share"), scale=100)], "step", "%"), "no data-wait share logged"))
    plots.append(Plot("gradient norm", render("gradient norm (before clipping)", [
        Line("grad norm", data.get("train/grad_norm"))], "step", "L2 norm", logy=True), "no gradient norm logged"))
    util = [Line("CPU (system)", data.get("system/cpu_percent")),
            Line("GPU", data.get("gpu/utilization_percent"))]
    plots.append(Plot("utilization", render("utilization", util, "step", "%"), "system metrics off"))
    return plots
