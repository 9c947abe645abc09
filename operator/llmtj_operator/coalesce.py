"""One reconcile per job at a time, with a burst of triggers folded into one more pass.

A job's pods change in bursts (created, scheduled, started, ready: a dozen events for four pods) and every event
asks for a reconcile of the whole job. A trigger that arrives while a pass runs only leaves a mark and returns; the
caller running the pass makes one more when it is done, so the newest state is always reconciled, no handler thread
waits in line, and a burst costs two passes instead of one per event.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Hashable


class Coalescer:
    def __init__(self) -> None:
        self._locks: defaultdict[Hashable, threading.Lock] = defaultdict(threading.Lock)
        self._marks: dict[Hashable, bool] = {}  # key -> a pass is owed (True: with the periodic resync's extras)
        self._guard = threading.Lock()

    def run(self, key: Hashable, fn: Callable[[bool], None], resync: bool = False) -> None:
        """``fn(resync)`` for ``key`` now, or by the caller already running one for it."""
        with self._guard:
            self._marks[key] = self._marks.get(key, False) or resync
        while key in self._marks:
            lock = self._locks[key]
            if not lock.acquire(blocking=False):
                return  # the holder sees the mark after its pass
            try:
                with self._guard:
                    owed = self._marks.pop(key, None)
                if owed is not None:
                    fn(owed)
            finally:
                lock.release()

    def forget(self, key: Hashable) -> None:
        with self._guard:
            self._locks.pop(key, None)
            self._marks.pop(key, None)
