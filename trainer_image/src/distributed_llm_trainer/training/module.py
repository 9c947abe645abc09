"""The LightningModule: forward/loss, optimizer + schedule, clipping with non-finite step skipping, eval, RNG state.

Lightning owns the loop (accumulation, precision, zero_grad/step, checkpoints). Per-step values stay on the
device as tensors; they are read (one host sync) only at the logging interval by the monitoring callback.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from ..config.schema import Config
from ..model.builder import build_model
from ..model.compile import maybe_compile
from ..utils.seed import rng_state, set_rng_state
from .budget import Budget, val_batches_per_rank
from .elastic import rescale_batch_progress
from .optim import build_optimizer, clip_gradients
from .schedule import WarmupCosine

CHECKPOINT_KEY = "distributed_llm_trainer"
CHECKPOINT_FORMAT = 1


class LMModule(L.LightningModule):
    def __init__(self, config: dict[str, Any], vocab_size: int, budget: dict[str, Any],
                 tokenizer_fingerprint: str = "") -> None:
        super().__init__()
        # Plain data only: hyper-parameters land in checkpoints loaded with weights_only=True and in the loggers.
        self.save_hyperparameters()
        self.cfg = Config.model_validate(config)
        self.budget = Budget(**budget)
        self.vocab_size = vocab_size
        self.tokenizer_fingerprint = tokenizer_fingerprint
        torch.manual_seed(self.cfg.run.seed)  # identical init on every rank and on resume
        self.model = build_model(self.cfg.model, vocab_size, self.cfg.data.seq_len)
        # The compiled callable lives outside _modules so state_dict keys stay "model.*".
        self.__dict__["_fwd"] = self.model
        self._configured = False
        self._pending_rng: dict[str, Any] | None = None
        self.initial_val_loss: float | None = None
        self.last_val_loss: float | None = None
        self._reset_train_stats()

    # ---- model set-up ------------------------------------------------------------------------------------------
    def configure_model(self) -> None:
        if self._configured:
            return
        self._configured = True
        from .parallel import apply_fsdp  # FSDP2 per-block sharding when the strategy provides a device mesh
        from .speed import apply_fp8

        apply_fp8(self.model, self.cfg.training)  # torchao float8 Linears first: FSDP2 then shards them
        apply_fsdp(self)
        compiled = maybe_compile(self.model, self.cfg.model, self.device.type)
        self.__dict__["_fwd"] = compiled

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._fwd(input_ids, targets, attention_mask)

    # ---- training ----------------------------------------------------------------------------------------------
    def _reset_train_stats(self) -> None:
        self._loss_sum: torch.Tensor | None = None  # sum of micro-batch losses since the last log
        self._loss_count = 0
        self._grad_norm: torch.Tensor | None = None
        self._skipped: torch.Tensor | None = None  # skipped (non-finite) optimizer steps since the last log
        self._consecutive_bad: torch.Tensor | None = None

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self._pending_rng is not None:  # restore RNG exactly where the saved run was, after loader set-up
            set_rng_state(self._pending_rng)
            self._pending_rng = None
        loss = self(batch["input_ids"], batch["targets"], batch.get("attention_mask"))
        detached = loss.detach()
        self._loss_sum = detached if self._loss_sum is None else self._loss_sum + detached
        self._loss_count += 1
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        t = self.cfg.training
        # Fused AdamW skips a non-finite update on-device (found_inf): no host sync per step.
        self._grad_norm, bad = clip_gradients(optimizer, t.grad_clip or float("inf"), t.skip_nonfinite)
        self._skipped = bad if self._skipped is None else self._skipped + bad
        prev = self._consecutive_bad if self._consecutive_bad is not None else torch.zeros_like(bad)
        self._consecutive_bad = (prev + 1) * bad

    def pop_train_stats(self) -> dict[str, float]:
        """Mean loss, last grad norm and skip counts since the last call (one host sync)."""
        out: dict[str, float] = {}
        if self._loss_sum is not None and self._loss_count:
            mean = self._loss_sum / self._loss_count
            if self.trainer.world_size > 1:  # every rank logs at the same step: the mean over all ranks' data
                mean = self.trainer.strategy.reduce(mean, reduce_op="mean")
            out["train/loss"] = mean.item()
        if self._grad_norm is not None:
            out["train/grad_norm"] = self._grad_norm.item()
        if self._skipped is not None:
            out["train/skipped_steps"] = self._skipped.item()
            out["train/consecutive_bad_steps"] = self._consecutive_bad.item()  # type: ignore[union-attr]
        consecutive = self._consecutive_bad
        self._reset_train_stats()
        self._consecutive_bad = consecutive
        return out

    def configure_optimizers(self) -> dict[str, Any]:
        t = self.cfg.training
        optimizer = build_optimizer(self.model, t, self.device.type)
        decay = t.lr_decay_steps or self.budget.max_steps
        schedule = WarmupCosine(t.learning_rate, t.min_lr, t.warmup_steps, decay)
        # A plain function, so LambdaLR saves only its step count: a resumed run follows its own config's schedule
        # (an elastic restart whose budget moved, or a longer max_steps), not the one pickled at the first start.
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def _apply_schedule(self) -> None:
        """The next update's LR from this run's schedule: a restored optimizer holds the one its saver computed."""
        for config in self.trainer.lr_scheduler_configs:
            sched = config.scheduler
            if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
                lrs = [base * fn(sched.last_epoch) for base, fn in zip(sched.base_lrs, sched.lr_lambdas, strict=True)]
                for group, lr in zip(sched.optimizer.param_groups, lrs, strict=True):
                    group["lr"] = lr
                sched._last_lr = lrs

    # ---- evaluation --------------------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        self._apply_schedule()
        if self.trainer.global_step == 0 and self.initial_val_loss is None:
            # Baseline before any update, so the run shows how far validation loss fell.
            self.initial_val_loss = self.evaluate_now()
            for logger in self.loggers:
                logger.log_metrics({"val/loss": self.initial_val_loss,
                                    "val/ppl": math.exp(min(self.initial_val_loss, 50.0))}, step=0)

    def on_validation_epoch_start(self) -> None:
        self._val_sum = torch.zeros((), device=self.device)
        self._val_count = torch.zeros((), device=self.device)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss = self(batch["input_ids"], batch["targets"], batch.get("attention_mask"))  # every rank: FSDP gathers
        if batch_idx < self.trainer.datamodule.val_counted:  # the rest are repeats that keep batch counts equal
            self._val_sum += loss.detach().float()
            self._val_count += 1

    def on_validation_epoch_end(self) -> None:
        total = self.trainer.strategy.reduce(self._val_sum, reduce_op="sum")
        count = self.trainer.strategy.reduce(self._val_count, reduce_op="sum")
        val = (total / count.clamp(min=1)).item()
        self.last_val_loss = val
        ppl = math.exp(min(val, 50.0))
        # callback_metrics (for the best-checkpoint monitor) via self.log; the loggers get the optimizer step.
        self.log("val/loss", val, logger=False)
        self.log("val/ppl", ppl, logger=False)
        if not self.trainer.sanity_checking:
            for logger in self.loggers:
                logger.log_metrics({"val/loss": val, "val/ppl": ppl}, step=self.trainer.global_step)

    def evaluate_now(self) -> float:
        """Validation loss on up to ``eval_steps`` batches outside the loop (the step-0 baseline)."""
        loader = self.trainer.datamodule.val_dataloader()
        was_training = self.training
        self.eval()
        total = torch.zeros((), device=self.device)
        count = torch.zeros((), device=self.device)
        with torch.no_grad(), self.trainer.precision_plugin.forward_context():
            limit = val_batches_per_rank(self.cfg.training.eval_steps, self.trainer.world_size)
            counted = self.trainer.datamodule.val_counted
            for i, batch in enumerate(loader):
                if i >= limit:
                    break
                batch = self.trainer.strategy.batch_to_device(batch)
                loss = self(batch["input_ids"], batch["targets"], batch.get("attention_mask")).float()
                if i < counted:
                    total += loss
                    count += 1
        self.train(was_training)
        total = self.trainer.strategy.reduce(total, reduce_op="sum")
        count = self.trainer.strategy.reduce(count, reduce_op="sum")
        return (total / count.clamp(min=1)).item()

    # ---- checkpoints -------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "format": CHECKPOINT_FORMAT,
            "rng": rng_state(),
            "tokenizer_fingerprint": self.tokenizer_fingerprint,
            "vocab_size": self.vocab_size,
            "initial_val_loss": self.initial_val_loss,
            # the partial logging window, so a resumed run logs exactly what an uninterrupted one does
            "train_stats": self._gathered_train_stats(),
        }

    def _gathered_train_stats(self) -> dict[str, Any]:
        """Every rank's partial logging window, indexed by rank (collective: all ranks save together)."""
        def per_rank(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            return self.all_gather(t).reshape(-1).cpu() if self.trainer.world_size > 1 else t.reshape(1).cpu()

        return {"loss_sum": per_rank(self._loss_sum), "loss_count": self._loss_count,
                "grad_norm": self._grad_norm, "skipped": per_rank(self._skipped),
                "consecutive_bad": per_rank(self._consecutive_bad)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Another world size (an elastic restart): the loop's micro-batch counters move to the new accumulation.
        rescale_batch_progress(checkpoint, self.budget.micro_batch, self.budget.world_size)
        ours = checkpoint.get(CHECKPOINT_KEY, {})
        self._pending_rng = ours.get("rng")
        self.initial_val_loss = ours.get("initial_val_loss")
        stats = ours.get("train_stats")
        if stats:
            rank, world = self.trainer.global_rank, self.trainer.world_size

            def mine(v: Any) -> Any:  # this rank's entry; the mean if the world size changed
                if not isinstance(v, torch.Tensor) or v.ndim == 0:
                    return v
                return v[rank] if v.numel() == world else v.float().mean()

            on = {k: (mine(v).to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in stats.items()}
            on["grad_norm"] = stats["grad_norm"].to(self.device) if stats["grad_norm"] is not None else None
            self._loss_sum, self._loss_count = on["loss_sum"], on["loss_count"]
            self._grad_norm, self._skipped = on["grad_norm"], on["skipped"]
            self._consecutive_bad = on["consecutive_bad"]
