"""The environment a worker pod's ``llmtj-worker`` turns into a torchrun command: the one place that knows it.

torchrun reads every flag from ``PET_<FLAG>`` variables, so the pod spec carries data, not a command line:
``--nnodes=MIN:MAX --nproc-per-node --rdzv-backend=c10d --rdzv-endpoint=<store pod DNS>:<port>
--rdzv-conf=is_host=false --rdzv-id=<job uid> --max-restarts``. The store pod serves the rendezvous; no worker
hosts it (``is_host=false``), so losing any worker, worker 0 included, costs the same.
"""

from __future__ import annotations

from . import names
from .api import JobSpec

TERMINATION_LOG = "/dev/termination-log"
# is_host=false: the store pod serves the rendezvous. torch's defaults wait 30 s for more nodes once the minimum is
# there (last_call) and take 15 s to declare a silent node dead (5 s x 3 heartbeats): 44 s of a 51 s restart after a
# lost node on the CPU benchmark; these make it 10 s of 17 s (trainer_image/bench/elastic_restart.py). A job can set
# PET_RDZV_CONF in spec.env to choose others.
RDZV_CONF = "is_host=false,last_call_timeout=5,keep_alive_interval=2,keep_alive_max_attempt=3"


def torchrun_env(job: str, namespace: str, uid: str, spec: JobSpec) -> list[dict[str, str]]:
    pairs = {
        "PET_NNODES": f"{spec.min_replicas}:{spec.max_replicas}",
        "PET_NPROC_PER_NODE": str(spec.procs_per_pod),
        "PET_RDZV_BACKEND": "c10d",
        "PET_RDZV_ENDPOINT": f"{names.rendezvous_host(job, namespace)}:{spec.rendezvous_port}",
        "PET_RDZV_CONF": RDZV_CONF,
        "PET_RDZV_ID": uid,
        "PET_MAX_RESTARTS": str(spec.elastic.max_restarts),
        # SIGTERM to SIGKILL for the workers: the pod's grace period, less 10 s for torchrun and the pod to exit
        "PET_SHUTDOWN_TIMEOUT": str(max(1, spec.termination_grace_period_seconds - 10)),
    }
    return [{"name": k, "value": v} for k, v in pairs.items()]


def trainer_env(job: str, namespace: str, pod: str, restart_count: int, spec: JobSpec) -> list[dict[str, str]]:
    """The trainer's side: config, run directory, and who it is for the metrics endpoint (job, namespace, pod, and
    the job's restarts when this pod was made)."""
    pairs = {
        "LLMTJ_CONFIG": f"{names.CONFIG_MOUNT}/{names.CONFIG_KEY}",
        "LLMTJ_OUTPUT_DIR": spec.checkpoint.mount_path,
        "LLMTJ_RUN_NAME": job,
        "LLMTJ_NAMESPACE": namespace,
        "LLMTJ_POD_NAME": pod,
        "LLMTJ_RESTART_COUNT": str(restart_count),
        "LLMTJ_METRICS_PORT": str(names.METRICS_PORT),
        "LLMTJ_TERMINATION_MESSAGE_PATH": TERMINATION_LOG,
        "PYTHONUNBUFFERED": "1",
    }
    return [{"name": k, "value": v} for k, v in pairs.items()]
