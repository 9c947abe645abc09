"""What the Prometheus metrics cost: pipeline step time with the rank metrics on vs off, and a scrape of the endpoint.

    python bench/metrics_overhead.py [--config config/default.yaml] [--steps 200] [--warmup 20] [--rounds 3]
        [section.key=value ...]

Each round runs ``scripts/benchmark.py --variants pipeline`` twice in fresh processes, metrics off and on (the order
alternates between rounds); "on" is what a pod runs: ``PROMETHEUS_MULTIPROC_DIR`` set, so the ranks write their
metrics, while this process serves that folder (monitoring/endpoint.py) and scrapes it every 0.5 s. Prints one JSON
object: median step time per variant over the rounds' medians, ``ratio_on_off`` (target <= 1.01), and the scrape's
latency (p50, max) and size. The A/B ratio of small, fast models is within the rounds' noise (+-10% on a shared
2-core host), so it also times the per-step metrics work itself in this process (``callback_us_per_step``: the
rank callback's ``on_train_batch_end`` over 20000 steps, multiprocess files included) and gives it as a share of the
"off" step time (``callback_share_of_step``), which does not drift with the host.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from distributed_llm_trainer.monitoring.endpoint import serve  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(config: str, steps: int, warmup: int, overrides: list[str], metrics: bool) -> tuple[dict, list[tuple]]:
    """One pipeline benchmark in a fresh process: (its JSON line, [(scrape seconds, bytes)] while it ran)."""
    env = {**os.environ, "LLMTJ_RUN_NAME": "bench", "LLMTJ_POD_NAME": "bench-worker-0"}
    scrapes: list[tuple[float, int]] = []
    done = threading.Event()
    with tempfile.TemporaryDirectory(prefix="llmtj-metrics-") as d:
        if metrics:
            env["PROMETHEUS_MULTIPROC_DIR"] = d
            port = free_port()
            serve("127.0.0.1", port, Path(d), env)

            def scrape_loop() -> None:
                while not done.wait(0.5):
                    t0 = time.perf_counter()
                    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
                    if b"llmtj_step" in body:  # once the ranks have written something
                        scrapes.append((time.perf_counter() - t0, len(body)))

            threading.Thread(target=scrape_loop, daemon=True).start()
        cmd = [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--config", config, "--variants", "pipeline",
               "--steps", str(steps), "--warmup", str(warmup), *overrides]
        try:
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        finally:
            done.set()
    line = next(json.loads(x) for x in out.splitlines() if x.startswith("{"))
    return line, scrapes


def callback_cost(steps: int = 20000) -> float:
    """Seconds the rank metrics add per optimizer step (values written to a multiprocess folder, as in a pod)."""
    import types

    with tempfile.TemporaryDirectory(prefix="llmtj-metrics-") as d:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = d  # before the metric objects exist (import-time mode)
        from distributed_llm_trainer.monitoring.prometheus import RankMetrics

        train = types.SimpleNamespace(tokens_per_step=4096, history=[])
        callback = RankMetrics(train, interval=10, model="bench", checkpoint_every=100)  # type: ignore[arg-type]
        trainer = types.SimpleNamespace(global_rank=0, global_step=0, world_size=1, max_steps=10**9)
        callback.on_train_start(trainer, types.SimpleNamespace())  # type: ignore[arg-type]
        t0 = time.perf_counter()
        for step in range(1, steps + 1):
            trainer.global_step = step
            callback.on_train_batch_end(trainer, None, None, None, step)  # type: ignore[arg-type]
        cost = (time.perf_counter() - t0) / steps
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
    return cost


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "config" / "default.yaml"))
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("overrides", nargs="*")
    a = p.parse_args()
    medians: dict[str, list[float]] = {"off": [], "on": []}
    scrapes: list[tuple[float, int]] = []
    for r in range(a.rounds):
        for variant in (("off", "on") if r % 2 == 0 else ("on", "off")):
            line, seen = run(a.config, a.steps, a.warmup, a.overrides, variant == "on")
            medians[variant].append(line["step_time_median_s"])
            scrapes += seen
    off, on = statistics.median(medians["off"]), statistics.median(medians["on"])
    callback = callback_cost()
    latency = sorted(s for s, _ in scrapes)
    print(json.dumps({
        "machine": f"{os.cpu_count()} CPUs", "config": a.config, "overrides": a.overrides, "steps": a.steps,
        "rounds": a.rounds, "step_time_median_s": {"off": off, "on": on}, "round_medians_s": medians,
        "ratio_on_off": on / off,
        "callback_us_per_step": round(callback * 1e6, 2), "callback_share_of_step": round(callback / off, 5),
        "scrape": {"count": len(latency),
                   "latency_ms_p50": round(1000 * latency[len(latency) // 2], 2) if latency else None,
                   "latency_ms_max": round(1000 * latency[-1], 2) if latency else None,
                   "bytes": max((b for _, b in scrapes), default=None)},
    }))


if __name__ == "__main__":
    main()
