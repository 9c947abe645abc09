"""Conditions per the Kubernetes API conventions: one per type, lastTransitionTime kept while status holds."""

from __future__ import annotations

from typing import Any

# Each phase is announced by the condition of the same name; Created says the children exist.
TYPES = ("Created", "Running", "Restarting", "Suspended", "Succeeded", "Failed")


def upsert(conditions: list[dict[str, Any]], ctype: str, status: bool, reason: str, message: str, now: str,
           generation: int | None) -> list[dict[str, Any]]:
    """A new list with ``ctype`` set; the transition time moves only when the status flips."""
    value = "True" if status else "False"
    old = next((c for c in conditions if c.get("type") == ctype), None)
    since = old["lastTransitionTime"] if old and old.get("status") == value and old.get("lastTransitionTime") else now
    new = {"type": ctype, "status": value, "reason": reason, "message": message, "lastTransitionTime": since}
    if generation is not None:
        new["observedGeneration"] = generation
    return [c for c in conditions if c.get("type") != ctype] + [new]


def get(conditions: list[dict[str, Any]], ctype: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == ctype), None)


def is_true(conditions: list[dict[str, Any]], ctype: str) -> bool:
    c = get(conditions, ctype)
    return bool(c and c.get("status") == "True")


def for_phase(conditions: list[dict[str, Any]], phase: str, reason: str, message: str, now: str,
              generation: int | None) -> list[dict[str, Any]]:
    """The phase's own condition True with reason and message, the other phase conditions False; Created kept."""
    out = list(conditions)
    for ctype in TYPES[1:]:
        if ctype == phase:
            out = upsert(out, ctype, True, reason, message, now, generation)
        else:
            out = upsert(out, ctype, False, f"Not{ctype}", "", now, generation)
    order = {t: i for i, t in enumerate(TYPES)}
    return sorted(out, key=lambda c: order.get(c.get("type", ""), len(TYPES)))
