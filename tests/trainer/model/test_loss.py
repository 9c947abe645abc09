"""The fused chunked head + cross-entropy against the plain pass: values, gradients, ignore_index, precision."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from distributed_llm_trainer.model.loss import IGNORE_INDEX, auto_chunk_size, causal_lm_loss


def _inputs(with_bias: bool, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(2, 7, 5, generator=g).requires_grad_()  # (B, T, D)
    w = torch.randn(11, 5, generator=g).requires_grad_()  # (V, D)
    b = torch.randn(11, generator=g).requires_grad_() if with_bias else None
    t = torch.randint(0, 11, (2, 7), generator=g)
    t[0, 3] = t[1, 6] = IGNORE_INDEX
    return h, w, b, t


def _loss_and_grads(chunk: int | None, with_bias: bool, scale: float = 1.0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    h, w, b, t = _inputs(with_bias)
    loss = causal_lm_loss(h, w, t, chunk, b)
    (loss * scale).backward()
    return loss.detach(), [x.grad for x in (h, w, b) if x is not None]


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("chunk", [1, 3, 5, 14, 100, None])
def test_fused_equals_plain_pass(chunk: int | None, with_bias: bool) -> None:
    ref_loss, ref_grads = _loss_and_grads(0, with_bias)
    h, w, b, t = _inputs(with_bias)
    manual = F.cross_entropy(F.linear(h.reshape(-1, 5), w, b), t.reshape(-1), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(ref_loss, manual.detach())
    loss, grads = _loss_and_grads(chunk, with_bias)
    torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=1e-6)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, atol=1e-6, rtol=1e-5)


def test_fused_path_is_taken_and_backward_scales_with_the_upstream_gradient() -> None:
    h, w, _, t = _inputs(False)
    assert "FusedLinearCE" in type(causal_lm_loss(h, w, t, 4).grad_fn).__name__
    _, full = _loss_and_grads(4, True)
    _, quarter = _loss_and_grads(4, True, scale=0.25)  # e.g. loss / accumulate_grad_batches
    for g, q in zip(full, quarter, strict=True):
        torch.testing.assert_close(q, g * 0.25)


def test_exact_numbers_by_hand() -> None:
    # V=4, D=2, zero weights: every logit 0, softmax 1/4; one valid token with target 2, one ignored.
    h = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    w = torch.zeros(4, 2, requires_grad=True)
    t = torch.tensor([2, IGNORE_INDEX])
    loss = causal_lm_loss(h, w, t, 1)
    assert loss.item() == pytest.approx(math.log(4), abs=1e-7)
    loss.backward()
    g_logits = torch.tensor([0.25, 0.25, -0.75, 0.25])  # softmax - onehot, divided by 1 valid token
    torch.testing.assert_close(w.grad, torch.outer(g_logits, h.detach()[0]))
    torch.testing.assert_close(h.grad, torch.zeros(2, 2))  # w is zero, and the ignored row gets nothing


def test_all_targets_ignored_gives_zero_loss_and_gradients() -> None:
    h, w, _, t = _inputs(False)
    t.fill_(IGNORE_INDEX)
    loss = causal_lm_loss(h, w, t, 4)
    loss.backward()
    assert loss.item() == 0.0
    assert not h.grad.any() and not w.grad.any()


def test_no_grad_evaluation_matches_and_skips_gradients() -> None:
    h, w, b, t = _inputs(True)
    ref = causal_lm_loss(h, w, t, 0, b).detach()
    with torch.no_grad():
        loss = causal_lm_loss(h, w, t, 3, b)
    assert loss.grad_fn is None
    torch.testing.assert_close(loss, ref)


def test_bf16_autocast_on_cpu_keeps_fp32_gradients_close() -> None:
    ref_loss, ref_grads = _loss_and_grads(0, False)
    h, w, _, t = _inputs(False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = causal_lm_loss(h, w, t, 4)
    loss.backward()
    assert loss.dtype == torch.float32 and w.grad.dtype == torch.float32 and h.grad.dtype == torch.float32
    torch.testing.assert_close(loss.detach(), ref_loss, atol=0.05, rtol=0.02)
    torch.testing.assert_close(w.grad, ref_grads[1], atol=0.02, rtol=0.05)


def test_auto_chunk_size() -> None:
    assert auto_chunk_size(8192) == 512
    assert auto_chunk_size(50257) == 512
    assert auto_chunk_size(65) == (1 << 21) // 65  # a tiny vocabulary: the whole batch in one chunk


@pytest.mark.parametrize("chunk", [None, 4])
def test_under_torch_compile_matches_eager(chunk: int | None) -> None:
    """Auto: the plain pass while dynamo traces; an explicit chunk: dynamo traces the fused autograd.Function."""
    h, w, b, t = _inputs(True)
    ref_loss, ref_grads = _loss_and_grads(0, True)
    compiled = torch.compile(causal_lm_loss, backend="aot_eager", fullgraph=False)
    loss = compiled(h, w, t, chunk, b)
    loss.backward()
    torch.testing.assert_close(loss.detach(), ref_loss, atol=1e-6, rtol=1e-6)
    for g, r in zip((h.grad, w.grad, b.grad), ref_grads, strict=True):
        torch.testing.assert_close(g, r, atol=1e-6, rtol=1e-5)
