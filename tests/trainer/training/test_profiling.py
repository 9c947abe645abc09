"""The step profiler's bookkeeping: kernel categories and which events count, on CPU and (with fakes) on a GPU."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch.autograd import DeviceType

from distributed_llm_trainer.training.profiling import category, event_us, profile_steps


def test_categories_of_real_kernel_names() -> None:
    assert category("cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_26") == "attention"
    assert category("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT") == "matmul"
    assert category("aten::addmm") == "matmul"
    assert category("triton_red_fused__log_softmax__to_copy_prepare_softmax_online_18") == "loss"
    assert category("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedAdamWMathFunctor>") == (
        "optimizer")
    assert category("triton_poi_fused_gelu_gelu_backward_view_6") == "fused_elementwise"
    assert category("triton_per_fused__to_copy_add_native_layer_norm_backward_view_9") == "norm"
    assert category("triton_poi_fused__to_copy_add_mul_3") == "fused_elementwise"
    assert category("void at::native::direct_copy_kernel_cuda") == "copy_fill"
    assert category("Memset (Device)") == "copy_fill"
    assert category("aten::gelu") == "other"


def test_gpu_counts_kernels_once() -> None:
    def ev(key: str, device: DeviceType, us: float, annotation: bool = False) -> SimpleNamespace:
        return SimpleNamespace(key=key, device_type=device, self_device_time_total=us, self_cpu_time_total=5.0,
                               is_user_annotation=annotation)

    assert event_us(ev("nvjet_sm90_tst_NNT", DeviceType.CUDA, 100.0), gpu=True) == 100.0
    assert event_us(ev("aten::mm", DeviceType.CPU, 100.0), gpu=True) == 0.0  # its kernel is counted already
    assert event_us(ev("## Call CompiledFxGraph abc ##", DeviceType.CUDA, 900.0), gpu=True) == 0.0
    assert event_us(ev("range", DeviceType.CUDA, 900.0, annotation=True), gpu=True) == 0.0
    assert event_us(ev("aten::mm", DeviceType.CPU, 0.0), gpu=False) == 5.0
    assert event_us(ev("ProfilerStep", DeviceType.CPU, 0.0), gpu=False) == 0.0


def test_profile_steps_on_cpu_adds_up() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 64))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    x = torch.randn(32, 64)

    def step() -> torch.Tensor:
        loss = model(x).square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    out = profile_steps(step, 3, lambda: None, "cpu", top=5)
    assert out["profiled_steps"] == 3
    cats = out["ms_per_step_by_category"]
    assert cats["matmul"] > 0 and "optimizer" in cats
    assert abs(sum(cats.values()) - out["busy_ms_per_step"]) < 0.01
    assert 0 < out["busy_share"] <= 1.05  # operators' self time cannot exceed the wall time by much
    assert len(out["top"]) == 5 and out["top"][0]["ms_per_step"] >= out["top"][-1]["ms_per_step"]
