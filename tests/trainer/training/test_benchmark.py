"""Benchmark harness (pipeline vs bare loop) and the speed switches that run on CPU: auto batch size, FP8 errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from distributed_llm_trainer.config import load_config
from distributed_llm_trainer.errors import UserError
from distributed_llm_trainer.training.autobatch import AUTO_CPU_BATCH, candidates, cpu_default, resolve_batch_size
from distributed_llm_trainer.training.bench import benchmark
from distributed_llm_trainer.training.optim import clip_gradients
from distributed_llm_trainer.training.speed import check_attention_backend, check_fp8, fp8_filter
from distributed_llm_trainer.training.steptime import percentile, summarize

from .helpers import DEBUG, REPO, assert_one_error_line, cli, script, train_args

LINE_KEYS = {"variant", "steps", "tokens_per_s", "step_time_median_s", "step_time_p90_s", "mfu", "peak_memory_bytes",
             "data_wait_share", "compile", "fused_adamw", "tf32", "fp8", "precision", "micro_batch", "accumulation"}


def test_benchmark_script_prints_both_variants_and_the_ratio(tmp_path: Path) -> None:
    before = sorted(p.name for p in REPO.iterdir())
    out = tmp_path / "bench.json"
    proc = script("benchmark.py", "--config", DEBUG, "--steps", "4", "--warmup", "2", "--json", str(out),
                  "--cache-dir", str(tmp_path / "cache"), "logging.sample_tokens=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in proc.stdout.splitlines()]  # stdout holds only the JSON lines
    assert [x["variant"] for x in lines] == ["pipeline", "bare", "ratio"]
    for x in lines[:2]:
        assert LINE_KEYS <= x.keys(), LINE_KEYS - x.keys()
        assert x["mfu"] is None  # CPU: no peak FLOP/s
        assert x["steps"] >= 1 and x["tokens_per_s"] > 0 and 0 <= x["data_wait_share"] <= 1
        assert x["step_time_p90_s"] >= x["step_time_median_s"] > 0
    ratio = lines[2]["step_time_ratio"]
    assert 0.1 < ratio < 20 and math.isclose(ratio, lines[0]["step_time_median_s"] / lines[1]["step_time_median_s"])
    (round_ratio,) = lines[2]["round_ratios"]  # one round: its ratio is the pooled one
    assert math.isclose(round_ratio, ratio) and math.isclose(lines[2]["round_ratio_median"], ratio)
    assert out.read_text() == proc.stdout
    assert sorted(p.name for p in REPO.iterdir()) == before  # nothing left in the checkout


@pytest.mark.parametrize("extra", [[], ["training.global_batch_size=8"]], ids=["plain", "accumulation"])
def test_bare_loop_matches_the_pipeline_step_for_step(tmp_path: Path, extra: list[str]) -> None:
    """Same weights, batches, optimizer, schedule and clipping: identical fp32 losses (apples to apples)."""
    cfg = load_config(DEBUG, ["model.dropout=0.0", "training.precision=32-true", "logging.sample_tokens=0",
                              "training.eval_interval=3", "checkpoint.every_n_steps=3", *extra])
    lines, runs = benchmark(cfg, DEBUG, steps=4, warmup=2, cache_dir=tmp_path)
    pipe, bare = runs["pipeline"][0], runs["bare"][0]
    assert len(pipe.losses) == len(bare.losses) == 6
    for a, b in zip(pipe.losses, bare.losses):
        assert abs(a - b) <= 1e-5, (pipe.losses, bare.losses)
    assert pipe.losses[-1] < pipe.losses[0]
    accumulation = 2 if extra else 1
    assert lines[0]["accumulation"] == lines[1]["accumulation"] == accumulation
    assert lines[0]["excluded_steps"] >= 1  # the step with a validation pass / checkpoint is not timed


def test_batch_size_auto_on_cpu_resolves_to_the_default() -> None:
    notes: list[str] = []
    cfg = load_config(DEBUG, ["training.batch_size=auto"])
    resolve_batch_size(cfg, 300, 1, "cpu", "32-true", None, notes.append)
    assert cfg.training.batch_size == AUTO_CPU_BATCH and cfg.training.global_batch_size is None
    assert len(notes) == 1 and "batch_size auto: 8" in notes[0]
    cfg = load_config(DEBUG, ["training.batch_size=auto", "training.global_batch_size=12"])
    resolve_batch_size(cfg, 300, 1, "cpu", "32-true", None, notes.append)
    assert cfg.training.batch_size == 6  # the largest divisor of the global batch up to the default
    assert cpu_default(None) == AUTO_CPU_BATCH and cpu_default(7) == 7
    assert candidates(48, limit=64) == [1, 2, 4, 8, 16]


def test_batch_size_auto_end_to_end_on_cpu(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _ = cli(train_args(tmp_path, "auto", "training.batch_size=auto", "training.max_steps=2",
                             "checkpoint.export_hf=false"))
    assert code == 0
    assert "batch_size auto: 8" in capsys.readouterr().out
    saved = (tmp_path / "auto" / "config.yaml").read_text()
    assert "batch_size: 8" in saved  # the run directory records the resolved value (resume reuses it)


def test_fp8_without_a_hopper_gpu_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = load_config(DEBUG, ["training.fp8=true", "distributed.accelerator=cpu"])
    with pytest.raises(UserError, match="training.fp8"):
        check_fp8(cfg)
    code, err = cli(train_args(tmp_path, "fp8", "training.fp8=true"), capsys)
    assert_one_error_line(code, err, "training.fp8")
    assert not (tmp_path / "fp8").exists()  # rejected before the run directory is written


@pytest.mark.parametrize(("backend", "gpu", "precision", "fragment"), [
    ("cudnn", False, "32-true", "CUDA kernel"),
    ("efficient", False, "32-true", "CUDA kernel"),
    ("flash", True, "32-true", "needs bf16/fp16"),
    ("cudnn", True, "32-true", "needs bf16/fp16"),
    ("flash", False, "32-true", None),  # CPU flash takes fp32
    ("cudnn", True, "bf16-mixed", None),
    ("efficient", True, "32-true", None),
    ("math", False, "32-true", None),
])
def test_attention_backend_needs_a_kernel_on_this_device(monkeypatch: pytest.MonkeyPatch, backend: str, gpu: bool,
                                                         precision: str, fragment: str | None) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    accelerator = "gpu" if gpu else "cpu"
    cfg = load_config(DEBUG, [f"model.attention_backend={backend}", f"distributed.accelerator={accelerator}",
                              f"training.precision={precision}"])
    if fragment is None:
        check_attention_backend(cfg)
    else:
        with pytest.raises(UserError, match=fragment):
            check_attention_backend(cfg)


def test_fp8_filter_skips_the_head_and_odd_shapes() -> None:
    assert fp8_filter(torch.nn.Linear(128, 256), "blocks.0.mlp.fc")
    assert not fp8_filter(torch.nn.Linear(128, 256), "lm_head")
    assert not fp8_filter(torch.nn.Linear(100, 256), "blocks.0.attn.qkv")
    assert not fp8_filter(torch.nn.LayerNorm(128), "blocks.0.norm1")


@pytest.mark.parametrize("fused", [True, False])
def test_clip_gradients_skips_a_non_finite_step(fused: bool) -> None:
    p = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.AdamW([p], lr=0.1, fused=fused or None, foreach=None if fused else True)
    p.grad = torch.full((4,), float("nan"))
    norm, bad = clip_gradients(opt, 1.0, skip_nonfinite=True)
    assert bad.item() == 1.0 and not torch.isfinite(norm)
    opt.step()  # the non-fused optimizer used to reject found_inf
    assert torch.equal(p.detach(), torch.ones(4))
    p.grad = torch.full((4,), 3.0)
    norm, bad = clip_gradients(opt, 1.0, skip_nonfinite=True)
    assert bad.item() == 0.0 and norm.item() == pytest.approx(6.0)
    assert p.grad.norm().item() == pytest.approx(1.0, rel=1e-4)


def test_summarize_and_percentile() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)
    row = summarize("x", [0.1, 0.1, 0.2], [0.01, 0.0, 0.0], 100, 6e6, None, 1, None)
    assert row["tokens_per_s"] == pytest.approx(300 / 0.4) and row["mfu"] is None
    assert row["data_wait_share"] == pytest.approx(0.01 / 0.4)
    row = summarize("x", [0.5], [0.0], 1000, 1e9, 1e12, 1, 1)
    assert row["mfu"] == pytest.approx(1e9 * 2000 / 1e12)


def test_batch_size_search_keeps_memory_headroom_and_stops_at_oom() -> None:
    from distributed_llm_trainer.config.schema import Config
    from distributed_llm_trainer.training.autobatch import search

    gib = 2**30
    # tokens/s and peak memory measured by a search on an H200 (gpt2-small, 16 x 1024 shape, eager bf16)
    measured = {1: 44_507, 2: 80_463, 4: 154_982, 8: 258_338, 16: 292_790, 32: 309_779, 64: 319_620,
                128: 327_027, 256: 329_451}

    def trial(micro: int) -> tuple[float, int]:
        if micro > 256:
            raise torch.OutOfMemoryError("fake")
        return measured[micro], int(micro * 0.54 * gib)  # 256 -> 138 GiB, as measured

    cpu = torch.device("cpu")
    best, tried = search(Config(), 100, None, cpu, "bf16-mixed", trial=trial, capacity=140 * gib)
    assert best == 64 and [m for m, _ in tried] == [1, 2, 4, 8, 16, 32, 64, 128]  # 256 peaks above 90%
    best, tried = search(Config(), 100, None, cpu, "bf16-mixed", trial=trial, capacity=1000 * gib)
    assert best == 256 and tried[-1][0] == 256  # stops at the out-of-memory error of 512
    best, tried = search(Config(), 100, 24, cpu, "bf16-mixed", trial=trial, capacity=1000 * gib)
    assert [m for m, _ in tried] == [1, 2, 4, 8] and best == 8  # only divisors of the per-device global batch
