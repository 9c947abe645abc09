"""A tiny run end to end: it learns, writes the run-directory contract, exports to transformers, resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from distributed_llm_trainer.training.checkpoint_io import load_checkpoint_file

from .helpers import assert_one_error_line, cli, script, train_args, tree_digest


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    code, _ = cli(train_args(out, "tiny", "training.max_steps=40", "logging.sample_tokens=8"))
    assert code == 0
    return out / "tiny"


def test_run_directory_contract(finished_run: Path) -> None:
    for name in ("config.yaml", "checkpoints", "metrics.csv", "tokenizer", "hf", "summary.json"):
        assert (finished_run / name).exists(), name
    summary = json.loads((finished_run / "summary.json").read_text())
    for key in ("final_train_loss", "final_val_loss", "best_val_loss", "steps", "tokens_seen", "tokens_per_s",
                "wall_time_s", "peak_memory_bytes", "vocab_size", "num_parameters"):
        assert summary[key] is not None, key
    assert summary["steps"] == 40
    assert summary["tokens_seen"] == 40 * 4 * 32
    assert summary["vocab_size"] >= 257  # 256 bytes + specials
    assert summary["export_parity_max_abs_diff"] < 1e-4
    assert isinstance(summary["samples"]["\n"], str)


def test_validation_loss_falls(finished_run: Path) -> None:
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["final_val_loss"] < summary["initial_val_loss"] - 0.5
    assert summary["best_val_loss"] <= summary["final_val_loss"]


def test_checkpoints_keep_newest_and_best(finished_run: Path) -> None:
    names = sorted(p.name for p in (finished_run / "checkpoints").glob("*.ckpt"))
    # every 10 steps, keep_last 3 of step-10..40, plus last and best
    assert names == ["best.ckpt", "last.ckpt", "step-00000020.ckpt", "step-00000030.ckpt", "step-00000040.ckpt"]
    ckpt = load_checkpoint_file(finished_run / "checkpoints" / "last.ckpt")  # weights_only, verified
    assert ckpt["global_step"] == 40


def test_hf_export_reloads_with_identical_logits(finished_run: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distributed_llm_trainer.training.load_run import load_run

    hf = AutoModelForCausalLM.from_pretrained(finished_run / "hf").eval()
    tok = AutoTokenizer.from_pretrained(finished_run / "hf")
    _, ours, _ = load_run(finished_run, which="best")
    ids = tok("def main():\n    return 1\n", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ours(ids), atol=1e-4, rtol=1e-4)
        out = hf.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 5


def test_generate_script(finished_run: Path) -> None:
    proc = script("generate.py", "--run", str(finished_run), "--prompt", "import ", "--max-new-tokens", "12",
                  "--temperature", "0.8", "--top-k", "20")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("import ")
    bad = script("generate.py", "--run", str(finished_run.parent / "nope"), "--prompt", "x")
    assert_one_error_line(bad.returncode, bad.stderr, "not a run directory")


def test_existing_run_is_not_overwritten(finished_run: Path, capsys: pytest.CaptureFixture) -> None:
    before = tree_digest(finished_run)
    code, err = cli(train_args(finished_run.parent, "tiny", "training.max_steps=2"), capsys)
    assert_one_error_line(code, err, "already exists")
    assert tree_digest(finished_run) == before


def test_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    """Stop at step 10, resume to 20: same step counter, optimizer state and weights as a straight 20-step run."""
    # lr_decay_steps fixes the schedule, so stopping at 10 and extending max_steps changes nothing else
    common = ["run.deterministic=true", "checkpoint.export_hf=false", "checkpoint.every_n_steps=5",
              "training.lr_decay_steps=20"]
    assert cli(train_args(tmp_path, "straight", "training.max_steps=20", *common))[0] == 0
    assert cli(train_args(tmp_path, "split", "training.max_steps=10", *common))[0] == 0
    first = load_checkpoint_file(tmp_path / "split" / "checkpoints" / "last.ckpt")
    assert first["global_step"] == 10
    assert cli(train_args(tmp_path, "split", "training.max_steps=20", *common, "--resume",
                          str(tmp_path / "split")))[0] == 0
    a = load_checkpoint_file(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    b = load_checkpoint_file(tmp_path / "split" / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 20
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    sa, sb = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    for i in sa:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(sa[i][name], sb[i][name])
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"] == 20
    # metrics.csv holds each training step once, the resumed part appended after the first
    import csv

    with open(tmp_path / "split" / "metrics.csv", newline="") as f:
        train_steps = [int(float(r["step"])) for r in csv.DictReader(f) if r.get("train/loss")]
    assert train_steps == [5, 10, 15, 20]


def test_resume_auto_and_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["--config", train_args(tmp_path, "x")[1], f"run.output_dir={tmp_path}", "training.max_steps=5",
            "logging.progress_bar=false", "checkpoint.export_hf=false", "logging.sample_tokens=0",
            "checkpoint.every_n_steps=5"]
    assert cli(args)[0] == 0
    runs = [p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(runs) == 1 and runs[0].name.startswith("debug-")
    # auto: continues the newest run of this config
    assert cli([*args, "training.max_steps=8", "--resume"])[0] == 0
    again = [p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert again == runs
    assert load_checkpoint_file(runs[0] / "checkpoints" / "last.ckpt")["global_step"] == 8
    # overwrite replaces a named run
    named = train_args(tmp_path, "named", "training.max_steps=3", "checkpoint.export_hf=false")
    assert cli(named)[0] == 0
    assert cli([*named, "--overwrite"])[0] == 0
    capsys.readouterr()


def test_print_config_exits_zero(capsys: pytest.CaptureFixture) -> None:
    code, _ = cli(["--config", train_args(Path("/tmp"), "x")[1], "training.max_steps=7", "--print-config"])
    assert code == 0
    out = capsys.readouterr().out
    assert "max_steps: 7" in out and "run:" in out


def test_early_stop_after_patience_evaluations(tmp_path: Path) -> None:
    # lr 1e-12 leaves the fp32 weights (and so the val loss) unchanged: no eval after the first is a new best.
    code, _ = cli(train_args(tmp_path, "es", "training.max_steps=40", "training.eval_interval=5",
                             "training.learning_rate=1e-12", "training.min_lr=0", "training.early_stop_patience=2",
                             "logging.sample_tokens=0"))
    assert code == 0
    summary = json.loads((tmp_path / "es" / "summary.json").read_text())
    assert summary["stop_reason"] == "early_stop"
    assert summary["steps"] == 15  # evals at 5 (best), 10 and 15 (2 without improvement)
    assert (tmp_path / "es" / "checkpoints" / "best.ckpt").is_file() and (tmp_path / "es" / "hf").is_dir()

    # the patience counter travels in the checkpoint: 10 steps (1 eval without a new best), then resumed to 40
    args = ["training.eval_interval=5", "training.learning_rate=1e-12", "training.min_lr=0", "logging.sample_tokens=0",
            "training.early_stop_patience=2", "checkpoint.export_hf=false", "training.lr_decay_steps=40"]
    assert cli(train_args(tmp_path, "es2", "training.max_steps=10", *args))[0] == 0
    assert cli(train_args(tmp_path, "es2", "training.max_steps=40", *args, "--resume", str(tmp_path / "es2")))[0] == 0
    summary = json.loads((tmp_path / "es2" / "summary.json").read_text())
    assert (summary["stop_reason"], summary["steps"]) == ("early_stop", 15)
