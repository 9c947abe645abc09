import pytest

from distributed_llm_trainer.config import load_config
from distributed_llm_trainer.errors import UserError
from distributed_llm_trainer.training.budget import accumulation_for, compute_budget


def test_accumulation_from_global_batch() -> None:
    assert accumulation_for(None, 8, 4) == 1
    assert accumulation_for(64, 8, 2) == 4
    assert accumulation_for(64, 8, 8) == 1
    with pytest.raises(UserError) as e:
        accumulation_for(60, 8, 2)
    assert e.value.what == "training.global_batch_size" and "multiple of 16" in e.value.why


def test_budget_takes_the_smallest_limit() -> None:
    cfg = load_config(None, ["training.batch_size=4", "training.global_batch_size=16", "data.seq_len=32",
                             "training.max_steps=100", "training.max_epochs=2", "training.max_tokens=10000"])
    b = compute_budget(cfg, world_size=2, batches_per_rank=125)
    assert (b.accumulation, b.global_batch, b.tokens_per_step) == (2, 16, 512)
    # 125 micro-batches per rank -> ceil(125/2) = 63 optimizer steps per epoch (the last one partial)
    assert b.steps_per_epoch == 63
    assert b.max_steps == 20 and b.stop_reason == "max_tokens"  # ceil(10000 / 512)


def test_budget_epochs_and_default() -> None:
    cfg = load_config(None, ["training.batch_size=10", "training.max_epochs=3"])
    assert compute_budget(cfg, 1, 10).max_steps == 30
    cfg = load_config(None, ["training.batch_size=10"])
    b = compute_budget(cfg, 1, 10)
    assert b.max_steps == 10 and b.stop_reason == "max_epochs"


def test_stream_needs_a_step_or_token_limit() -> None:
    cfg = load_config(None, ["training.max_epochs=2"])
    with pytest.raises(UserError, match="max_steps"):
        compute_budget(cfg, 1, None)
    assert compute_budget(load_config(None, ["training.max_steps=5"]), 1, None).max_steps == 5
