"""Console output: quiet on ranks other than 0, plain progress lines in logs, robust end-of-run table; redaction."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console as RichConsole

from distributed_llm_trainer.monitoring.console import Console
from distributed_llm_trainer.monitoring.metrics import TrainMetrics
from distributed_llm_trainer.monitoring.progress import LiveProgress
from distributed_llm_trainer.monitoring.redact import MASK, is_secret_key, redact, redact_text

SUMMARY = {"steps": 20, "tokens_seen": 2560, "initial_val_loss": 5.57, "best_val_loss": 4.69, "final_val_loss": 4.69,
           "final_train_loss": 3.48, "tokens_per_s": 6320.0, "wall_time_s": 15.1, "peak_memory_bytes": 542 * 2**20,
           "samples": {"[bold]\n": "text with [red]brackets[/red]"}}


def captured(enabled: bool = True, terminal: bool = False) -> tuple[Console, io.StringIO]:
    console = Console(enabled=enabled)
    buf = io.StringIO()
    console.rich = RichConsole(file=buf, force_terminal=terminal, width=100, highlight=False)
    return console, buf


def test_footer_table_samples_and_notes(tmp_path: Path) -> None:
    console, buf = captured()
    (tmp_path / "report.html").write_text("<html></html>")
    console.footer(SUMMARY, tmp_path)
    console.note("W&B logged offline; upload with: wandb sync /x/[y]")
    out = buf.getvalue()
    for text in ("run summary", "5.5700 -> 4.6900", "3.4800 / 4.6900", "6,320", "542 MiB", "'[bold]\\n'",
                 "text with [red]brackets[/red]", f"report: {tmp_path / 'report.html'}", "wandb sync /x/[y]"):
        assert text in out, text
    console.footer({"steps": 3}, tmp_path)  # a summary missing most keys (e.g. preempted early) still prints


def test_quiet_on_other_ranks(tmp_path: Path) -> None:
    console, buf = captured(enabled=False)
    console.print("hello")
    console.note("note")
    console.footer(SUMMARY, tmp_path)
    cfg = SimpleNamespace(logging=SimpleNamespace(progress_bar=True, interval=5))
    assert console.callbacks(cfg, SimpleNamespace(max_steps=10)) == []
    assert buf.getvalue() == ""


def test_progress_prints_plain_lines_when_not_a_terminal() -> None:
    console, buf = captured(terminal=False)
    metrics = TrainMetrics(5, 100, 1.0, 1)
    metrics.history = [{"train/loss": 3.25, "perf/tokens_per_s": 12345.0}]
    metrics.val_history = [{"val/loss": 3.5}]
    progress = LiveProgress(console.rich, 10, 5)
    trainer = SimpleNamespace(global_step=0, callbacks=[metrics], sanity_checking=False)
    progress.on_train_start(trainer, None)
    for step in range(1, 11):
        trainer.global_step = step
        progress.on_train_batch_end(trainer, None)
    progress.on_train_end(trainer, None)
    lines = buf.getvalue().splitlines()
    assert [ln.split()[1] for ln in lines] == ["5/10", "10/10", "10/10"]
    assert "loss 3.2500  val 3.5000  12,345 tok/s  eta" in lines[0] and "final val 3.5000" in lines[-1]


def test_progress_shows_the_validation_loss_before_training() -> None:
    console, buf = captured(terminal=False)
    metrics = TrainMetrics(5, 100, 1.0, 1)
    metrics.history = [{"train/loss": 3.25, "perf/tokens_per_s": 12345.0}]
    progress = LiveProgress(console.rich, 10, 5)
    trainer = SimpleNamespace(global_step=0, callbacks=[metrics], sanity_checking=False,
                              lightning_module=SimpleNamespace(initial_val_loss=5.5))
    progress.on_train_start(trainer, None)
    for step in range(1, 6):
        trainer.global_step = step
        progress.on_train_batch_end(trainer, None)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "step 0/10  val 5.5000 (before training)"
    assert "loss 3.2500  val 5.5000" in lines[1]  # until the first evaluation, the starting value


def test_progress_bar_on_a_terminal() -> None:
    console, buf = captured(terminal=True)
    progress = LiveProgress(console.rich, 10, 5)
    trainer = SimpleNamespace(global_step=0, callbacks=[], sanity_checking=False)
    progress.on_train_start(trainer, None)
    trainer.global_step = 10
    progress.on_train_batch_end(trainer, None)
    progress.on_exception(trainer, None, RuntimeError("x"))  # stops the live display cleanly
    assert "10/10" in buf.getvalue() and progress._progress is None


def test_redaction() -> None:
    env = {"WANDB_API_KEY": "abcdef0123456789", "HF_TOKEN": "hf_abc", "PATH": "/usr/bin", "SHORT_KEY": "1"}
    secrets = ["abcdef0123456789"]  # what secret_values(env) finds: long values of secret-looking variables
    from distributed_llm_trainer.monitoring.redact import secret_values

    assert secret_values(env) == secrets
    cfg = {"wandb": {"api_key": "x", "project": "p", "token": "t", "entity": None},
           "training": {"max_tokens": 10, "tokens_per_step": 5}, "tokenizer": {"eos_token": "<|endoftext|>"},
           "data": {"hf_name": "user/abcdef0123456789", "cache_key": "c4f2"}, "list": ["abcdef0123456789", 3]}
    out = redact(cfg, secrets)
    assert out["wandb"] == {"api_key": MASK, "project": "p", "token": MASK, "entity": None}
    assert out["training"] == cfg["training"] and out["tokenizer"] == cfg["tokenizer"]
    assert out["data"] == {"hf_name": f"user/{MASK}", "cache_key": "c4f2"} and out["list"] == [MASK, 3]
    assert redact_text("token hf_" + "a" * 34 + " and key " + "0f" * 20, []) == f"token {MASK} and key {MASK}"
    assert [k for k in ("HF_TOKEN", "hub_token", "password", "eos_token", "max_tokens", "tokenizer") if
            is_secret_key(k)] == ["HF_TOKEN", "hub_token", "password"]
