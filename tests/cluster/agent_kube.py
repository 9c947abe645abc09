"""A thin JSON-over-REST client for the node agent, built on the official client's connection and auth handling.

The agent works on plain dicts: deserialising the generated model classes is slow on a 2-core machine, and the
agent needs control over the patch content type (strategic merge for statuses, as kubelet sends).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config

log = logging.getLogger("node-agent")
T = TypeVar("T")

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class KubeError(Exception):
    """An API error; status 0 means the server could not be reached (it may be restarting)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.status in (0, 409, 429) or self.status >= 500


class Kube:
    """Authenticated requests against the API server; every method returns the decoded JSON body."""

    def __init__(self, kubeconfig: str, timeout_s: float = 15.0) -> None:
        conf = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=conf)
        conf.retries = False  # the agent retries itself; urllib3's retries would hide a restarting API server
        self._api = client.ApiClient(conf)
        self._timeout = timeout_s

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = JSON,
    ) -> dict:
        headers = {"Content-Type": content_type, "Accept": JSON}
        method, url, headers, body, _ = self._api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            resp = self._api.call_api(method, url, header_params=headers, body=body, _request_timeout=self._timeout)
            data = resp.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(0, f"{method} {path}: {exc}") from exc
        if not 200 <= resp.status < 300:
            raise KubeError(resp.status, f"{method} {path}: {data[:500].decode(errors='replace')}")
        return json.loads(data) if data else {}

    def get(self, path: str, **query: str) -> dict:
        return self.request("GET", path, query=query)

    def get_or_none(self, path: str) -> dict | None:
        try:
            return self.get(path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def post(self, path: str, body: dict) -> dict:
        return self.request("POST", path, body=body)

    def patch(self, path: str, body: dict, content_type: str = MERGE_PATCH) -> dict:
        return self.request("PATCH", path, body=body, content_type=content_type)

    def delete(self, path: str, body: dict | None = None) -> dict:
        return self.request("DELETE", path, body=body)


def retry(
    what: str,
    fn: Callable[[], T],
    stop: threading.Event | None = None,
    attempts: int = 0,
    give_up_on: tuple[int, ...] = (),
) -> T | None:
    """Call fn until it succeeds; retry connection errors, conflicts and 5xx with a short capped backoff.

    attempts=0 retries until `stop` is set.  Errors with a status in give_up_on (e.g. 404: the object is gone) and
    non-retryable errors end the loop: they are logged and None is returned, because the agent must keep running.
    """
    delay, tries = 0.2, 0
    while True:
        tries += 1
        try:
            return fn()
        except KubeError as exc:
            if exc.status in give_up_on or not exc.retryable:
                if exc.status not in give_up_on:
                    log.warning("%s failed: %s", what, exc)
                return None
            if (attempts and tries >= attempts) or (stop is not None and stop.is_set()):
                log.warning("%s failed after %d tries: %s", what, tries, exc)
                return None
            log.debug("%s: %s; retrying", what, exc)
        if stop is not None:
            if stop.wait(delay):
                return None
        else:
            time.sleep(delay)
        delay = min(delay * 2, 2.0)


def delete_pod(kube: Kube, pod: dict, stop: threading.Event | None = None) -> None:
    """kubelet's final delete of a pod whose containers are gone: grace 0, only this incarnation (uid)."""
    meta = pod["metadata"]
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
    path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
    retry(
        f"delete {meta['namespace']}/{meta['name']}", lambda: kube.delete(path, body), stop=stop, give_up_on=(404, 409)
    )
