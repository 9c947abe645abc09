"""Through Lightning: a run resumed from a mid-training checkpoint sees exactly the batches an uninterrupted run sees.

Uses the real StatefulDataLoader + ShardedSampler with 2 workers, checkpoints saved by ModelCheckpoint during
training (mid-epoch and on the last batch of an epoch), and Trainer(use_distributed_sampler=False).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from distributed_llm_trainer.data.datamodule import TokenDataModule
from distributed_llm_trainer.data.pipeline import prepare_data

from .data_corpora import write_jsonl


class Recorder(L.LightningModule):
    """Tiny model that records a fingerprint of every training batch it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(257, 4)
        self.seen: list[tuple[int, ...]] = []

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.seen.append(tuple(batch["input_ids"][:, :3].reshape(-1).tolist()))
        return self.emb(batch["input_ids"]).mean() * 0 + self.emb.weight.sum() * 0

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _fit(cfg, ckpt_dir: Path, every: int | None, ckpt_path: str | None) -> list:
    dm = TokenDataModule(cfg, prepare_data(cfg))
    callbacks = []
    if every:
        callbacks.append(
            L.pytorch.callbacks.ModelCheckpoint(
                dirpath=ckpt_dir, every_n_train_steps=every, save_top_k=-1, filename="{step}"
            )
        )
    model = Recorder()
    trainer = L.Trainer(
        max_epochs=3,
        accelerator="cpu",
        devices=1,
        use_distributed_sampler=False,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=bool(every),
        callbacks=callbacks,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model.seen


@pytest.mark.slow
def test_lightning_resume_continues_with_the_next_batch(tmp_path: Path, make_cfg) -> None:
    rng = np.random.default_rng(1)
    docs = [
        "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz "), size=int(rng.integers(50, 300)))) for _ in range(30)
    ]
    path = write_jsonl(tmp_path / "d.jsonl", docs)
    cfg = make_cfg(f"data.path={path}", "data.seq_len=32", "training.batch_size=16", "data.num_workers=2")
    ref = _fit(cfg, tmp_path / "ck", every=None, ckpt_path=None)
    per_epoch = len(ref) // 3
    assert per_epoch >= 4 and len(ref) == 3 * per_epoch
    # Save every step in one run, then resume from a mid-epoch checkpoint and from the epoch's last batch.
    first = _fit(cfg, tmp_path / "ck", every=1, ckpt_path=None)
    assert first == ref  # checkpointing does not perturb the data order
    for step in (2, per_epoch, per_epoch + 1):  # mid-epoch, last batch of epoch 0, first of epoch 1
        resumed = _fit(cfg, tmp_path / "ck2", every=None, ckpt_path=str(tmp_path / "ck" / f"step={step}.ckpt"))
        assert resumed == ref[step:], step


def test_no_validation_split_is_an_empty_val_loader(tmp_path: Path, make_cfg) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", ["some text for training " * 20] * 4)
    cfg = make_cfg(f"data.path={path}", "data.val_fraction=0", "training.batch_size=2")
    dm = TokenDataModule(cfg, prepare_data(cfg))
    assert dm.val_dataloader() == []

    class WithVal(Recorder):
        def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
            raise AssertionError("no validation data")

    trainer = L.Trainer(
        max_steps=2,
        accelerator="cpu",
        use_distributed_sampler=False,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    model = WithVal()
    trainer.fit(model, datamodule=dm)
    assert len(model.seen) == 2
