"""SpikeGuard on the true loss: Lightning hands callbacks the training_step loss divided by the accumulation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from distributed_llm_trainer.training.guards import RollbackRequest, SpikeGuard


def _feed(guard: SpikeGuard, trainer: SimpleNamespace, step_losses: list[list[float]]) -> None:
    """Run optimizer steps; each is a list of true micro-batch losses, delivered the way Lightning does it:
    divided by ``accumulate_grad_batches``, with ``global_step`` advancing on the last micro-batch of a step."""
    module = SimpleNamespace(_consecutive_bad=None)
    accumulation = trainer.accumulate_grad_batches
    for micro in step_losses:
        assert len(micro) == accumulation
        for i, true_loss in enumerate(micro):
            if i == accumulation - 1:
                trainer.global_step += 1  # the optimizer step ran inside this micro-batch
            outputs = {"loss": torch.tensor(true_loss) / accumulation}
            guard.on_train_batch_end(trainer, module, outputs, None, 0)


def _trainer(step: int, accumulation: int) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, accumulate_grad_batches=accumulation, world_size=1)


@pytest.mark.parametrize("accumulation", [1, 2, 4])
def test_running_mean_is_the_true_loss_whatever_the_accumulation(accumulation: int) -> None:
    guard = SpikeGuard(max_bad=5, spike_factor=1.3, interval=10)
    trainer = _trainer(0, accumulation)
    guard.on_train_start(trainer, None)
    _feed(guard, trainer, [[2.5] * accumulation] * 30)  # a flat loss: no rollback
    assert guard.seen == 30 and guard.mean == pytest.approx(2.5)


def test_spike_detected_after_resuming_with_more_accumulation() -> None:
    """A run saved without accumulation (mean 2.5) resumes on fewer ranks, so with accumulation 2: a step whose
    true loss is 4.0 (> 1.3 x 2.5) is a spike, though Lightning reports it to callbacks as 2.0."""
    guard = SpikeGuard(max_bad=5, spike_factor=1.3, interval=10)
    guard.load_state_dict({"mean": 2.5, "seen": 20})
    trainer = _trainer(20, 2)
    guard.on_train_start(trainer, None)
    _feed(guard, trainer, [[2.5, 2.5]] * 3)  # normal steps after the resume: no false alarm either way
    with pytest.raises(RollbackRequest, match="loss 4.0000 > 1.3 x running mean"):
        _feed(guard, trainer, [[4.0, 4.0]])
    assert trainer.global_step == 24


def test_no_false_spike_after_resuming_with_less_accumulation() -> None:
    """The other way round: a mean saved under accumulation 4 is the true loss, so accumulation 1 raises nothing."""
    guard = SpikeGuard(max_bad=5, spike_factor=1.3, interval=10)
    trainer = _trainer(0, 4)
    guard.on_train_start(trainer, None)
    _feed(guard, trainer, [[2.5] * 4] * 20)
    resumed = SpikeGuard(max_bad=5, spike_factor=1.3, interval=10)
    resumed.load_state_dict(guard.state_dict())
    trainer = _trainer(20, 1)
    resumed.on_train_start(trainer, None)
    _feed(resumed, trainer, [[2.6]] * 5)
    assert resumed.mean == pytest.approx(2.5 * 0.9**5 + 2.6 * (1 - 0.9**5))


def test_spike_in_an_early_micro_batch_counts() -> None:
    """The step's loss is the mean over all its micro-batches, not only the last one."""
    guard = SpikeGuard(max_bad=5, spike_factor=1.3, interval=10)
    trainer = _trainer(0, 2)
    guard.on_train_start(trainer, None)
    _feed(guard, trainer, [[2.5, 2.5]] * 15)
    with pytest.raises(RollbackRequest, match="loss 4.7500"):
        _feed(guard, trainer, [[7.0, 2.5]])
