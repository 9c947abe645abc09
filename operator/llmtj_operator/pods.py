"""What the operator reads from a worker pod's status: a small, typed view of the API's pod dict."""

from __future__ import annotations

import json
import re
import signal
from dataclasses import dataclass
from typing import Any

from . import names

PERMANENT_EXIT = 2  # the trainer's exit code for bad input: never retried
STOPPED_EXITS = (128 + signal.SIGTERM, 128 + signal.SIGINT)  # llmtj-worker told to stop: not a failure
DISRUPTED_REASONS = ("Evicted", "Shutdown", "NodeShutdown", "Terminated")  # kubelet's pod reasons for such stops
EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b")  # a traceback's last line


@dataclass(frozen=True)
class PodView:
    name: str
    index: int
    phase: str  # Pending, Running, Succeeded, Failed, Unknown
    ready: bool
    deleting: bool
    exit_code: int | None
    message: str  # the trainer container's termination message (JSON summary, or the tail of its log)
    restart_count: int  # the job's restart count when this pod was created (annotation)
    node: str | None
    disrupted: bool = False  # evicted, preempted or shut down with its node (pod reason or DisruptionTarget)
    unschedulable: str = ""  # the scheduler's reason while it cannot place the pod (PodScheduled False)
    gated: bool = False  # held back from the scheduler by the operator's gang gate

    @property
    def terminal(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    @property
    def permanent_failure(self) -> bool:
        return self.phase == "Failed" and self.exit_code == PERMANENT_EXIT

    @property
    def stopped(self) -> bool:
        """Ended on purpose, not by a fault: ``llmtj-worker`` exits 128 + SIGTERM/SIGINT only when it was told to
        stop (after the workers' checkpoint), and the kubelet marks evictions and node shutdowns."""
        return self.phase == "Failed" and (self.exit_code in STOPPED_EXITS or self.disrupted)

    def error_line(self) -> str:
        """The trainer's ``error:`` line, else the last exception line of its log, else how the process ended."""
        lines = [ln.strip() for ln in self.message.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("error:")]
        if errors:
            return errors[-1]
        exceptions = [ln for ln in lines if EXCEPTION.match(ln)]
        ending = self.ending()
        return f"{exceptions[-1][:400]} ({ending})" if exceptions else ending

    def ending(self) -> str:
        code = self.exit_code
        if code is None:
            return f"pod {self.phase.lower()}"
        if code > 128:
            try:
                name = signal.Signals(code - 128).name
            except ValueError:
                name = f"signal {code - 128}"
            return f"exit code {code}: killed by {name}"
        return f"exit code {code}"

    def summary(self) -> dict[str, Any]:
        """The trainer's end-of-run JSON (step, checkpoint, ...) when it left one, else {}."""
        try:
            data = json.loads(self.message)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


def _trainer_state(pod: dict[str, Any]) -> dict[str, Any]:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == names.CONTAINER:
            return cs
    return {}


def view(pod: dict[str, Any]) -> PodView | None:
    """None for a pod that is not one of our indexed workers (never trust labels blindly)."""
    meta = pod.get("metadata") or {}
    try:
        index = int((meta.get("labels") or {}).get(names.INDEX_LABEL, ""))
    except ValueError:
        return None
    status = pod.get("status") or {}
    cs = _trainer_state(pod)
    terminated = (cs.get("state") or {}).get("terminated") or {}
    try:
        restarts = int((meta.get("annotations") or {}).get(names.RESTARTS_ANNOTATION, "0"))
    except ValueError:
        restarts = 0
    return PodView(
        name=meta.get("name", ""), index=index, phase=status.get("phase") or "Pending",
        ready=bool(cs.get("ready")), deleting=bool(meta.get("deletionTimestamp")),
        exit_code=terminated.get("exitCode"), message=terminated.get("message") or "",
        restart_count=restarts, node=(pod.get("spec") or {}).get("nodeName"),
        disrupted=status.get("reason") in DISRUPTED_REASONS or any(
            c.get("type") == "DisruptionTarget" and c.get("status") == "True" for c in status.get("conditions") or []),
        unschedulable=next((c.get("message") or "unschedulable" for c in status.get("conditions") or []
                            if c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"), ""),
        gated=any(g.get("name") == names.GANG_GATE for g in (pod.get("spec") or {}).get("schedulingGates") or []),
    )
