"""The software and hardware a run used, recorded at its start (environment.json) for the report.

Recorded at the start rather than when the report is rendered: ``scripts/report.py`` may run later on another
machine, and a crashed run never reaches its end.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from .files import ENV_FILE
from .redact import redact

_PACKAGES = ("torch", "lightning", "transformers", "datasets", "tokenizers", "wandb", "numpy")


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    """Visible GPU names through NVML (no CUDA context is created, so forked workers stay safe); [] without."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no driver, no library, no GPU: a CPU machine
        return []
    try:
        names = []
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        count = pynvml.nvmlDeviceGetCount()
        indices = range(count)
        if visible is not None:  # NVML ignores CUDA_VISIBLE_DEVICES; honour plain integer lists
            try:
                indices = [int(i) for i in visible.split(",") if i.strip() != ""]
            except ValueError:
                pass
        for i in indices:
            if 0 <= i < count:
                name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
                names.append(name.decode() if isinstance(name, bytes) else str(name))
        return names
    except Exception:
        return []
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def collect_environment() -> dict[str, Any]:
    """Python/package versions, OS, host, CPU, RAM and GPUs of this machine."""
    import psutil
    import torch

    env: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        **{pkg: _version(pkg) for pkg in _PACKAGES},
        "cuda": torch.version.cuda,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "ram_bytes": psutil.virtual_memory().total,
    }
    gpus = gpu_names()
    env["gpus"] = gpus
    env["gpu_count"] = len(gpus)
    for var in ("WORLD_SIZE", "SLURM_JOB_ID", "SLURM_NNODES"):
        if os.environ.get(var):
            env[var.lower()] = os.environ[var]
    return env


def write_environment(run_dir: Path) -> Path:
    """Write environment.json (secrets masked) into ``run_dir``; returns its path."""
    path = Path(run_dir) / ENV_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(redact(collect_environment()), indent=2) + "\n")
    return path


def read_environment(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(run_dir) / ENV_FILE).read_text())
    except (OSError, ValueError):
        return None
