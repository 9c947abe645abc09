"""Process and state helpers of the test bed: detached processes recorded in DIR/state.json, loopback ports.

Each process is started in its own session (pid == process group id) so that stopping it takes its children too,
and is recorded with its /proc start time so that a pid reused by some other process is never signalled.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any


def stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a live pid from /proc; the start time tells a reused pid from ours."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return fields[0], fields[19]


def alive(proc: dict[str, Any]) -> bool:
    pid = proc.get("pid")
    if not pid:
        return False
    try:  # reap it if it is our child, else a zombie would look alive
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    st = stat(pid)
    return st is not None and st[0] != "Z" and st[1] == proc["start"]


def killpg(proc: dict[str, Any], sig: int) -> None:
    pid = proc.get("pid")
    st = stat(pid) if pid else None
    if not pid or (st is not None and st[1] != proc["start"]):
        return  # never started, or the pid now belongs to someone else
    try:  # the whole group (pid == pgid: start_new_session), so its children go too
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def terminate(procs: list[dict[str, Any]], grace: float = 5.0) -> None:
    for p in procs:
        killpg(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(alive(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    for p in procs:  # stragglers, and whatever a leader left behind in its group
        killpg(p, signal.SIGKILL)
    while any(alive(p) for p in procs):
        time.sleep(0.05)
    for p in procs:
        p["pid"] = None


def spawn(d: Path, name: str, cmd: list[str]) -> dict[str, Any]:
    (d / "logs").mkdir(parents=True, exist_ok=True)
    with open(d / "logs" / f"{name}.log", "ab") as out:  # append: a restart keeps the earlier log
        out.write(f"\n==== {time.strftime('%H:%M:%S')} {' '.join(cmd)}\n".encode())
        out.flush()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True, cwd=d)
    st = stat(p.pid)
    return {"pid": p.pid, "start": st[1] if st else "", "cmd": cmd}


def free_port(preferred: int | None, taken: set[int]) -> int:
    """``preferred`` when it is free, else one the kernel picks (and that this run has not picked already)."""
    for port in ([preferred] if preferred and preferred not in taken else []) + [0] * 20:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            if s.getsockname()[1] not in taken:
                return s.getsockname()[1]
    raise RuntimeError("no free loopback port")


def load_state(d: Path) -> dict[str, Any]:
    f = d / "state.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def save_state(d: Path, state: dict[str, Any]) -> None:
    tmp = d / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, d / "state.json")
