"""``llmtj-worker``: the entry point of every trainer pod; checks the config, then runs torchrun on the trainer.

What the operator passes, all optional for a run by hand (``docker run IMAGE``: one process, embedded corpus):

    LLMTJ_CONFIG       trainer YAML (default: the packaged default config)
    LLMTJ_OUTPUT_DIR   run.output_dir: the checkpoint volume's mount path
    LLMTJ_RUN_NAME     run.name: the job's name, so that every restart resumes the same run directory
    PET_*              torchrun's own settings (PET_NNODES=MIN:MAX, PET_NPROC_PER_NODE, PET_RDZV_BACKEND,
                       PET_RDZV_ENDPOINT, PET_RDZV_ID, PET_MAX_RESTARTS); none given: ``--standalone``
    LLMTJ_RDZV_WAIT_S  how long to wait for the rendezvous host's name to resolve (default 300)
    LLMTJ_METRICS_PORT serve the pod's Prometheus metrics there (monitoring/endpoint.py); labelled with
                       LLMTJ_RUN_NAME (job), LLMTJ_NAMESPACE, LLMTJ_POD_NAME; LLMTJ_RESTART_COUNT: the job's
                       restarts when this pod was made

Extra arguments are dotted config overrides (``training.max_steps=50``). Exit codes: 0 done; 2 bad input, permanent
(the config is checked before any rendezvous, and a trainer rank's ``error:`` line stops torchrun's retries at
once); 143 (130) stopped by SIGTERM (SIGINT) on purpose: the workers saved a checkpoint at a step boundary if
they had the time (torchrun gives them ``PET_SHUTDOWN_TIMEOUT`` seconds); anything else a failure worth a restart.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from .errors import UserError, run_cli


class Stop:
    """SIGTERM/SIGINT from this process's first moment to its last.

    In a container this process is PID 1, and the kernel drops a signal PID 1 has no handler for: a pod deleted while
    it checked its config or waited for the rendezvous host would train on until the grace period's SIGKILL. Before
    torchrun runs, a signal ends us at once (exit 128+N, nothing to save); after, it is forwarded to torchrun, once.
    """

    def __init__(self) -> None:
        self.signals: list[int] = []
        self.proc: subprocess.Popen | None = None
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)

    def __call__(self, signum: int, _frame: object) -> None:
        self.signals.append(signum)
        if self.proc is None:
            raise SystemExit(128 + signum)
        self.proc.send_signal(signum)


def torchrun_command(env: dict[str, str], overrides: list[str]) -> tuple[list[str], list[str]]:
    """(torchrun argv, trainer overrides) for this environment; pure, so the tests can check it."""
    from .training.runner import repo_default_config

    config = env.get("LLMTJ_CONFIG") or repo_default_config()
    runs = [f"run.output_dir={env['LLMTJ_OUTPUT_DIR']}"] if env.get("LLMTJ_OUTPUT_DIR") else []
    runs += [f"run.name={env['LLMTJ_RUN_NAME']}"] if env.get("LLMTJ_RUN_NAME") else []
    trainer_overrides = [*runs, *overrides]
    launcher = [sys.executable, "-m", "torch.distributed.run"]
    if not env.get("PET_RDZV_ENDPOINT"):
        launcher.append("--standalone")
    args = ["-m", "distributed_llm_trainer.train", "--resume", "auto"]
    if config:
        args += ["--config", config]
    return [*launcher, *args, *trainer_overrides], trainer_overrides


def check_config(env: dict[str, str], argv: list[str]) -> list[str]:
    """The torchrun command, after the trainer accepted the config (a ``UserError`` otherwise)."""
    from .config import load_config
    from .training.runner import repo_default_config

    cmd, trainer_overrides = torchrun_command(env, argv)
    load_config(env.get("LLMTJ_CONFIG") or repo_default_config(), trainer_overrides)
    return cmd


def wait_for_rendezvous_host(endpoint: str, timeout_s: float) -> None:
    """Pods start in any order: the endpoint's DNS name exists only once its pod has an address."""
    host = endpoint.rsplit(":", 1)[0]
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.getaddrinfo(host, None)
            return
        except socket.gaierror:
            if time.monotonic() > deadline:
                raise UserError("PET_RDZV_ENDPOINT", f"{host} did not resolve within {timeout_s:.0f}s; check the "
                                "job's headless Service and that worker 0 is scheduled") from None
            time.sleep(0.5)


def torchrun_env(env: Mapping[str, str]) -> dict[str, str]:
    """Settings torchrun needs to survive membership changes, unless the caller chose otherwise.

    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1: the workers' own store is made anew by each round's rank 0. Shared with
    the agent (torch's default), non-zero ranks keep the first round's address: when the world grows or rank 0 is
    lost, the next round waits 60 s for a ``MASTER_ADDR`` that nobody publishes and fails.
    """
    return {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": env.get("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")}


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when llmtj-worker dies (a session of its own no longer ties it to us)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


def supervise(cmd: list[str], error_file: Path, stop: Stop, extra_env: dict[str, str] | None = None) -> int:
    """Run torchrun; forward SIGTERM/SIGINT (``stop``); stop it as soon as a rank reports bad input (exit 2)."""
    # A session of its own: a signal sent to our whole process group (a shell's Ctrl-C, ``kill -- -PGID``, a node
    # agent's killpg) reaches torchrun only as the one copy we forward. A second SIGTERM would abort torchrun's
    # graceful shutdown midway and take the workers down before their checkpoint.
    env = {**os.environ, **torchrun_env(os.environ), **(extra_env or {}), "LLMTJ_ERROR_FILE": str(error_file)}
    proc = subprocess.Popen(cmd, env=env,
                            start_new_session=True, preexec_fn=_die_with_parent)
    stop.proc = proc  # a signal before this line exits us, and torchrun dies with us (_die_with_parent)
    while proc.poll() is None:
        if error_file.is_file() and error_file.stat().st_size:
            proc.terminate()  # torchrun would otherwise restart the group max_restarts times on the same bad input
            break
        time.sleep(0.2)
    code = proc.wait()
    if error_file.is_file() and error_file.stat().st_size:
        lines = error_file.read_text(encoding="utf-8").splitlines()
        print(lines[-1], file=sys.stderr, flush=True)
        return 2
    if stop.signals:
        return 128 + stop.signals[0]  # stopped on purpose (pod deletion, eviction, drain): not a failure
    return 1 if code in (128 + signal.SIGTERM, 128 + signal.SIGINT) else code  # those codes mean "stopped on purpose"


def set_threads(env: dict[str, str]) -> None:
    if env.get("OMP_NUM_THREADS"):
        return
    nproc = env.get("PET_NPROC_PER_NODE", "1")
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // (int(nproc) if nproc.isdigit() else 1)))


def main(argv: list[str] | None = None) -> None:
    stop = Stop()  # first: nothing before it may leave a signal unhandled
    args = sys.argv[1:] if argv is None else argv
    cmd = run_cli(lambda: check_config(dict(os.environ), args))
    set_threads(os.environ)  # type: ignore[arg-type]
    endpoint = os.environ.get("PET_RDZV_ENDPOINT")
    if endpoint:
        run_cli(lambda: wait_for_rendezvous_host(endpoint, float(os.environ.get("LLMTJ_RDZV_WAIT_S", "300"))))
    with tempfile.TemporaryDirectory(prefix="llmtj-worker-") as tmp:
        sys.exit(supervise(cmd, Path(tmp) / "error", stop, serve_metrics(os.environ, Path(tmp) / "metrics")))


def serve_metrics(env: Mapping[str, str], rank_dir: Path) -> dict[str, str]:
    """With LLMTJ_METRICS_PORT: the pod's endpoint up, and the env that makes the ranks write into ``rank_dir``.

    It listens on the pod's address (LLMTJ_METRICS_HOST, else what the hostname resolves to: the pod IP in
    Kubernetes), not on every interface: pods that share a host's network (hostNetwork, the test bed's node agent)
    keep out of each other's way. A port it cannot bind costs the metrics, never the training."""
    port = env.get("LLMTJ_METRICS_PORT")
    if not port:
        return {}
    from .monitoring.endpoint import serve

    host = env.get("LLMTJ_METRICS_HOST") or _pod_address()
    try:
        serve(host, int(port), rank_dir, env)
    except OSError as e:
        print(f"warning: metrics endpoint {host}:{port}: {e}; training goes on without it", file=sys.stderr,
              flush=True)
        return {}
    return {"PROMETHEUS_MULTIPROC_DIR": str(rank_dir)}


def _pod_address() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "0.0.0.0"
