"""Lightning loggers: CSV always (metrics.csv in the run dir), TensorBoard by default, W&B opt-in.

All three receive the resolved config as hyper-parameters (the LightningModule's ``save_hyperparameters``) with
secrets masked. W&B runs online only with an API key and a reachable service; otherwise it logs offline and
``finish_loggers`` returns the ``wandb sync <dir>`` hint. Nothing here waits on the network for long.
"""

from __future__ import annotations

import os
import secrets
import socket
import string
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from ..config.schema import Config
from .csv_logger import ResumableCSVLogger, as_dict
from .environment import write_environment
from .redact import redact

_PROBE_TIMEOUT_S = 3.0


# ---- TensorBoard --------------------------------------------------------------------------------------------------
class RunTensorBoardLogger(TensorBoardLogger):
    """Event files in run_dir/tensorboard; hyper-parameters reach the HParams tab and the config the Text tab."""

    def __init__(self, run_dir: Path, purge_step: int | None = None) -> None:
        # purge_step: a resumed run hides the events the crashed one wrote after its checkpoint (TensorBoard
        # would otherwise show both versions of those steps)
        super().__init__(save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False,
                         purge_step=purge_step)

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: dict[str, Any] | None = None, step: int | None = None) -> None:
        params = redact(as_dict(params))
        super().log_hyperparams(params, metrics, step)
        if metrics is not None:  # Lightning already wrote the hparams summaries
            return
        import yaml
        from lightning.fabric.utilities.logger import _flatten_dict
        from torch.utils.tensorboard.summary import hparams

        # Lightning writes the HParams plugin data only together with a metric; name val/loss as the metric
        # (its scalars are logged by the module) without writing a fake value.
        flat = self._sanitize_params(_flatten_dict(params))
        writer = self.experiment._get_file_writer()
        for summary in hparams(flat, {"val/loss": 0.0}):
            writer.add_summary(summary)
        text = yaml.safe_dump(params, sort_keys=False, default_flow_style=False)
        self.experiment.add_text("config", "    " + text.replace("\n", "\n    "), 0)  # indented = code block


# ---- Weights & Biases ---------------------------------------------------------------------------------------------
class RunWandbLogger(WandbLogger):
    """WandbLogger that falls back to offline mode when online start-up fails (no network, bad key)."""

    sync_dir: str | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._wandb_init.pop("anonymous", None)  # deprecated in wandb: passing it at all prints a warning

    @property
    def experiment(self) -> Any:  # type: ignore[override]
        created = self._experiment is None
        try:
            run = super().experiment
        except Exception as e:  # any failure to reach W&B must not end the training run
            if self._wandb_init.get("mode") == "offline":
                raise
            print(f"warning: W&B online start failed ({type(e).__name__}); logging offline instead", file=sys.stderr)
            self._wandb_init["mode"] = "offline"
            self._experiment = None
            run = super().experiment
        if created and run is not None and getattr(run, "offline", False):
            self.sync_dir = str(getattr(run.settings, "sync_dir", "") or "") or None
        return run

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        super().log_hyperparams(redact(as_dict(params)))


def wandb_mode(mode: str) -> str:
    """auto: online when an API key is configured (env or netrc), else offline (no network, no hang)."""
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path.home() / ".netrc"
    try:
        if netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"):
            return "online"
    except OSError:
        pass
    return "offline"


def wandb_reachable(timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Can a TCP connection to the W&B service be opened within ``timeout`` seconds (DNS included)?"""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # traffic goes through a proxy we cannot probe cheaply; the offline fallback still applies
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    host, port = url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    # A thread bounds the DNS lookup too, which create_connection's timeout does not cover.
    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return bool(ok)


def _wandb_run_id(save_dir: Path) -> str:
    """One W&B run id per run directory, so a resumed run continues the same W&B run."""
    path = save_dir / "wandb" / "run_id"
    try:
        return path.read_text().strip()
    except OSError:
        alphabet = string.ascii_lowercase + string.digits  # W&B's own id alphabet
        run_id = "".join(secrets.choice(alphabet) for _ in range(8))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(run_id + "\n")
        return run_id


def _build_wandb(cfg: Config, run_dir: Path, run_name: str) -> RunWandbLogger:
    import wandb

    w = cfg.logging.wandb
    mode = wandb_mode(w.mode)
    if mode == "online" and not wandb_reachable():
        print("warning: W&B service unreachable; logging offline (sync later with `wandb sync`)", file=sys.stderr)
        mode = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    # init_timeout bounds a slow online start; offline never touches the network.
    settings = wandb.Settings(init_timeout=60, silent=True)
    return RunWandbLogger(name=run_name, save_dir=str(run_dir), project=w.project, entity=w.entity,
                          tags=list(w.tags) or None, id=_wandb_run_id(run_dir), mode=mode, settings=settings)


# ---- public API ---------------------------------------------------------------------------------------------------
def build_loggers(cfg: Config, run_dir: Path, run_name: str, resume_step: int | None = None) -> list[Any]:
    """Loggers for rank 0 (call it there only); also records environment.json for the report.

    ``resume_step``: the global step of the checkpoint a resumed run starts from (TensorBoard drops later events).
    """
    run_dir = Path(run_dir)
    write_environment(run_dir)
    loggers: list[Any] = [ResumableCSVLogger(run_dir)]
    if cfg.logging.tensorboard:
        loggers.append(RunTensorBoardLogger(run_dir, purge_step=None if resume_step is None else resume_step + 1))
    if cfg.logging.wandb.enabled:
        loggers.append(_build_wandb(cfg, run_dir, run_name))
    return loggers


def wandb_sync_hint(loggers: list[Any]) -> str | None:
    """``wandb sync <dir>`` for an offline W&B run, else None."""
    for logger in loggers:
        if isinstance(logger, RunWandbLogger) and logger.sync_dir:
            return f"wandb sync {logger.sync_dir}"
    return None


def finish_loggers(loggers: list[Any]) -> str | None:
    """Flush CSV/TensorBoard and finish the W&B run (it flushes to disk); returns ``wandb_sync_hint``."""
    for logger in loggers:
        try:
            if isinstance(logger, WandbLogger):
                if logger._experiment is not None:
                    logger._experiment.finish()
            elif isinstance(logger, TensorBoardLogger):
                if logger._experiment is not None:
                    logger._experiment.flush()
            else:
                logger.save()
        except Exception as e:  # a logger failing at exit must not hide the run's results
            print(f"warning: closing {type(logger).__name__} failed: {e}", file=sys.stderr)
    return wandb_sync_hint(loggers)
