"""Debian's ``prometheus`` (2.42), started by the tests: it scrapes the test bed's pods annotated
``prometheus.io/scrape`` as a plain Prometheus is usually set up (honouring the labels the endpoints set, as
docs/metrics.md asks), loads the chart's alert rules, and answers queries over its HTTP API.

Debian builds Prometheus without Kubernetes discovery, so a thread here plays it: every second it lists the pods
from the API server and writes, for each container port, the target and the ``__meta_kubernetes_pod_*`` labels that
``kubernetes_sd_configs`` (role: pod) would give, into a file Prometheus watches. The relabelling that turns
annotations into targets is the usual one, unchanged."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .dashboards import ROOT

RULES = ROOT / "helm" / "llm-training-operator" / "alerts" / "llmtj.rules.yaml"


def _label(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def pod_targets(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What Kubernetes pod discovery gives: one target per container port of each pod with an IP."""
    out = []
    for pod in pods:
        meta, status = pod["metadata"], pod.get("status") or {}
        if not status.get("podIP"):
            continue
        labels = {"__meta_kubernetes_namespace": meta["namespace"], "__meta_kubernetes_pod_name": meta["name"],
                  "__meta_kubernetes_pod_phase": status.get("phase", ""), "__meta_kubernetes_pod_ip": status["podIP"]}
        for k, v in (meta.get("annotations") or {}).items():
            labels[f"__meta_kubernetes_pod_annotation_{_label(k)}"] = v
        for k, v in (meta.get("labels") or {}).items():
            labels[f"__meta_kubernetes_pod_label_{_label(k)}"] = v
        for c in pod["spec"].get("containers", []):
            for port in c.get("ports") or []:
                out.append({"targets": [f"{status['podIP']}:{port['containerPort']}"],
                            "labels": {**labels, "__meta_kubernetes_pod_container_name": c["name"],
                                       "__meta_kubernetes_pod_container_port_name": port.get("name", "")}})
    return out


def scrape_config(targets: Path) -> dict[str, Any]:
    """Pods with the usual ``prometheus.io/*`` annotation relabelling; 1 s intervals keep the test short."""
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{
            "job_name": "kubernetes-pods",
            "honor_labels": True,
            "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "1s"}],
            "relabel_configs": [
                {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "action": "keep",
                 "regex": "true"},
                {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"], "regex": "(.+)",
                 "target_label": "__metrics_path__"},
                {"source_labels": ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
                 "regex": r"([^:]+)(?::\d+)?;(\d+)", "replacement": "$1:$2", "target_label": "__address__"},
                {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Pending|Succeeded|Failed",
                 "action": "drop"},
            ],
        }],
    }


class Prometheus:
    def __init__(self, workdir: Path, list_pods: Callable[[], list[dict[str, Any]]]) -> None:
        exe = shutil.which("prometheus")
        if exe is None:
            raise RuntimeError("prometheus not found: install Debian's prometheus package (.ci/run does)")
        workdir.mkdir(parents=True, exist_ok=True)
        self.targets_file, self.list_pods = workdir / "pods.json", list_pods
        self._discover()
        self.stopping = threading.Event()
        self.discovery = threading.Thread(target=self._discovery, daemon=True)
        self.discovery.start()
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(scrape_config(self.targets_file), sort_keys=False))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = workdir / "prometheus.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [exe, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1d"],
                stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
        deadline = time.monotonic() + 60
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def _discover(self) -> None:
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(pod_targets(self.list_pods())))
        os.replace(tmp, self.targets_file)

    def _discovery(self) -> None:
        while not self.stopping.wait(1.0):
            try:
                self._discover()
            except Exception:  # the API server restarting: the next round catches up
                pass

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``; the ``data`` of a success, an AssertionError with Prometheus's error otherwise."""
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            body = json.load(e)
        assert body.get("status") == "success", f"{path} {params}: {body.get('errorType')}: {body.get('error')}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's series (a scalar as one series without labels)."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def label_values(self, label: str, match: str | None) -> list[str]:
        return self.api(f"label/{label}/values", **({"match[]": match} if match else {}))

    def alerts(self) -> list[dict[str, Any]]:
        return self.api("alerts")["alerts"]

    def targets(self) -> list[dict[str, Any]]:
        return self.api("targets")["activeTargets"]

    def stop(self) -> None:
        self.stopping.set()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
