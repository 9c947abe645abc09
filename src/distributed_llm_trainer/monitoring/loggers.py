"""Lightning loggers: CSV always (metrics.csv in the run dir), TensorBoard by default, W&B opt-in.

All three receive the resolved config as hyper-parameters (the LightningModule's ``save_hyperparameters``) with
secrets masked. W&B runs online only with an API key and a reachable service; otherwise it logs offline and
``finish_loggers`` returns the ``wandb sync <dir>`` hint. Nothing here waits on the network for long.
"""

from __future__ import annotations

import csv
import os
import secrets
import socket
import string
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only

from ..config.schema import Config
from .environment import write_environment
from .redact import redact

_PROBE_TIMEOUT_S = 3.0


# ---- CSV ----------------------------------------------------------------------------------------------------------
class _ResumableWriter(ExperimentWriter):
    """Lightning's writer deletes an existing metrics.csv when the folder is not empty (every run dir has
    config.yaml) and rewrites it with only the new keys; here a resumed run keeps its history and header."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            try:
                with open(self.metrics_file_path, newline="") as f:
                    header = next(csv.reader(f), [])
                self.metrics_keys = sorted(set(header))
            except OSError:
                pass

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        with open(self.metrics_file_path, newline="") as f:
            # a crash can leave a short last row (missing cells: fine) or junk cells (key None: dropped)
            rows = [{k: v for k, v in r.items() if k is not None} for r in csv.DictReader(f)]
        with open(self.metrics_file_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


class RunCSVLogger(CSVLogger):
    """metrics.csv and hparams.yaml directly in the run dir, appended at every logging call so that a run that
    is still going or has crashed can be reported on (Lightning flushes every N steps only)."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(save_dir=str(run_dir), name="", version="")

    @property
    def experiment(self) -> ExperimentWriter:  # type: ignore[override]
        if self._experiment is None:
            os.makedirs(self.log_dir, exist_ok=True)
            self._experiment = _ResumableWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def log_hyperparams(self, params: Any = None) -> None:
        super().log_hyperparams(redact(_as_dict(params)))

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        super().log_metrics(metrics, step)
        self.save()  # one appended row per call: cheap at the logging interval


# ---- TensorBoard --------------------------------------------------------------------------------------------------
class RunTensorBoardLogger(TensorBoardLogger):
    """Event files in run_dir/tensorboard; hyper-parameters reach the HParams tab and the config the Text tab."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False)

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: dict[str, Any] | None = None, step: int | None = None) -> None:
        params = redact(_as_dict(params))
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
        super().log_hyperparams(redact(_as_dict(params)))


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
def build_loggers(cfg: Config, run_dir: Path, run_name: str) -> list[Any]:
    """Loggers for rank 0 (call it there only); also records environment.json for the report."""
    run_dir = Path(run_dir)
    write_environment(run_dir)
    loggers: list[Any] = [RunCSVLogger(run_dir)]
    if cfg.logging.tensorboard:
        loggers.append(RunTensorBoardLogger(run_dir))
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


def _as_dict(params: Any) -> dict[str, Any]:
    from lightning.fabric.utilities.logger import _convert_params

    return dict(_convert_params(params) or {})
