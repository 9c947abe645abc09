"""A test-only fault point: ``LLMTJ_CRASH_AFTER=<point>:<n>`` kills this process right after the n-th <point>.

The restart tests use it to stop the operator at an exact place (after creating the first pod of a job, say) and
prove that a restarted operator neither duplicates nor loses anything. Unset, it costs one dictionary lookup.
Points (reconcile.py): ``pod-create`` (a worker made), ``pod-delete`` (a worker deleted: scale-down, restart),
``status-write`` (the job's status patched).
"""

from __future__ import annotations

import os
from collections import Counter

_seen: Counter[str] = Counter()


def point(name: str) -> None:
    spec = os.environ.get("LLMTJ_CRASH_AFTER")
    if not spec:
        return
    where, _, count = spec.partition(":")
    if where != name:
        return
    _seen[name] += 1
    if _seen[name] >= int(count or 1):
        os._exit(137)  # as abrupt as SIGKILL: no cleanup, no status write
