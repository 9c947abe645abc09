"""Times as the API writes them in status (RFC 3339, UTC, whole seconds) and back."""

from __future__ import annotations

from datetime import datetime, timezone

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def timestamp(now: datetime) -> str:
    return now.astimezone(timezone.utc).strftime(FORMAT)


def parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    return datetime.strptime(ts, FORMAT).replace(tzinfo=timezone.utc)
