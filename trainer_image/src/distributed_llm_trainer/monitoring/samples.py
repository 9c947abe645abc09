"""Text samples at every evaluation, logged to every logger: TensorBoard text, a W&B table, samples.jsonl.

Sampling uses a fixed seed (the same random stream at every evaluation, so samples differ only by the weights)
inside a forked RNG: the training RNG stream, and so the run, is unchanged by sampling.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch

from .files import SAMPLES_FILE


def _needs_all_ranks(trainer: L.Trainer) -> bool:
    """Sharded weights (FSDP, ZeRO-3) are gathered collectively, so every rank must run the same generate()."""
    strategy = trainer.strategy
    name = type(strategy).__name__
    if name in ("ModelParallelStrategy", "FSDPStrategy"):
        return True
    return name == "DeepSpeedStrategy" and bool(getattr(strategy, "zero_stage_3", False))


class EvalSamples(L.Callback):
    """Generate from each prompt at the end of each validation (rank 0) and log the texts."""

    def __init__(self, prompts: list[str], max_new_tokens: int, tokenizer: Any, run_dir: Path | str | None = None,
                 seed: int = 1337, temperature: float = 0.8, top_k: int | None = 50, top_p: float | None = None,
                 tokens_per_step: int | None = None) -> None:
        self.prompts = list(prompts)
        self.max_new_tokens = max_new_tokens
        self.tokenizer = tokenizer
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.seed = seed
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.tokens_per_step = tokens_per_step
        self.history: list[dict[str, Any]] = []  # every sample logged so far, oldest first

    def latest(self) -> dict[str, str]:
        """prompt -> text of the most recent evaluation (for summary.json and the console)."""
        if not self.history:
            return {}
        last = self.history[-1]["step"]
        return {r["prompt"]: r["text"] for r in self.history if r["step"] == last}

    # ---- generation ----------------------------------------------------------------------------------------------
    def _encode(self, prompt: str, device: torch.device) -> torch.Tensor:
        ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"]
        if ids.numel() == 0:  # an empty prompt: start from end-of-text, as a document boundary
            ids = torch.tensor([[self.tokenizer.eos_token_id]])
        return ids.to(device)

    def generate(self, pl_module: L.LightningModule, trainer: L.Trainer | None = None) -> list[str]:
        """One text (prompt + continuation) per prompt; the global RNG state is the same before and after."""
        model = pl_module.model
        device = pl_module.device
        cuda = device.type == "cuda"
        ctx = trainer.precision_plugin.forward_context() if trainer is not None else contextlib.nullcontext()
        was_training = model.training
        texts = []
        # fork_rng saves and restores the CPU and this GPU's generator; seeding only those two (not
        # torch.manual_seed, which touches every GPU) keeps other devices' state and contexts alone.
        with torch.random.fork_rng(devices=[device] if cuda else [], device_type="cuda"), torch.no_grad(), ctx:
            torch.default_generator.manual_seed(self.seed)
            if cuda:
                with torch.cuda.device(device):
                    torch.cuda.manual_seed(self.seed)
            model.eval()
            try:
                for prompt in self.prompts:
                    ids = self._encode(prompt, device)
                    out = model.generate(ids, self.max_new_tokens, temperature=self.temperature, top_k=self.top_k,
                                         top_p=self.top_p, eos_token_id=self.tokenizer.eos_token_id)
                    texts.append(self.tokenizer.decode(out[0].tolist(), skip_special_tokens=True))
            finally:
                model.train(was_training)
        return texts

    # ---- the hook ------------------------------------------------------------------------------------------------
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.max_new_tokens <= 0 or not self.prompts:
            return
        if not (trainer.is_global_zero or _needs_all_ranks(trainer)):
            return
        try:
            texts = self.generate(pl_module, trainer)
        except Exception as e:  # a failed sample (e.g. out of memory) must not end a long training run
            if trainer.is_global_zero:
                print(f"warning: sampling at step {trainer.global_step} failed: {type(e).__name__}: {e}",
                      file=sys.stderr)
            return
        if trainer.is_global_zero:
            self.record(trainer, texts)

    def record(self, trainer: L.Trainer, texts: list[str]) -> None:
        step = trainer.global_step
        rows = [{"step": step, "tokens": step * self.tokens_per_step if self.tokens_per_step else None,
                 "prompt": p, "text": t} for p, t in zip(self.prompts, texts)]
        self.history.extend(rows)
        self._write_jsonl(trainer, rows)
        for logger in trainer.loggers:
            try:
                self._log_to(logger, rows, step)
            except Exception as e:  # one logger's failure must not stop the others
                print(f"warning: logging samples to {type(logger).__name__} failed: {e}", file=sys.stderr)

    def _samples_path(self, trainer: L.Trainer) -> Path:
        if self.run_dir is not None:
            return self.run_dir / SAMPLES_FILE
        from lightning.pytorch.loggers import CSVLogger

        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger):
                return Path(logger.log_dir) / SAMPLES_FILE
        return Path(trainer.default_root_dir) / SAMPLES_FILE

    def _write_jsonl(self, trainer: L.Trainer, rows: list[dict[str, Any]]) -> None:
        path = self._samples_path(trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")

    def _log_to(self, logger: Any, rows: list[dict[str, Any]], step: int) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

        if isinstance(logger, TensorBoardLogger):
            for i, r in enumerate(rows):
                # indented lines render as a code block: whitespace and newlines of the sample survive
                body = "    " + r["text"].replace("\n", "\n    ")
                logger.experiment.add_text(f"samples/{i}", f"prompt: `{r['prompt']!r}`\n\n{body}", step)
        elif isinstance(logger, WandbLogger):
            # W&B tables are immutable once logged: log the whole history so the latest table shows every step
            data = [[h["step"], h["prompt"], h["text"]] for h in self.history]
            logger.log_text(key="samples", columns=["step", "prompt", "text"], data=data, step=step)
