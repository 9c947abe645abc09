"""The operator's cache against the real API server: the pod watch fills it, and a fresh listing catches up after a gap;
a pass sees its own writes before any watch event (no duplicate pod, no phantom restart), and a pass on an outdated
copy of the job is refused and done again on the server's copy instead of writing old status over new."""

from __future__ import annotations

import time

import pytest

from llmtj_operator import informer as informer_module
from llmtj_operator.cache import Cache
from llmtj_operator.defaults import JobDefaults
from llmtj_operator.informer import PodInformer, Stale
from llmtj_operator.kube import Conflict, Kube
from llmtj_operator.reconcile import reconcile

from .jobs import apply, deployed_operator_paused, example, get_job, pods, poll

pytestmark = [pytest.mark.cluster]


def _pod(namespace: str, name: str, job: str) -> dict:
    """A pod of the job that never runs: a scheduling gate keeps it from the scheduler."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"llmtj.dev/job-name": job}},
            "spec": {"schedulingGates": [{"name": "test.llmtj.dev/hold"}],
                     "containers": [{"name": "c", "image": "none", "command": ["true"]}]}}


def _names(cached: list[dict] | None) -> list[str]:
    return sorted(p["metadata"]["name"] for p in cached or [])


def test_the_pod_watch_fills_the_cache_and_a_fresh_listing_catches_up(crd, namespace, monkeypatch):
    kube = Kube(crd.api_client())
    cache, changed = Cache(), []
    informer = PodInformer(lambda: kube, cache, namespace, changed.append)
    informer.start()
    try:
        assert poll(lambda: cache.pods(namespace, "j") == [], timeout=30)  # listed: served from now on
        for i in range(2):
            kube.create(_pod(namespace, f"j-worker-{i}", "j"))
        kube.create(_pod(namespace, "other", ""))  # an empty job label: not one of ours to follow
        assert poll(lambda: _names(cache.pods(namespace, "j")) == ["j-worker-0", "j-worker-1"], timeout=30)
        assert (namespace, "j") in changed
        kube.delete_pod(namespace, "j-worker-0", grace_seconds=0)
        assert poll(lambda: _names(cache.pods(namespace, "j")) == ["j-worker-1"], timeout=30)
    finally:
        informer.stop.set()

    # Away for a while (the watch broken, its version gone): a fresh listing replaces what the cache held and asks
    # for a reconcile of every job whose pods changed meanwhile.
    away = PodInformer(lambda: kube, cache, namespace, changed.append)
    away.relist()
    kube.delete_pod(namespace, "j-worker-1", grace_seconds=0)
    kube.create(_pod(namespace, "k-worker-0", "k"))
    changed.clear()
    away.relist()
    assert cache.pods(namespace, "j") == [] and _names(cache.pods(namespace, "k")) == ["k-worker-0"]
    assert set(changed) == {(namespace, "j"), (namespace, "k")}

    # A watch the API server refuses outright (here: a selector it cannot parse) is not retried as it is: the
    # informer lists again, as after a 410 Gone.
    monkeypatch.setattr(informer_module, "SELECTOR", "llmtj.dev/job-name in (")
    with pytest.raises(Stale, match="400"):
        away.follow()


def test_a_pass_sees_its_own_writes_and_redoes_itself_on_an_outdated_copy(crd, namespace):
    with deployed_operator_paused(crd):  # this test's passes are the only ones
        kube, defaults = Kube(crd.api_client()), JobDefaults()
        job = example("cached", replicas=2, nodeSelector={"llmtj.dev/no-such-node": "x"})  # pods stay Pending
        apply(crd, namespace, job)
        before = get_job(crd, namespace, "cached")

        # No watch at all: the namespace counts as listed (empty), so only the answers to the pass's own writes can
        # tell the next pass that the pods exist.
        cache = Cache()
        cache.replace_pods(namespace, [], before["metadata"]["resourceVersion"])
        reconcile(kube, cache, namespace, "cached", defaults)
        made = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(crd, namespace)}
        assert sorted(made) == ["cached-rendezvous", "cached-worker-0", "cached-worker-1"]
        assert _names(cache.pods(namespace, "cached")) == sorted(made)
        reconcile(kube, cache, namespace, "cached", defaults)
        assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(crd, namespace)} == made
        written = get_job(crd, namespace, "cached")["status"]
        assert written["restartCount"] == 0 and written["phase"] == "Pending", written

        # The server's status must not be written over from a copy that predates it: with the copy from before the
        # first pass (no status at all), the write names that old resourceVersion and is refused.
        with pytest.raises(Conflict):
            kube.patch_status(namespace, "cached", {"phase": "Pending"}, before["metadata"]["resourceVersion"])
        time.sleep(1.1)  # a startTime written again now would differ from the first one
        stale = Cache()
        stale.replace_pods(namespace, kube.list_pods(namespace, "llmtj.dev/job-name=cached"), "1")
        stale.put_job(before)
        reconcile(kube, stale, namespace, "cached", defaults)
        after = get_job(crd, namespace, "cached")
        assert after["status"]["startTime"] == written["startTime"], after["status"]
        assert after["status"]["restartCount"] == 0
        assert stale.job(namespace, "cached")["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]
        assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(crd, namespace)} == made


def test_a_watch_refused_right_after_its_listing_is_retried_with_backoff_not_in_a_tight_loop(crd, namespace):
    """RBAC that lets the operator list pods but not watch them (a hand-edited Role): every LIST works and every
    WATCH is refused at once (403). The informer waits longer each time instead of hammering the API server."""
    from kubernetes import client

    crd.kubectl("create", "serviceaccount", "lister", "-n", namespace, check=True)
    crd.kubectl("create", "role", "list-pods", "--verb=list", "--resource=pods", "-n", namespace, check=True)
    crd.kubectl("create", "rolebinding", "list-pods", "--role=list-pods", f"--serviceaccount={namespace}:lister",
                "-n", namespace, check=True)
    token = crd.kubectl("create", "token", "lister", "-n", namespace, check=True).stdout.strip()
    settings = client.Configuration(host=crd.server, api_key={"authorization": f"Bearer {token}"})
    settings.ssl_ca_cert = str(crd.dir / "pki" / "ca.crt")

    class Counted(Kube):
        lists = 0

        def list_pods_at(self, namespace, selector):
            Counted.lists += 1
            return super().list_pods_at(namespace, selector)

    kube = Counted(client.ApiClient(settings))
    informer = PodInformer(lambda: kube, Cache(), namespace, lambda key: None)
    informer.start()
    try:
        time.sleep(5)
    finally:
        informer.stop.set()
    assert informer.listed and 2 <= Counted.lists <= 5, Counted.lists  # waits 1, 2, 4 s between tries
