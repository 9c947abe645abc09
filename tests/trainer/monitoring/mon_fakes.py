"""Small stand-ins for the monitoring tests: a tiny LightningModule with the LMModule interface the callbacks use
(``model.generate``, ``pop_train_stats``, val/loss logging), a character tokenizer and a W&B offline-file reader."""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

VOCAB = 27  # 0 = end of text, 1..26 = a..z


class CharTokenizer:
    eos_token_id = 0

    def __call__(self, text: str, return_tensors: str = "pt") -> dict[str, torch.Tensor]:
        ids = [1 + (ord(c) - 97) % 26 for c in text.lower() if c.isalpha()]
        return {"input_ids": torch.tensor([ids], dtype=torch.long)}

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(96 + i) for i in ids if i != 0 or not skip_special_tokens)


class TinyGen(nn.Module):
    """Bigram model with dropout (so training consumes RNG) and a sampling generate() (so sampling does)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 16)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(16, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.emb(ids)))

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, eos_token_id: int | None = None
                 ) -> torch.Tensor:
        ids = input_ids
        for _ in range(max_new_tokens):
            logits = self(ids[:, -1:])[:, -1] / max(temperature, 1e-5)
            nxt = torch.multinomial(logits.softmax(-1), 1)
            ids = torch.cat([ids, nxt], dim=1)
        return ids


class TinyLM(L.LightningModule):
    def __init__(self, config: dict[str, Any] | None = None, n_samples: int = 64) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = TinyGen()
        g = torch.Generator().manual_seed(0)
        self.data = torch.randint(1, VOCAB, (n_samples, 9), generator=g)
        self._loss_sum: torch.Tensor | None = None
        self._loss_count = 0
        self.pops = 0  # how many times the metrics callback read device values (host syncs)

    def _loss(self, batch: torch.Tensor) -> torch.Tensor:
        logits = self.model(batch[:, :-1])
        return nn.functional.cross_entropy(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1))

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch[0])
        self._loss_sum = loss.detach() if self._loss_sum is None else self._loss_sum + loss.detach()
        self._loss_count += 1
        return loss

    def pop_train_stats(self) -> dict[str, float]:
        self.pops += 1
        out = {"train/loss": (self._loss_sum / self._loss_count).item()} if self._loss_sum is not None else {}
        self._loss_sum, self._loss_count = None, 0
        return out

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        loss = self._loss(batch[0])
        self.log("val/loss", loss)
        self.log("val/ppl", math.exp(min(loss.item(), 50.0)))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.data), batch_size=4, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.data[:8]), batch_size=4)


def tiny_trainer(root: Path, max_steps: int, callbacks: list[Any], loggers: list[Any] | bool = False,
                 val_every: int = 3) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, max_epochs=-1, val_check_interval=val_every,
                     check_val_every_n_epoch=None, limit_val_batches=2, num_sanity_val_steps=0, logger=loggers,
                     callbacks=callbacks, enable_progress_bar=False, enable_checkpointing=False,
                     enable_model_summary=False, default_root_dir=str(root), log_every_n_steps=1)


# ---- W&B offline run files ---------------------------------------------------------------------------------------
# A .wandb file is a LevelDB-style log: a 7-byte file header, then 32 KiB blocks of records, each with a 7-byte
# header (crc32, length, type) and a payload; a record that does not fit a block is split FIRST/MIDDLE/LAST.
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> list[Any]:
    """Every protobuf Record of an offline run's .wandb file."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B transaction log"
    pos, pending, payloads = 7, b"", []
    while pos + 7 <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < 7:  # block trailer padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            break
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == _FULL:
            payloads.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            payloads.append(pending + chunk)
    records = []
    for p in payloads:
        r = pb.Record()
        r.ParseFromString(p)
        records.append(r)
    return records
