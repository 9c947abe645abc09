"""End of a run (rank 0): HF export with a parity check, a generated sample, summary.json."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from ..model.interop import export_hf, export_parity
from ..monitoring.hardware import peak_memory_bytes
from ..utils.fs import atomic_write_json
from .checkpoint_io import CorruptCheckpoint, load_checkpoint_file
from .module import LMModule


class ExportParityError(RuntimeError):
    """The exported transformers model does not reproduce our logits."""


def best_checkpoint(trainer: L.Trainer) -> Path | None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(cb, ModelCheckpoint) and cb.monitor == "val/loss" and cb.best_model_path:
            return Path(cb.best_model_path)
    return None


def parity_batch(val_tokens: np.ndarray, seq_len: int, rows: int = 2) -> torch.Tensor:
    """A few validation windows (B, T) for the export check."""
    n = min(rows, max(1, (len(val_tokens) - 1) // seq_len))
    ids = np.asarray(val_tokens[: n * seq_len], dtype=np.int64).reshape(n, -1)
    return torch.from_numpy(ids)


def full_model(module: LMModule) -> torch.nn.Module | None:
    """The trained model as a plain module on rank 0 (None elsewhere). Collective under FSDP2: call on all ranks."""
    from .speed import fp8_linear_count

    model = module.model
    sharded = any(hasattr(p, "full_tensor") for p in model.parameters())
    if not sharded and not fp8_linear_count(model):
        return model if module.trainer.is_global_zero else None
    if sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    else:  # FP8 Linears hold the same weights: export and sample from a plain copy
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if not module.trainer.is_global_zero:
        return None
    from ..model.builder import build_model

    cfg = module.cfg
    plain = build_model(cfg.model.model_copy(update={"init_from": None}), module.vocab_size, cfg.data.seq_len)
    plain.load_state_dict(state)
    return plain


def leave_process_group(trainer: L.Trainer) -> None:
    """All ranks leave torch.distributed together, while every peer is still alive.

    Left to interpreter exit, each rank tears its groups down whenever it ends (rank 0 ends last: it writes the
    summary and the export). torch asks for an explicit ``destroy_process_group``: a rank that exits without it
    can block a peer, and under torchrun one stuck node keeps the others in the launcher's 300 s exit barrier.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    trainer.strategy.barrier("leave_process_group")  # every rank is past its last collective
    dist.destroy_process_group()


def export(model: torch.nn.Module, cfg: Any, best: Path | None, hf_dir: Path, tokenizer: Any,
           val_tokens: np.ndarray) -> dict[str, Any]:
    """Write the transformers export of ``model`` (or the best checkpoint's weights) and check its logits."""
    source = "final"
    if cfg.checkpoint.export_best and best is not None and best.is_file():
        try:
            state = load_checkpoint_file(best)["state_dict"]
            model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
            source = "best"
        except CorruptCheckpoint as e:
            print(f"warning: exporting final weights: {e}")
    model = model.float().cpu().eval()
    export_hf(model, hf_dir, tokenizer=tokenizer)
    seq_len = min(cfg.data.seq_len, model.args.max_position_embeddings)
    diff = export_parity(model, hf_dir, parity_batch(val_tokens, seq_len))
    if not diff <= cfg.checkpoint.parity_tolerance:
        raise ExportParityError(
            f"exported model in {hf_dir} differs from ours by {diff:.3g} in logits "
            f"(tolerance {cfg.checkpoint.parity_tolerance}); the export is wrong, do not use it"
        )
    return {"export_weights": source, "export_parity_max_abs_diff": diff}


def sample_text(model: torch.nn.Module, tokenizer: Any, prompt: str, max_new_tokens: int, seed: int) -> str:
    """Seeded sample that leaves the global RNG as it was."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(device)
    if ids.numel() == 0:
        ids = torch.tensor([[tokenizer.eos_token_id]], device=device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        torch.manual_seed(seed)
        out = model.generate(ids, max_new_tokens=max_new_tokens, temperature=0.8, top_k=50,
                             eos_token_id=tokenizer.eos_token_id)
    model.train(was_training)
    return tokenizer.decode(out[0].tolist(), skip_special_tokens=True)


def write_summary(path: Path, *, module: LMModule, model: torch.nn.Module, trainer: L.Trainer,
                  history: list[dict[str, float]],
                  val_history: list[dict[str, float]], started: float, train_time: float, tokens_per_step: int,
                  first_step: int, extra: dict[str, Any]) -> dict[str, Any]:
    train_losses = [r["train/loss"] for r in history if "train/loss" in r]
    vals = [r["val/loss"] for r in val_history]
    if module.initial_val_loss is not None:
        vals = [module.initial_val_loss, *vals]
    steps = trainer.global_step
    tokens_this_session = (steps - first_step) * tokens_per_step
    summary = {
        "final_train_loss": train_losses[-1] if train_losses else None,
        "final_val_loss": module.last_val_loss,
        "best_val_loss": min(vals) if vals else None,
        "initial_val_loss": module.initial_val_loss,
        "steps": steps,
        "tokens_seen": steps * tokens_per_step,
        "tokens_per_s": tokens_this_session / train_time if train_time > 0 else None,
        "wall_time_s": time.time() - started,
        "train_time_s": train_time,
        "peak_memory_bytes": peak_memory_bytes(module.device),
        "vocab_size": module.vocab_size,
        "num_parameters": model.num_parameters(),
        "flops_per_token": model.flops_per_token(module.cfg.data.seq_len),
        **extra,
    }
    atomic_write_json(path, summary)
    return summary


def read_summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())
