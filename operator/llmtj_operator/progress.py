"""Live progress for status (step, loss, tokens/s, the newest checkpoint's time), read from the workers' own metrics
endpoints (docs/metrics.md), so that training pods need no write access to the API.

At most every ``LLMTJ_PROGRESS_SECONDS`` (default 30) per running job, the operator GETs ``podIP:9450/metrics`` of
each ready worker (in parallel, 2 s timeout each) and folds the samples:

    step, loss       job-wide: the values of the rank furthest along
    tokensPerSecond  per-rank amounts: their sum over every rank seen
    lastCheckpointTime  the newest checkpoint save any rank reports (rank 0 writes under DDP)

A pod that does not answer (starting, its endpoint off) is skipped; no answer at all leaves status as it was.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from . import names
from .clock import timestamp

PROGRESS_SECONDS = float(os.environ.get("LLMTJ_PROGRESS_SECONDS", "30"))
TIMEOUT_SECONDS = 2.0
WANTED = {"llmtj_step", "llmtj_train_loss", "llmtj_tokens_per_second", "llmtj_checkpoint_last_timestamp_seconds"}
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="progress")
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # pod IPs: never through an HTTP proxy
_last: dict[tuple[str, str], float] = {}
_lock = threading.Lock()


def due(namespace: str, name: str, now: float | None = None) -> bool:
    """True at most once per PROGRESS_SECONDS for a job (the first call: at once)."""
    now = time.monotonic() if now is None else now
    with _lock:
        if now - _last.get((namespace, name), -PROGRESS_SECONDS) < PROGRESS_SECONDS:
            return False
        _last[(namespace, name)] = now
        return True


def forget(namespace: str, name: str) -> None:
    with _lock:
        _last.pop((namespace, name), None)


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """The samples progress needs from one endpoint's page."""
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text)
            for s in family.samples if s.name in WANTED]


def fold(pages: list[list[tuple[str, dict[str, str], float]]]) -> dict[str, Any]:
    """Status fields from the samples of every endpoint that answered (pure)."""
    ranks: dict[str, dict[str, float]] = {}
    for page in pages:
        for name, labels, value in page:
            ranks.setdefault(f"{labels.get('pod')}/{labels.get('rank')}", {})[name] = value
    if not ranks:
        return {}
    lead = max(ranks.values(), key=lambda r: r.get("llmtj_step", -1))
    out: dict[str, Any] = {}
    if "llmtj_step" in lead:
        out["step"] = int(lead["llmtj_step"])
    if "llmtj_train_loss" in lead:
        out["loss"] = round(lead["llmtj_train_loss"], 4)
    rates = [r["llmtj_tokens_per_second"] for r in ranks.values() if "llmtj_tokens_per_second" in r]
    if rates:
        out["tokensPerSecond"] = round(sum(rates), 1)
    saved = [r["llmtj_checkpoint_last_timestamp_seconds"] for r in ranks.values()
             if "llmtj_checkpoint_last_timestamp_seconds" in r]
    if saved:
        out["lastCheckpointTime"] = timestamp(datetime.fromtimestamp(max(saved), timezone.utc))
    return out


def _scrape(ip: str) -> list[tuple[str, dict[str, str], float]]:
    try:
        with _http.open(f"http://{ip}:{names.METRICS_PORT}/metrics", timeout=TIMEOUT_SECONDS) as r:
            return samples(r.read().decode())
    except (OSError, ValueError):  # not up yet, gone, or not a metrics page
        return []


def read(pod_ips: list[str]) -> dict[str, Any]:
    """Progress of a job from its ready workers' endpoints; {} when none answered."""
    return fold(list(_pool.map(_scrape, pod_ips))) if pod_ips else {}
