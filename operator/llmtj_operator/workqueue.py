"""The reconcile queue: client-go's work queue in small.

Every trigger (a job's watch event, a pod's, the periodic resync) adds the job's key; a fixed set of worker threads
takes keys in order of arrival. A key is waiting at most once, however many triggers came (a pod start is a dozen
events), and never runs on two workers at once: one added while its pass runs is taken again once that pass is done,
so the newest state is always reconciled. A flag added with the key (the resync's "re-apply the children too") is
kept until the pass that honours it.

    queue = WorkQueue(lambda key, flag: ..., workers=16); queue.start(); queue.add(("ns", "job"))
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable

log = logging.getLogger(__name__)


class WorkQueue:
    def __init__(self, handle: Callable[[Hashable, bool], None], workers: int, name: str = "reconcile") -> None:
        self.handle, self.workers, self.name = handle, workers, name
        self._cv = threading.Condition()
        self._order: deque[Hashable] = deque()  # keys ready for a worker, oldest first
        self._dirty: dict[Hashable, bool] = {}  # keys owed a pass (waiting, or re-added while running) -> flag
        self._running: set[Hashable] = set()
        self._stopped = False

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
                   for i in range(self.workers)]
        for t in threads:
            t.start()
        return threads

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify_all()

    def add(self, key: Hashable, flag: bool = False) -> None:
        with self._cv:
            if key in self._dirty:
                self._dirty[key] = self._dirty[key] or flag
                return
            self._dirty[key] = flag
            if key not in self._running:  # a running key goes back in line when its pass ends
                self._order.append(key)
                self._cv.notify()

    def pending(self) -> int:
        """Keys owed a pass (waiting or re-added while running)."""
        with self._cv:
            return len(self._dirty)

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._order and not self._stopped:
                    self._cv.wait()
                if self._stopped:
                    return
                key = self._order.popleft()
                flag = self._dirty.pop(key)
                self._running.add(key)
            try:
                self.handle(key, flag)
            except Exception:  # the periodic resync tries the key again
                log.exception("reconcile of %s failed", key)
            finally:
                with self._cv:
                    self._running.discard(key)
                    if key in self._dirty:
                        self._order.append(key)
                        self._cv.notify()
