"""Console output on rank 0: a run header, a live rich progress line, an end-of-run table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L


class Console:
    """Everything the run prints; ``enabled=False`` (ranks other than global 0) makes it silent."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        from rich.console import Console as RichConsole

        self.rich = RichConsole(stderr=False, highlight=False)

    def print(self, *args: Any, **kwargs: Any) -> None:
        if self.enabled:
            kwargs.setdefault("soft_wrap", True)  # long lines wrap in the terminal, not at 80 columns in logs
            self.rich.print(*args, **kwargs)

    def note(self, text: str) -> None:
        """A plain line (no rich markup), e.g. the ``wandb sync`` hint or the report path."""
        self.print(text, markup=False)

    def callbacks(self, cfg: Any, budget: Any) -> list[L.Callback]:
        if not (self.enabled and cfg.logging.progress_bar):
            return []
        from .progress import LiveProgress

        return [LiveProgress(self.rich, budget.max_steps, cfg.logging.interval)]

    def header(self, cfg: Any, run_dir: Path, budget: Any, module: Any, data: Any, resumed: Path | None) -> None:
        if not self.enabled:
            return
        n = module.model.num_parameters()
        self.print(f"[bold]run[/bold] {run_dir}" + (f"  (resuming {resumed.name})" if resumed else ""))
        self.print(
            f"model {cfg.model.name} ({n / 1e6:.2f}M params), vocab {len(data.tokenizer)}, "
            f"data {data.stats.get('train_tokens', 0):,} train / {data.stats.get('val_tokens', 0):,} val tokens"
        )
        self.print(
            f"batch {budget.micro_batch} x {budget.world_size} devices x {budget.accumulation} accumulation = "
            f"{budget.global_batch} x {budget.seq_len} tokens; {budget.max_steps} steps ({budget.stop_reason})"
        )

    def footer(self, summary: dict[str, Any], run_dir: Path) -> None:
        if not self.enabled:
            return
        from rich.markup import escape
        from rich.table import Table

        table = Table(title="run summary", show_header=False)
        g = summary.get
        rows = [
            ("steps", _n(g("steps"))),
            ("tokens seen", _n(g("tokens_seen"))),
            ("val loss: start -> best", f"{_f(g('initial_val_loss'))} -> {_f(g('best_val_loss'))}"),
            ("final train / val loss", f"{_f(g('final_train_loss'))} / {_f(g('final_val_loss'))}"),
            ("tokens/s", _n(g("tokens_per_s"))),
            ("wall time", f"{g('wall_time_s'):.1f} s" if g("wall_time_s") is not None else "-"),
            ("peak memory", f"{g('peak_memory_bytes') / 2**20:,.0f} MiB" if g("peak_memory_bytes") else "-"),
        ]
        if "export_parity_max_abs_diff" in summary:
            rows.append(("hf export parity (max |dlogit|)", f"{summary['export_parity_max_abs_diff']:.2e}"))
        for k, v in rows:
            table.add_row(k, v)
        self.rich.print(table)
        for prompt, text in (summary.get("samples") or {}).items():
            self.rich.print(f"[bold]sample[/bold] ({escape(repr(prompt))}):", markup=True)  # prompts may hold "["
            self.rich.print(text, markup=False)
        if (run_dir / "report.html").is_file():
            self.note(f"report: {run_dir / 'report.html'}")
        self.note(f"outputs in {run_dir}")


def _f(x: Any) -> str:
    return "-" if x is None else f"{x:.4f}"


def _n(x: Any) -> str:
    return "-" if x is None else f"{x:,.0f}"
