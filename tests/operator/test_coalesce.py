"""Triggers for a job while its reconcile runs fold into one more pass; no pass for a job runs twice at once."""

from __future__ import annotations

import threading
import time

from llmtj_operator.coalesce import Coalescer


def test_a_burst_during_a_pass_costs_one_more_pass_and_never_two_at_once():
    c = Coalescer()
    passes: list[bool] = []
    running = threading.Event()
    active = []

    def slow(resync: bool) -> None:
        active.append(1)
        assert len(active) == 1, "two passes at once"
        passes.append(resync)
        running.set()
        time.sleep(0.2)
        active.pop()

    first = threading.Thread(target=c.run, args=("job", slow))
    first.start()
    running.wait()
    burst = [threading.Thread(target=c.run, args=("job", slow, i == 3)) for i in range(10)]
    for t in burst:
        t.start()
    for t in burst:
        t.join()  # they return at once: the first caller owes the pass
    first.join()
    assert passes == [False, True]  # the folded pass keeps the one resync request of the burst
    c.run("job", slow)
    assert passes == [False, True, False]


def test_other_jobs_are_not_held_up():
    c = Coalescer()
    seen = []
    gate = threading.Event()
    t = threading.Thread(target=c.run, args=("a", lambda _: gate.wait(5)))
    t.start()
    c.run("b", lambda _: seen.append("b"))
    gate.set()
    t.join()
    assert seen == ["b"]
