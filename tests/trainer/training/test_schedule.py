import math

import pytest
import torch

from distributed_llm_trainer.training.schedule import WarmupCosine, lr_at

KW = dict(lr=1e-3, min_lr=1e-4, warmup_steps=10, decay_steps=110)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 1e-3 * 1 / 11),
        (4, 1e-3 * 5 / 11),
        (9, 1e-3 * 10 / 11),
        (10, 1e-3),  # cosine starts at the peak
        (60, 1e-4 + 0.5 * (1 + math.cos(math.pi * 0.5)) * 9e-4),  # halfway: (lr + min_lr) / 2
        (110, 1e-4),
        (500, 1e-4),
    ],
)
def test_exact_values(step: int, expected: float) -> None:
    assert lr_at(step, **KW) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_halfway_is_mean() -> None:
    assert lr_at(60, **KW) == pytest.approx(5.5e-4)


def test_lambda_lr_steps_per_optimizer_step() -> None:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(**KW))
    seen = []
    for _ in range(12):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([lr_at(i, **KW) for i in range(12)], rel=1e-12)
