"""Pod status as kubelet reports it: container states, the phase, conditions, termination messages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

MAX_MESSAGE_BYTES = 4096  # kubelet reads at most this much of terminationMessagePath
LOG_TAIL_BYTES, LOG_TAIL_LINES = 2048, 80  # FallbackToLogsOnError: kubelet's tail of the container log
TERMINAL = ("Succeeded", "Failed")
OWN_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def exit_code(returncode: int) -> int:
    """Popen's returncode as a container exit code: death by signal N is 128+N (137 for SIGKILL)."""
    return 128 - returncode if returncode < 0 else returncode


def terminated(code: int, started: str, finished: str, message: str = "", container_id: str = "") -> dict:
    state = {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "startedAt": started}
    state["finishedAt"] = finished
    if message:
        state["message"] = message
    if container_id:
        state["containerID"] = container_id
    return {"terminated": state}


@dataclass
class ContainerRun:
    """What the agent knows about one container; the runner mutates it under its lock."""

    name: str
    image: str = ""
    state: dict = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict = field(default_factory=dict)
    restart_count: int = 0
    pid: int | None = None

    @property
    def running(self) -> bool:
        return "running" in self.state

    @property
    def exit_code(self) -> int | None:
        return self.state["terminated"]["exitCode"] if "terminated" in self.state else None

    def status(self) -> dict:
        out = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": self.running,
            "started": self.running,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.pid:
            out["containerID"] = f"local://{self.pid}"
        return out


def pod_phase(restart_policy: str, init_done: bool, containers: Iterable[ContainerRun]) -> str:
    """kubelet's getPhase for regular containers (a waiting container with a last termination counts as stopped)."""
    if not init_done:
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for c in containers:
        if c.running:
            running += 1
        elif "terminated" in c.state:
            stopped += 1
            succeeded += c.exit_code == 0
        elif "terminated" in c.last_state:
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if restart_policy == "Always" or stopped == 0:
        return "Running" if stopped else "Pending"
    if stopped == succeeded:
        return "Succeeded"
    return "Failed" if restart_policy == "Never" else "Running"


def final_phase(containers: Iterable[ContainerRun]) -> str:
    """The phase of a pod whose containers were all stopped for deletion (kubelet makes deleted pods terminal)."""
    return "Succeeded" if all(c.exit_code == 0 for c in containers) else "Failed"


def _condition(kind: str, ok: bool, reason: str = "", message: str = "") -> dict:
    cond = {"type": kind, "status": "True" if ok else "False"}
    if reason and not ok:
        cond["reason"] = reason
    if message and not ok:
        cond["message"] = message
    return cond


def conditions(
    phase: str, sandbox: bool, init_done: bool, containers: list[ContainerRun], prev: list[dict]
) -> list[dict]:
    """The kubelet-owned conditions; lastTransitionTime is kept from `prev` while a condition's status holds."""
    unready = [c.name for c in containers if not c.running]
    if phase in TERMINAL:
        ready_reason, ready_msg = "PodCompleted", ""
    else:
        ready_reason, ready_msg = "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]"
    all_ready = not unready and phase == "Running"
    new = [
        _condition("PodReadyToStartContainers", sandbox),
        _condition(
            "Initialized", init_done or phase in TERMINAL, "ContainersNotInitialized", "init containers pending"
        ),
        _condition("ContainersReady", all_ready, ready_reason, ready_msg),
        _condition("Ready", all_ready, ready_reason, ready_msg),
    ]
    old = {c.get("type"): c for c in prev}
    stamp = now()
    for cond in new:
        before = old.get(cond["type"])
        same = before is not None and before.get("status") == cond["status"]
        cond["lastTransitionTime"] = before.get("lastTransitionTime", stamp) if same else stamp
        cond["lastProbeTime"] = None
    return new


def termination_message(policy: str | None, code: int, message_file: Path | None, log: Path, log_offset: int) -> str:
    """kubelet's rule: the terminationMessagePath file if non-empty, else (FallbackToLogsOnError and a non-zero
    exit) the tail of this run's log: at most 80 lines and 2048 bytes."""
    if message_file is not None and message_file.exists():
        with open(message_file, "rb") as fh:
            text = fh.read(MAX_MESSAGE_BYTES).decode(errors="replace")
        if text:
            return text
    if policy != "FallbackToLogsOnError" or code == 0 or not log.exists():
        return ""
    with open(log, "rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(max(log_offset, size - LOG_TAIL_BYTES))
        tail = fh.read().decode(errors="replace")
    return "".join(tail.splitlines(keepends=True)[-LOG_TAIL_LINES:])


def lost_container_state(status: dict) -> dict:
    """A container that was running or waiting when the node agent died: kubelet's ContainerStatusUnknown."""
    state = status.get("state") or {}
    if "terminated" in state:
        return state
    started = (state.get("running") or {}).get("startedAt")
    out = {
        "exitCode": 137,
        "reason": "ContainerStatusUnknown",
        "message": "The container could not be located when the node agent restarted",
        "finishedAt": now(),
    }
    if started:
        out["startedAt"] = started
    return {"terminated": out}


def lost_pod_status(pod: dict) -> dict:
    """Status patch for a restartPolicy=Never pod whose processes died with the previous node agent: Failed."""
    status = pod.get("status") or {}

    def lose(statuses: list[dict] | None) -> list[dict]:
        return [{**s, "state": lost_container_state(s), "ready": False, "started": False} for s in statuses or []]

    prev = {c.get("type"): c for c in status.get("conditions") or []}
    conds = []
    for kind in ("ContainersReady", "Ready"):
        cond = _condition(kind, False, "PodFailed", "the node agent restarted; the pod's processes were lost")
        before = prev.get(kind) or {}
        cond["lastTransitionTime"] = before.get("lastTransitionTime") if before.get("status") == "False" else now()
        conds.append(cond)
    return {
        "status": {
            "phase": "Failed",
            "reason": "NodeLost",
            "message": "The node agent restarted and the pod's processes were lost",
            "conditions": conds,
            "containerStatuses": lose(status.get("containerStatuses")),
            "initContainerStatuses": lose(status.get("initContainerStatuses")),
        }
    }
