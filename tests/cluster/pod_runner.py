"""Runs one pod's containers as local processes and reports the pod's status, like kubelet's pod worker.

Each container is a process group: `setpriv --pdeathsig KILL unshare --mount --uts --pid ... sh -c SCRIPT`, where
SCRIPT (see pod_volumes.container_script) sets the hostname, bind-mounts /etc/hosts and the volumes, then execs
the command.
One thread runs the pod (volumes, init containers, then a thread per regular container); another patches status.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent_kube import STRATEGIC_PATCH, Kube, delete_pod, retry
from pod_env import ConfigError, EnvContext, build_env, command_line
from pod_hosts import pod_hostname, write_in_place
from pod_status import (
    ContainerRun,
    conditions,
    exit_code,
    final_phase,
    lost_container_state,
    now,
    pod_phase,
    terminated,
    termination_message,
)
from pod_volumes import (
    TERMINATION_LOG,
    PodApi,
    VolumeWait,
    always_read_only,
    container_mounts,
    container_script,
    pod_dir,
    prepare_volume,
)

log = logging.getLogger("node-agent")
RETRY_S = 2.0  # how often a pod waiting for a volume or a ConfigMap/Secret tries again
SANDBOX = [shutil.which("setpriv") or "setpriv", "--pdeathsig", "KILL"]  # a dying agent takes its containers along
# A PID namespace per container, as a runtime gives: the command is its PID 1 (it sees SIGTERM only through a handler
# of its own, as in a real container), and when PID 1 dies the kernel kills every process left inside, including
# those that started sessions of their own (torchrun's ranks), so a killed pod leaves nothing running.
UNSHARE = [shutil.which("unshare") or "unshare", "--mount", "--uts", "--pid", "--fork", "--kill-child",
           "--mount-proc", "--propagation", "private", "sh", "-c"]


@dataclass
class AgentContext:
    """What every pod runner shares with the node agent."""

    kube: Kube
    node: str
    root: Path
    host_ip: str
    api_host: str
    api_port: int
    allocatable: dict[str, str]
    hosts_for: Callable[[dict, str], str]  # (pod, pod IP) -> /etc/hosts content
    backoff_initial: float = 1.0  # kubelet: 10 s doubling to 5 min; shortened so crash-loop tests stay quick
    backoff_max: float = 30.0


def should_restart(policy: str, code: int, init: bool) -> bool:
    if policy == "Never":
        return False
    return code != 0 if (init or policy == "OnFailure") else True


class PodRunner:
    """One pod of this node, from the first start to a terminal phase, deletion or loss."""

    def __init__(self, ctx: AgentContext, pod: dict, ip: str, previous: dict | None = None) -> None:
        self.ctx, self.pod, self.ip = ctx, pod, ip
        meta, spec = pod["metadata"], pod["spec"]
        self.uid, self.name, self.namespace = meta["uid"], meta["name"], meta["namespace"]
        self.policy = spec.get("restartPolicy") or "Always"
        self.dir = pod_dir(ctx.root, pod)
        self.hosts_file = self.dir / "hosts"
        self.api = PodApi(ctx.kube)
        self.lock = threading.Lock()
        self.stop = threading.Event()  # no more starts or restarts
        self.gone = threading.Event()  # the pod object is gone or the agent is exiting: stop reporting too
        self.finished = threading.Event()
        self.dirty = threading.Event()
        self.closing = False  # the pod's thread is done: the next status written is the last
        self.reported = threading.Event()  # ... and it has been written
        self.deleted = False  # the final delete was sent (else the agent sends it if the pod is being deleted)
        self.deleting = False
        self.failed: tuple[str, str] | None = None  # (reason, message) of a pod-level failure
        self.procs: dict[str, subprocess.Popen] = {}
        self.volumes: dict[str, Path] = {}
        self.read_only: set[str] = set()
        self.sandbox = False
        self.init_done = not spec.get("initContainers")
        first = "PodInitializing" if spec.get("initContainers") else "ContainerCreating"
        self.init = [ContainerRun(c["name"], c.get("image", "")) for c in spec.get("initContainers") or []]
        self.main = [ContainerRun(c["name"], c.get("image", "")) for c in spec.get("containers") or []]
        for run in self.init + self.main:
            run.state = {"waiting": {"reason": first}}
        self.start_time = (previous or {}).get("startTime") or now()
        self.conditions: list[dict] = list((previous or {}).get("conditions") or [])
        self.skip: set[str] = set()
        if previous:
            self._resume(previous)

    def _resume(self, previous: dict) -> None:
        """Carry state over from the previous node agent, like kubelet after a reboot: restarts count, and containers
        that had completed successfully stay completed where the API forbids restarting them (init containers all
        done, OnFailure containers that exited 0); everything else runs again."""
        old = {s["name"]: s for s in (previous.get("initContainerStatuses") or [])}
        old |= {s["name"]: s for s in (previous.get("containerStatuses") or [])}

        def completed(run: ContainerRun) -> bool:
            state = (old.get(run.name) or {}).get("state") or {}
            return (state.get("terminated") or {}).get("exitCode") == 0

        keep = {run.name for run in self.main if self.policy == "OnFailure" and completed(run)}
        if self.init and all(completed(run) for run in self.init):
            keep |= {run.name for run in self.init}
            self.init_done = True
        for run in self.init + self.main:
            status = old.get(run.name)
            if not status:
                continue
            if run.name in keep:
                run.state, run.restart_count = status["state"], status.get("restartCount", 0)
            else:
                run.last_state, run.restart_count = lost_container_state(status), status.get("restartCount", 0) + 1
        self.skip = {run.name for run in self.main if run.name in keep}

    # -- control, called from the agent's loop ------------------------------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self._reporter, name=f"report-{self.name}", daemon=True).start()
        threading.Thread(target=self._run, name=f"pod-{self.name}", daemon=True).start()

    def observe(self, pod: dict) -> None:
        self.pod = pod

    def request_delete(self, grace_s: int) -> None:
        """Graceful deletion: SIGTERM now, SIGKILL after the grace period; _run then does the final delete."""
        with self.lock:
            if self.deleting:
                return
            self.deleting = True
            self.stop.set()
        log.info("pod %s/%s: deleting (grace %ss)", self.namespace, self.name, grace_s)
        self._signal(signal.SIGTERM if grace_s > 0 else signal.SIGKILL)
        if grace_s > 0:
            timer = threading.Timer(grace_s, self._signal, args=(signal.SIGKILL,))
            timer.daemon = True
            timer.start()

    def kill(self) -> None:
        """The pod vanished from the API or the agent exits: SIGKILL everything, report nothing more."""
        with self.lock:
            self.stop.set()
            self.gone.set()
        self._signal(signal.SIGKILL)
        self.dirty.set()

    def refresh_hosts(self, content: str) -> None:
        if self.hosts_file.exists() and not self.finished.is_set():
            write_in_place(self.hosts_file, content)

    def _signal(self, sig: int) -> None:
        with self.lock:
            pids = [p.pid for p in self.procs.values()]
        for pid in pids:
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                pass

    # -- the pod's life ------------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self._prepare() and self._run_init():
                self._run_main()
        except Exception as exc:  # a malformed pod must not take the agent down
            # ValueError means an unsupported or malformed spec: no traceback needed for those
            (log.error if isinstance(exc, ValueError) else log.exception)(
                "pod %s/%s failed: %s", self.namespace, self.name, exc
            )
            self.failed = ("NodeAgentError", f"{type(exc).__name__}: {exc}")
            for run in self.init + self.main:  # containers that never ran show why (kubectl prints their reason)
                if "waiting" in run.state:
                    run.state = terminated(128, self.start_time, now(), self.failed[1])
                    run.state["terminated"]["reason"] = "NodeAgentError"
        finally:
            self.stop.set()
            self._signal(signal.SIGKILL)
            self.closing = True
            self.dirty.set()
            if self.deleting and not self.gone.is_set():
                self._final_delete()
            self.finished.set()

    def _prepare(self) -> bool:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_in_place(self.hosts_file, self.ctx.hosts_for(self.pod, self.ip))
        while not self.stop.is_set():
            try:
                for vol in self.pod["spec"].get("volumes") or []:
                    self.volumes[vol["name"]] = prepare_volume(
                        self.pod, vol, self.ctx.root, self.api, self.ip, self.ctx.host_ip, self.ctx.allocatable
                    )
                    if always_read_only(vol):
                        self.read_only.add(vol["name"])
                self.sandbox = True
                self._report()
                return True
            except VolumeWait as exc:
                log.info("pod %s/%s waits for a volume: %s", self.namespace, self.name, exc)
                for run in self.init + self.main:
                    run.state = {"waiting": {"reason": "ContainerCreating", "message": str(exc)}}
                self._report()
                self.stop.wait(RETRY_S)
        return False

    def _run_init(self) -> bool:
        if self.init_done:  # no init containers, or all had completed before an agent restart
            return True
        specs = self.pod["spec"].get("initContainers") or []
        if any(spec.get("restartPolicy") == "Always" for spec in specs):  # better a clear failure than a hang
            raise ValueError("sidecar init containers (restartPolicy: Always) are not supported by the node agent")
        for spec, run in zip(specs, self.init):
            if not self._container_loop(spec, run, init=True):
                if not self.stop.is_set():
                    self.failed = ("", "")  # restartPolicy Never: the pod fails; kubelet sets no pod-level reason
                return False
        self.init_done = True
        for run in self.main:
            run.state = {"waiting": {"reason": "ContainerCreating"}}
        self._report()
        return True

    def _run_main(self) -> None:
        specs = self.pod["spec"].get("containers") or []
        threads = [
            threading.Thread(target=self._container_loop, args=(spec, run, False), name=f"c-{self.name}-{run.name}")
            for spec, run in zip(specs, self.main)
            if run.name not in self.skip
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _container_loop(self, spec: dict, run: ContainerRun, init: bool) -> bool:
        """Run a container until it need not restart; True when its last run exited 0."""
        delay = self.ctx.backoff_initial
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                code = self._run_once(spec, run)
            except Exception as exc:  # e.g. Popen failing: report it like kubelet's StartError rather than hang
                log.exception("pod %s/%s: container %s could not run", self.namespace, self.name, run.name)
                run.state = terminated(128, now(), now(), f"{type(exc).__name__}: {exc}")
                run.state["terminated"]["reason"] = "StartError"
                self._report()
                code = 128
            if code is None:  # could not start yet (missing ConfigMap/Secret): wait and try again
                self.stop.wait(RETRY_S)
                continue
            if self.stop.is_set() or not should_restart(self.policy, code, init):
                return code == 0
            if time.monotonic() - began > 2 * self.ctx.backoff_max:
                delay = self.ctx.backoff_initial  # a container that ran a good while starts its backoff afresh
            with self.lock:
                run.last_state = run.state
                msg = f"back-off {delay:g}s restarting failed container={run.name} pod={self.name}_{self.namespace}"
                run.state = {"waiting": {"reason": "CrashLoopBackOff", "message": msg}}
            self._report()
            if self.stop.wait(delay):
                return False
            delay = min(delay * 2, self.ctx.backoff_max)
            run.restart_count += 1
        return False

    def _run_once(self, spec: dict, run: ContainerRun) -> int | None:
        """Start the container once and wait for it; its exit code, or None when it cannot be configured yet."""
        hostname = pod_hostname(self.pod)
        ctx = EnvContext(
            pod_ip=self.ip,
            host_ip=self.ctx.host_ip,
            hostname=hostname,
            api_host=self.ctx.api_host,
            api_port=self.ctx.api_port,
            path_prefix=os.path.dirname(sys.executable),
            agent_env=os.environ,
            allocatable=self.ctx.allocatable,
            lookup=self.api.text(self.namespace),
        )
        started = now()
        try:
            env = build_env(self.pod, spec, ctx)
            argv = command_line(spec, env)
            mounts = container_mounts(spec, self.volumes, self.read_only, env)
        except (ConfigError, VolumeWait) as exc:
            run.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
            self._report()
            return None
        except (ValueError, KeyError, TypeError) as exc:  # cannot ever start: kubelet's StartError
            run.state = terminated(128, started, now(), str(exc))
            run.state["terminated"]["reason"] = "StartError"
            self._report()
            return 128
        log_path, message_file = self.dir / f"{run.name}.log", self.dir / f"{run.name}.termination-log"
        message_file.write_bytes(b"")
        target = spec.get("terminationMessagePath") or TERMINATION_LOG
        script = container_script(
            hostname, self.hosts_file, mounts, (message_file, target), spec.get("workingDir"), argv
        )
        with open(log_path, "ab") as out, self.lock:
            if self.stop.is_set():
                return None
            offset = out.tell()
            proc = subprocess.Popen(
                [*SANDBOX, *UNSHARE, script],
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.dir, start_new_session=True,
            )  # fmt: skip
            self.procs[run.name], run.pid = proc, proc.pid
            run.state = {"running": {"startedAt": started}}
        log.info("pod %s/%s: container %s started (pid %d)", self.namespace, self.name, run.name, proc.pid)
        self._report()
        code = exit_code(proc.wait())
        with self.lock:
            self.procs.pop(run.name, None)
        policy = spec.get("terminationMessagePolicy")
        message = termination_message(policy, code, message_file, log_path, offset)
        run.state = terminated(code, started, now(), message, f"local://{proc.pid}")
        log.info("pod %s/%s: container %s exited with %d", self.namespace, self.name, run.name, code)
        self._report()
        return code

    # -- status --------------------------------------------------------------------------------------------------

    def _phase(self) -> str:
        if self.failed is not None:
            return "Failed"
        if self.closing and self.deleting:
            return final_phase(self.main)
        return pod_phase(self.policy, self.init_done, self.main)

    def status_patch(self) -> dict:
        phase = self._phase()
        self.conditions = conditions(phase, self.sandbox, self.init_done, self.main, self.conditions)
        status: dict = {
            "phase": phase,
            "hostIP": self.ctx.host_ip,
            "hostIPs": [{"ip": self.ctx.host_ip}],
            "startTime": self.start_time,
            "conditions": self.conditions,
            "containerStatuses": [c.status() for c in self.main],
        }
        if self.init:
            status["initContainerStatuses"] = [c.status() for c in self.init]
        if self.sandbox:
            status["podIP"], status["podIPs"] = self.ip, [{"ip": self.ip}]
        if self.failed and self.failed[0]:
            status["reason"], status["message"] = self.failed
        return {"status": status}

    def _report(self) -> None:
        self.dirty.set()

    def _reporter(self) -> None:
        """Patch the latest status whenever it changed; bursts coalesce, API outages are retried."""
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status"
        while True:
            self.dirty.wait()
            self.dirty.clear()
            if self.gone.is_set():
                return
            with self.lock:
                body = self.status_patch()
            result = retry(
                f"status of {self.namespace}/{self.name}",
                lambda: self.ctx.kube.patch(path, body, STRATEGIC_PATCH),
                stop=self.gone,
                give_up_on=(404,),
            )
            if result is None and not self.gone.is_set():
                log.warning("pod %s/%s: status not written", self.namespace, self.name)
            if self.closing and not self.dirty.is_set():
                self.reported.set()
                return

    def _final_delete(self) -> None:
        """kubelet's last word on a deleted pod: once its containers are gone, remove the object (grace 0)."""
        self.reported.wait(30)
        delete_pod(self.ctx.kube, self.pod, self.gone)
        self.deleted = True
