"""The reconcile queue: a key waits at most once, never runs on two workers at once, and one added during its pass
runs again after it; other keys are not held up."""

from __future__ import annotations

import threading
import time

from llmtj_operator.workqueue import WorkQueue


def _drain(q: WorkQueue, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while q.pending() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_burst_during_a_pass_costs_one_more_pass_and_never_two_at_once():
    passes: list[tuple[str, bool]] = []
    running, release = threading.Event(), threading.Event()
    active: list[int] = []

    def handle(key, flag):
        active.append(1)
        assert len(active) == 1, "two passes of one key at once"
        passes.append((key, flag))
        running.set()
        release.wait(5)
        active.pop()

    q = WorkQueue(handle, workers=4)
    q.start()
    q.add("job")
    assert running.wait(5)
    for i in range(10):
        q.add("job", flag=i == 3)  # four idle workers, yet none takes the key while it runs
    time.sleep(0.1)
    assert passes == [("job", False)] and q.pending() == 1
    release.set()
    _drain(q)
    time.sleep(0.1)
    assert passes == [("job", False), ("job", True)]  # the folded pass keeps the burst's one flag
    q.add("job")
    _drain(q)
    time.sleep(0.1)
    assert passes == [("job", False), ("job", True), ("job", False)]
    q.stop()


def test_waiting_keys_are_taken_once_in_order_of_arrival():
    seen: list[str] = []
    gate = threading.Event()
    q = WorkQueue(lambda key, _: (gate.wait(5), seen.append(key)), workers=1)
    for key in ["a", "b", "a", "c", "b"]:
        q.add(key)
    q.start()
    gate.set()
    _drain(q)
    time.sleep(0.1)
    assert seen == ["a", "b", "c"]
    q.stop()


def test_other_keys_are_not_held_up_and_a_failing_pass_does_not_stop_a_worker():
    seen: list[str] = []
    gate = threading.Event()

    def handle(key, _):
        if key == "slow":
            gate.wait(5)
        if key == "bad":
            raise RuntimeError("boom")
        seen.append(key)

    q = WorkQueue(handle, workers=2)
    q.start()
    q.add("slow")
    time.sleep(0.05)
    q.add("bad")
    q.add("fast")
    deadline = time.monotonic() + 5
    while "fast" not in seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == ["fast"]  # "bad" failed on the free worker, which then took "fast"
    gate.set()
    _drain(q)
    time.sleep(0.1)
    assert sorted(seen) == ["fast", "slow"]
    q.stop()
