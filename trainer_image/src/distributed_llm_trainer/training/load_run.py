"""Load a finished (or running) run's model and tokenizer from its directory, for generation and tools."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import load_config
from ..config.schema import Config
from ..errors import UserError
from .checkpoint_io import CorruptCheckpoint, load_checkpoint_file, newest_valid_checkpoint


def load_run(run_dir: str | Path, which: str = "best") -> tuple[Config, Any, Any]:
    """(config, model in eval mode on CPU, tokenizer). ``which``: best (falls back to newest) or last."""
    from transformers import PreTrainedTokenizerFast

    from ..model.builder import build_model

    root = Path(run_dir)
    if not (root / "config.yaml").is_file():
        raise UserError("--run", f"{root} is not a run directory (no config.yaml); pass runs/<name>")
    cfg = load_config(root / "config.yaml")
    if not (root / "tokenizer").is_dir():
        raise UserError("--run", f"{root} has no tokenizer/ folder; the run did not get past data preparation")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(root / "tokenizer"))
    ckpt = root / "checkpoints" / "best.ckpt"
    if which != "best" or not ckpt.is_file():
        ckpt = newest_valid_checkpoint(root / "checkpoints")
    if ckpt is None:
        raise UserError("--run", f"{root} has no usable checkpoint yet; wait for the first save")
    try:
        state = load_checkpoint_file(ckpt)["state_dict"]
    except CorruptCheckpoint as e:
        raise UserError("--run", f"{e}; try --which last") from None
    model = build_model(cfg.model.model_copy(update={"init_from": None, "compile": False}), len(tokenizer),
                        cfg.data.seq_len)
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    return cfg, model.eval(), tokenizer
