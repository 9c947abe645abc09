"""The operator's cache: the newest copy of each object wins whatever the order of arrival, a deleted object never
comes back from a late write answer, and a namespace's pods are served only once listed."""

from __future__ import annotations

from llmtj_operator.cache import Cache


def pod(name: str, rv: int, uid: str | None = None, job: str = "j", ns: str = "ns", **meta) -> dict:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": ns, "uid": uid or f"uid-{name}",
                                        "resourceVersion": str(rv), "labels": {"llmtj.dev/job-name": job}, **meta}}


def job(name: str, rv: int, uid: str = "job-uid", ns: str = "ns", **status) -> dict:
    return {"metadata": {"name": name, "namespace": ns, "uid": uid, "resourceVersion": str(rv)}, "status": status}


def names(pods) -> dict[str, str]:
    return {p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in pods}


def test_pods_are_served_only_once_their_namespace_is_listed():
    c = Cache()
    c.put_pod(pod("j-worker-0", 5))
    assert c.pods("ns", "j") is None  # the reconcile lists them itself meanwhile
    c.replace_pods("other", [], "1")
    assert c.pods("ns", "j") is None
    c.replace_pods("ns", [pod("j-worker-0", 5)], "5")
    assert names(c.pods("ns", "j")) == {"j-worker-0": "5"}
    assert c.pods("ns", "nothing") == []
    everywhere = Cache()
    everywhere.replace_pods(None, [], "1")
    assert everywhere.pods("any", "j") == []


def test_an_older_copy_never_replaces_a_newer_one():
    c = Cache()
    c.replace_pods("ns", [], "1")
    assert c.put_pod(pod("j-worker-0", 7)) == ("ns", "j")
    c.put_pod(pod("j-worker-0", 6))  # a watch event older than the create answer already stored
    assert names(c.pods("ns", "j")) == {"j-worker-0": "7"}
    c.put_pod(pod("j-worker-0", 9))
    assert names(c.pods("ns", "j")) == {"j-worker-0": "9"}
    c.put_job(job("j", 10, phase="Running"))
    c.put_job(job("j", 8, phase="Pending"))
    assert c.job("ns", "j")["status"]["phase"] == "Running"


def test_a_deleted_pod_stays_deleted_and_a_new_one_of_its_name_is_taken():
    c = Cache()
    c.replace_pods("ns", [], "1")
    c.put_pod(pod("j-worker-0", 5, uid="a"))
    assert c.drop_pod(pod("j-worker-0", 8, uid="a")) == ("ns", "j")
    c.put_pod(pod("j-worker-0", 7, uid="a", deletionTimestamp="now"))  # the delete's answer, after the event
    assert c.pods("ns", "j") == []
    c.put_pod(pod("j-worker-0", 9, uid="b"))  # the replacement
    assert names(c.pods("ns", "j")) == {"j-worker-0": "9"}
    c.drop_pod(pod("j-worker-0", 8, uid="a"))  # the old one's end again: not the replacement's
    assert names(c.pods("ns", "j")) == {"j-worker-0": "9"}


def test_a_relisting_keeps_what_was_written_after_it_and_drops_what_it_lacks():
    c = Cache()
    c.replace_pods("ns", [pod("j-worker-0", 3), pod("j-worker-1", 4), pod("k-worker-0", 4, job="k")], "4")
    c.put_pod(pod("j-worker-2", 12))  # created while the next listing was under way
    c.drop_pod(pod("j-worker-1", 11))  # deleted meanwhile too
    touched = c.replace_pods("ns", [pod("j-worker-0", 3), pod("j-worker-1", 4)], "10")
    assert names(c.pods("ns", "j")) == {"j-worker-0": "3", "j-worker-2": "12"}
    assert c.pods("ns", "k") == []  # gone while the watch was away: its job is owed a pass
    assert touched == {("ns", "j"), ("ns", "k")}


def test_a_deleted_job_is_known_gone_until_one_of_its_name_is_made():
    c = Cache()
    c.put_job(job("j", 3, uid="a"))
    c.drop_job(job("j", 4, uid="a"))
    assert c.job("ns", "j") is None and c.deleted("ns", "j")
    c.put_job(job("j", 2, uid="a"))  # a late answer for the deleted job
    assert c.job("ns", "j") is None
    c.put_job(job("j", 6, uid="b"))
    assert c.job("ns", "j")["metadata"]["uid"] == "b" and not c.deleted("ns", "j")


def test_pods_without_the_job_label_are_ignored():
    c = Cache()
    c.replace_pods("ns", [], "1")
    stray = pod("x", 2)
    stray["metadata"]["labels"] = {}
    assert c.put_pod(stray) is None and c.put_pod(None) is None
