"""Console output on rank 0: a run header, a live rich progress line, an end-of-run table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L


class Console:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        from rich.console import Console as RichConsole

        self.rich = RichConsole(stderr=False, highlight=False)

    def print(self, *args: Any) -> None:
        if self.enabled:
            self.rich.print(*args)

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
        from rich.table import Table

        table = Table(title="run summary", show_header=False)
        rows = [
            ("steps", f"{summary['steps']:,}"),
            ("tokens seen", f"{summary['tokens_seen']:,}"),
            ("val loss: start -> best", f"{_f(summary.get('initial_val_loss'))} -> {_f(summary.get('best_val_loss'))}"),
            ("final train / val loss", f"{_f(summary.get('final_train_loss'))} / {_f(summary.get('final_val_loss'))}"),
            ("tokens/s", f"{summary['tokens_per_s']:,.0f}" if summary.get("tokens_per_s") else "-"),
            ("wall time", f"{summary['wall_time_s']:.1f} s"),
            ("peak memory", f"{summary['peak_memory_bytes'] / 2**20:,.0f} MiB"),
        ]
        if "export_parity_max_abs_diff" in summary:
            rows.append(("hf export parity (max |dlogit|)", f"{summary['export_parity_max_abs_diff']:.2e}"))
        for k, v in rows:
            table.add_row(k, v)
        self.rich.print(table)
        for prompt, text in (summary.get("samples") or {}).items():
            self.rich.print(f"[bold]sample[/bold] ({prompt!r}):", markup=True)
            self.rich.print(text, markup=False)
        self.print(f"outputs in {run_dir}")


def _f(x: Any) -> str:
    return "-" if x is None else f"{x:.4f}"
