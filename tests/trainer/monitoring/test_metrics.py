"""TrainMetrics (throughput, MFU against a hand calculation, host syncs), SystemMetrics, and the per-step cost."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from distributed_llm_trainer.monitoring import system as system_mod
from distributed_llm_trainer.monitoring.metrics import TrainMetrics, is_log_step, mfu
from distributed_llm_trainer.monitoring.system import SystemMetrics, _Nvml

H100_BF16 = 989e12


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class ListLogger:
    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.rows.append((step, dict(metrics)))


def fake_run(max_steps: int = 100) -> tuple[Any, Any, ListLogger]:
    logger = ListLogger()
    opt = SimpleNamespace(param_groups=[{"lr": 3e-4}])
    trainer = SimpleNamespace(global_step=0, max_steps=max_steps, optimizers=[opt], loggers=[logger],
                              callback_metrics={}, sanity_checking=False, is_global_zero=True, callbacks=[])
    module = SimpleNamespace(device=torch.device("cpu"), pops=0)

    def pop() -> dict[str, float]:
        module.pops += 1
        return {"train/loss": 2.5, "train/grad_norm": 0.7}

    module.pop_train_stats = pop
    return trainer, module, logger


def drive(cbs: list[Any], trainer: Any, module: Any, steps: int, on_step: Any = None) -> None:
    for cb in cbs:
        cb.on_train_start(trainer, module)
    for i in range(steps):
        for cb in cbs:
            if hasattr(cb, "on_train_batch_start"):
                cb.on_train_batch_start(trainer, module, None, i)
        if on_step is not None:
            on_step()
        trainer.global_step += 1
        for cb in cbs:
            cb.on_train_batch_end(trainer, module, None, None, i)


def test_mfu_gpt2_small_at_1024_tokens_matches_hand_calculation() -> None:
    from distributed_llm_trainer.config.schema import ModelConfig
    from distributed_llm_trainer.model.builder import build_model

    V, D, L, H, T = 50257, 768, 12, 12, 1024
    # Hand count: tied embedding V*D; per block 2 LayerNorms (4D), qkv (3D^2 + 3D), attention out (D^2 + D),
    # MLP (4D^2 + 4D and 4D^2 + D): 12D^2 + 13D; final LayerNorm 2D. Position embeddings are left out of N.
    n = V * D + L * (12 * D * D + 13 * D) + 2 * D
    assert n == 123_653_376  # GPT-2 small's 124,439,808 parameters minus 1024 x 768 position embeddings
    flops_per_token = 6 * n + 12 * L * H * (D // H) * T
    assert flops_per_token == 855_166_464
    with torch.device("meta"):  # no memory, no init cost: only shapes matter here
        model = build_model(ModelConfig(name="gpt2-small"), V, T)
    assert model.num_parameters(exclude_position_embeddings=True) == n
    assert model.flops_per_token(T) == flops_per_token

    # 8 sequences of 1024 tokens per step, 10 steps in 2.5 s on 4 H100s -> 32,768 tokens/s
    clock = FakeClock()
    cb = TrainMetrics(10, tokens_per_step=8 * T, flops_per_token=flops_per_token, world_size=4,
                      peak_flops=H100_BF16, clock=clock)
    trainer, module, logger = fake_run()

    def tick() -> None:
        clock.t += 0.25

    drive([cb], trainer, module, 10, on_step=tick)
    step, row = logger.rows[-1]
    assert step == 10
    assert row["perf/tokens_per_s"] == pytest.approx(32_768.0)
    assert row["perf/tokens_per_s_per_device"] == pytest.approx(8_192.0)
    assert row["perf/step_time_s"] == pytest.approx(0.25)
    expected = 855_166_464 * 32_768 / (4 * 989e12)  # = 0.0070839...
    assert row["perf/mfu"] == pytest.approx(expected, rel=1e-9)
    assert mfu(flops_per_token, 32_768, H100_BF16, 4) == pytest.approx(0.00708344, rel=1e-5)


def test_train_metrics_rows_data_wait_and_evaluation_pause() -> None:
    clock = FakeClock()
    cb = TrainMetrics(5, tokens_per_step=100, flops_per_token=1.0, world_size=1, clock=clock)
    trainer, module, logger = fake_run(max_steps=12)
    cb.on_train_start(trainer, module)
    clock.t += 50.0  # the module's step-0 evaluation: not training time
    for i in range(12):
        clock.t += 0.1  # waiting for the batch
        cb.on_train_batch_start(trainer, module, None, i)
        clock.t += 0.4  # compute
        trainer.global_step += 1
        cb.on_train_batch_end(trainer, module, None, None, i)
        if trainer.global_step == 7:  # an evaluation inside the window, after the batch (Lightning's order)
            cb.on_validation_start(trainer, module)
            clock.t += 30.0
            trainer.callback_metrics["val/loss"] = torch.tensor(2.0)
            cb.on_validation_end(trainer, module)
            clock.t += 5.0  # later validation-end hooks: samples, the best checkpoint's save
    assert [s for s, _ in logger.rows] == [5, 10, 12]  # every 5 steps and the last step
    first = logger.rows[0][1]
    assert "perf/mfu" not in first  # no peak FLOP/s known on CPU: absent, not 0
    assert first["train/loss"] == 2.5 and first["train/lr"] == 3e-4 and first["train/tokens_seen"] == 500
    assert first["perf/step_time_s"] == pytest.approx(0.48)  # (5 x 0.5 - first wait) / 5
    assert first["perf/data_wait_share"] == pytest.approx(0.4 / 2.4)
    second = logger.rows[1][1]
    # the 30 s evaluation, the 5 s after it and the loader's first wait after it (0.1 s) are excluded
    assert second["perf/step_time_s"] == pytest.approx(0.48)
    assert cb.val_history == [{"step": 7.0, "tokens": 700.0, "val/loss": 2.0, "val/ppl": pytest.approx(7.389056)}]
    assert module.pops == 3  # device values read (host sync) only at logging steps


def test_is_log_step_without_a_step_limit() -> None:
    assert [s for s in range(1, 12) if is_log_step(s, 5, -1)] == [5, 10]
    assert [s for s in range(1, 13) if is_log_step(s, 5, 12)] == [5, 10, 12]


def test_system_metrics_on_cpu() -> None:
    cb = SystemMetrics(2, min_period_s=0.0)
    trainer, module, logger = fake_run(max_steps=4)
    drive([cb], trainer, module, 4)
    assert [s for s, _ in logger.rows] == [2, 4]
    clock = FakeClock()
    limited = SystemMetrics(1, min_period_s=2.0, clock=clock)
    trainer, module, logger = fake_run(max_steps=10)
    drive([limited], trainer, module, 10, on_step=lambda: setattr(clock, "t", clock.t + 0.5))
    assert [s for s, _ in logger.rows] == [1, 5, 9]  # every step asked, one row per 2 s
    row = logger.rows[-1][1]
    assert {"system/cpu_percent", "system/ram_used_bytes", "system/ram_percent", "system/process_rss_bytes"} <= set(row)
    assert row["system/process_rss_bytes"] > 10 * 2**20
    assert not any(k.startswith("gpu/") for k in row)  # no GPU: skipped silently


def test_nvml_absent_or_partial_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    import pynvml

    def no_driver() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", no_driver)
    assert _Nvml.open(torch.device("cuda", 0)) is None
    assert _Nvml.open(torch.device("cpu")) is None

    class FakeNvml:  # a GPU that reports utilization and temperature but not power
        NVML_TEMPERATURE_GPU = 0

        def nvmlDeviceGetUtilizationRates(self, h: Any) -> Any:
            return SimpleNamespace(gpu=87)

        def nvmlDeviceGetMemoryInfo(self, h: Any) -> Any:
            return SimpleNamespace(used=3 * 2**30)

        def nvmlDeviceGetPowerUsage(self, h: Any) -> int:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

        def nvmlDeviceGetTemperature(self, h: Any, sensor: int) -> int:
            return 64

    assert _Nvml(object(), FakeNvml()).read() == {"gpu/utilization_percent": 87.0,
                                                  "gpu/memory_used_bytes": float(3 * 2**30),
                                                  "gpu/temperature_c": 64.0}


def test_psutil_failure_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: Any, **k: Any) -> None:
        raise OSError("no /proc")

    monkeypatch.setattr(system_mod.psutil, "virtual_memory", boom)
    monkeypatch.setattr(system_mod.psutil, "disk_io_counters", boom)
    SystemMetrics(1).collect()  # partial rows are fine; an exception is not


def test_per_step_cost_is_far_below_one_percent_of_a_step() -> None:
    """All monitoring hooks together, 2,000 steps at the default interval of 10: the mean cost per step must
    stay under 1% of a 10 ms step (GPU steps are longer); steps between logs only read the clock. A system row
    (about 1 ms of /proc reads) is rate-limited to one per 2 s, so it must cost under 1% of that period."""
    from distributed_llm_trainer.monitoring.progress import LiveProgress

    trainer, module, _ = fake_run(max_steps=2000)
    console = SimpleNamespace(is_terminal=False, print=lambda *a, **k: None)
    cbs = [TrainMetrics(10, 4096, 1e9, 1), SystemMetrics(10), LiveProgress(console, 2000, 10)]
    trainer.callbacks = cbs
    for cb in cbs:
        cb.on_train_start(trainer, module)
    hook_time = 0.0
    for i in range(2000):
        t0 = time.perf_counter()
        for cb in cbs:
            if hasattr(cb, "on_train_batch_start"):
                cb.on_train_batch_start(trainer, module, None, i)
        t1 = time.perf_counter()
        trainer.global_step += 1  # (the training step itself would run between t1 and t2)
        t2 = time.perf_counter()
        for cb in cbs:
            cb.on_train_batch_end(trainer, module, None, None, i)
        hook_time += (t1 - t0) + (time.perf_counter() - t2)
    per_step = hook_time / 2000
    assert module.pops == 200  # one device read per logging interval, none in between
    assert per_step < 100e-6, f"monitoring costs {per_step * 1e6:.0f} us per step"
    system = cbs[1]
    t0 = time.perf_counter()
    for _ in range(20):
        system.collect()
    assert (time.perf_counter() - t0) / 20 < 0.01 * system.min_period_s
