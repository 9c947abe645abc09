"""Which replica acts, read from kopf's peering object the way kopf reads it: the resync loop of a standby must stay
as quiet as kopf keeps its watches."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from llmtj_operator.peering import acting, priority

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=timezone.utc)


def record(prio: int, seen_s_ago: float, lifetime: int = 10) -> dict:
    return {"priority": prio, "lifetime": lifetime, "lastseen": (NOW - timedelta(seconds=seen_s_ago)).isoformat()}


def test_the_oldest_live_replica_acts_and_the_others_stand_by():
    old, new = priority(now=1000.0), priority(now=2000.0)
    assert old > new  # an older start ranks higher
    records = {"op-a": record(old, 2), "op-b": record(new, 1)}
    assert acting(records, "op-a", old, NOW) and not acting(records, "op-b", new, NOW)


def test_a_dead_record_does_not_hold_the_standby_back():
    records = {"op-a": record(900, 11), "op-b": record(100, 1)}  # op-a's keep-alive expired (lifetime 10 s)
    assert acting(records, "op-b", 100, NOW)
    assert not acting({"op-a": record(900, 9), "op-b": record(100, 1)}, "op-b", 100, NOW)


def test_equal_priorities_all_pause_and_foreign_entries_are_ignored():
    assert not acting({"op-a": record(5, 1), "op-b": record(5, 1)}, "op-b", 5, NOW)
    assert acting({"op-b": record(5, 1), "note": "x", "bad": {"priority": 9}}, "op-b", 5, NOW)
    assert acting({}, "op-a", 1, NOW)  # no peering object yet: kopf runs, and so does the loop
