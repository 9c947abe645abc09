"""Unit tests of the node agent's pure parts: env, hosts files, volumes, mount scripts, status. No cluster needed."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the agent's modules import each other as top-level names

from node_agent import IpPool, grace_period
from pod_env import ConfigError, EnvContext, build_env, command_line, expand, parse_quantity
from pod_hosts import pod_hostname, render_hosts, write_in_place
from pod_runner import SANDBOX, UNSHARE, AgentContext, PodRunner, should_restart
from pod_status import (
    ContainerRun,
    conditions,
    exit_code,
    lost_pod_status,
    pod_phase,
    terminated,
    termination_message,
)
from pod_volumes import Mount, VolumeWait, container_mounts, container_script, pod_dir, prepare_volume


def make_pod(name: str, ns: str = "ns", ip: str = "", phase: str = "Running", ready: bool = True, **spec) -> dict:
    status: dict = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    meta = {"name": name, "namespace": ns, "uid": f"uid-{name}", "labels": spec.pop("labels", {})}
    return {"metadata": meta, "spec": {"containers": [{"name": "c", "command": ["true"]}], **spec}, "status": status}


def env_ctx(lookup=lambda kind, name: None, agent_env=None) -> EnvContext:
    return EnvContext(
        pod_ip="127.0.1.2",
        host_ip="127.0.1.1",
        hostname="h",
        api_host="127.0.0.1",
        api_port=6443,
        path_prefix="/venv/bin",
        agent_env=agent_env if agent_env is not None else {"PATH": "/usr/bin", "HOME": "/root", "PYTHONPATH": "/pp"},
        allocatable={"cpu": "8", "memory": "32Gi"},
        lookup=lookup,
    )


# -- env -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, want",
    [
        ("$(A)-x", "1-x"),
        ("$$(A)", "$(A)"),
        ("$(MISSING)", "$(MISSING)"),
        ("a$(A", "a$(A"),
        ("$x$", "$x$"),
        ("$(A)$(B)", "12"),
    ],
)
def test_expand_like_kubelet(text: str, want: str) -> None:
    assert expand(text, {"A": "1", "B": "2"}) == want


def test_parse_quantity() -> None:
    assert parse_quantity("500m") == parse_quantity("0.5")
    assert parse_quantity("32Gi") == 32 * 2**30
    assert parse_quantity("1e3") == 1000
    assert parse_quantity("2E") == 2 * 10**18


def test_build_env_order_sources_and_expansion() -> None:
    data = {("configmap", "cm"): {"K": "v", "bad-key!": "x"}, ("secret", "s"): {"pw": "hunter2"}}
    pod = make_pod("p", labels={"app": "x"}, serviceAccountName="sa", nodeName="n1")
    container = {
        "name": "c",
        "command": ["run", "--x=$(FOO)", "$(POD_IP)"],
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "FOO", "value": "a-$(CM_K)"},
            {"name": "BAR", "value": "$(FOO)/b"},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": True}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "HOME", "value": "/home/me"},
        ],
    }
    env = build_env(pod, container, env_ctx(lambda kind, name: data.get((kind, name))))
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1" and env["KUBERNETES_SERVICE_PORT"] == "6443"
    assert env["PATH"] == "/venv/bin:/usr/bin" and env["HOSTNAME"] == "h"
    assert env["CM_K"] == "v" and "CM_bad-key!" not in env
    assert (env["FOO"], env["BAR"], env["POD_IP"], env["APP"], env["SA"]) == ("a-v", "a-v/b", "127.0.1.2", "x", "sa")
    assert env["PW"] == "hunter2" and "OPT" not in env and env["CPU"] == "8"
    assert env["HOME"] == "/home/me" and env["PYTHONPATH"] == "/pp"  # container wins; otherwise passed through
    assert command_line(container, env) == ["run", "--x=a-v", "127.0.1.2"]


def test_build_env_missing_required_key_is_config_error() -> None:
    container = {"name": "c", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]}
    with pytest.raises(ConfigError, match="configmap 'cm' not found"):
        build_env(make_pod("p"), container, env_ctx())


def test_resource_field_ref_memory_divisor() -> None:
    container = {
        "name": "c",
        "resources": {"limits": {"memory": "1Gi"}},
        "env": [{"name": "M", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}}],
    }
    assert build_env(make_pod("p"), container, env_ctx())["M"] == "1024"


def test_command_required() -> None:
    with pytest.raises(ValueError, match="no command"):
        command_line({"name": "c", "args": ["x"]}, {})


# -- hosts -----------------------------------------------------------------------------------------------------------


def test_hosts_pods_services_and_own_canonical_name() -> None:
    me = make_pod("job-worker-0", hostname="job-worker-0", subdomain="job-workers", labels={"role": "w"})
    peer = make_pod("job-worker-1", ip="127.0.2.3", hostname="job-worker-1", subdomain="job-workers")
    unready = make_pod("a-unready", ip="127.0.2.9", labels={"role": "w"}, ready=False)
    done = make_pod("old", ip="127.0.2.7", phase="Failed", hostname="old", subdomain="job-workers")
    other_ns = make_pod("x", ns="other", ip="127.0.3.3", hostname="x", subdomain="job-workers")
    fresh = make_pod("job-worker-2", hostname="job-worker-2", subdomain="job-workers")  # IP known only locally
    svc = {"metadata": {"name": "job-svc", "namespace": "ns"}, "spec": {"selector": {"role": "w"}}}
    text = render_hosts(
        me, "127.0.1.2", [me, peer, unready, done, other_ns, fresh], [svc], {"uid-job-worker-2": "127.0.1.5"}
    )
    lines = text.splitlines()
    assert "127.0.0.1\tlocalhost" in lines
    own = next(line for line in lines if line.startswith("127.0.1.2\t")).split("\t")[1].split()
    assert own[0] == "job-worker-0.job-workers.ns.svc" and own[-1] == "job-worker-0"
    assert "job-worker-0.job-workers.ns.svc.cluster.local" in own
    assert any(line.startswith("127.0.2.3\tjob-worker-1.job-workers.ns.svc ") for line in lines)
    assert any(line.startswith("127.0.1.5\tjob-worker-2.job-workers.ns.svc ") for line in lines)
    assert "127.0.2.7" not in text and "127.0.3.3" not in text
    # the first pod by name that the selector matches is not Ready, so the Service maps to the next one: me
    assert "127.0.1.2\tjob-svc.ns.svc.cluster.local job-svc.ns.svc job-svc.ns job-svc" in lines


def test_hosts_without_subdomain_and_hostname_fallback() -> None:
    pod = make_pod("plain")
    assert pod_hostname(pod) == "plain"
    assert "127.0.1.4\tplain\n" in render_hosts(pod, "127.0.1.4", [pod], [])


def test_write_in_place_keeps_inode(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    assert write_in_place(path, "a long first version\n")
    inode = path.stat().st_ino
    assert write_in_place(path, "short\n")
    assert path.stat().st_ino == inode and path.read_text() == "short\n"
    assert not write_in_place(path, "short\n")


# -- volumes ---------------------------------------------------------------------------------------------------------


class FakeApi:
    def __init__(self, objects: dict, claims: dict | None = None) -> None:
        self.objects, self.claims, self.tokens = objects, claims or {}, []

    def data(self, kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
        return self.objects.get((kind, name))

    def token(self, pod: dict, audience: str | None, expiration_s: int) -> str:
        self.tokens.append((pod["metadata"]["uid"], audience, expiration_s))
        return "tok"

    def claim_path(self, namespace: str, claim: str) -> str:
        if claim not in self.claims:
            raise VolumeWait(f"persistentvolumeclaim {claim!r} is not bound")
        return self.claims[claim]


def test_volumes_materialise(tmp_path: Path) -> None:
    api = FakeApi({("configmap", "cm"): {"a": b"1", "b": b"2"}, ("configmap", "kube-root-ca.crt"): {"ca.crt": b"CA"}})
    pod = make_pod("p", serviceAccountName="sa")
    projected = {
        "name": "kube-api-access",
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
            ],
        },
    }
    args = (tmp_path, api, "127.0.1.2", "127.0.1.1", {"cpu": "8"})
    path = prepare_volume(pod, projected, *args)
    assert path == pod_dir(tmp_path, pod) / "volumes" / "kube-api-access"
    assert path == tmp_path / "pods" / "ns_p_uid-p" / "volumes" / "kube-api-access"
    assert {f.name: f.read_text() for f in path.iterdir()} == {"token": "tok", "ca.crt": "CA", "namespace": "ns"}
    assert api.tokens == [("uid-p", None, 3607)]
    cm = prepare_volume(pod, {"name": "c", "configMap": {"name": "cm", "items": [{"key": "b", "path": "d/x"}]}}, *args)
    assert [str(f.relative_to(cm)) for f in cm.rglob("*") if f.is_file()] == ["d/x"]
    assert prepare_volume(pod, {"name": "e", "emptyDir": {}}, *args).is_dir()
    with pytest.raises(VolumeWait):
        prepare_volume(pod, {"name": "m", "configMap": {"name": "missing"}}, *args)
    assert not any(prepare_volume(pod, {"name": "o", "secret": {"secretName": "x", "optional": True}}, *args).iterdir())
    with pytest.raises(VolumeWait, match="not bound"):
        prepare_volume(pod, {"name": "v", "persistentVolumeClaim": {"claimName": "data"}}, *args)
    api.claims["data"] = str(tmp_path / "pv")
    assert prepare_volume(pod, {"name": "v", "persistentVolumeClaim": {"claimName": "data"}}, *args).is_dir()


def test_secret_data_is_base64(tmp_path: Path) -> None:
    from pod_volumes import decode_data

    secret = {"kind": "Secret", "data": {"k": base64.b64encode(b"\x00bin").decode()}}
    assert decode_data(secret) == {"k": b"\x00bin"}
    assert decode_data({"kind": "ConfigMap", "data": {"a": "x"}, "binaryData": {"b": "eQ=="}}) == {"a": b"x", "b": b"y"}


def test_container_mounts_subpath_and_read_only(tmp_path: Path) -> None:
    vol = tmp_path / "cfg"
    vol.mkdir()
    (vol / "file.txt").write_text("x")
    container = {
        "volumeMounts": [
            {"name": "cfg", "mountPath": "/etc/app/file.txt", "subPath": "file.txt"},
            {"name": "data", "mountPath": "/data", "subPathExpr": "$(POD)"},
            {"name": "data", "mountPath": "/ro", "readOnly": True},
        ]
    }
    mounts = container_mounts(container, {"cfg": vol, "data": tmp_path / "d"}, {"cfg"}, {"POD": "p1"})
    assert mounts[0] == Mount(vol / "file.txt", "/etc/app/file.txt", True, True)
    assert mounts[1] == Mount(tmp_path / "d" / "p1", "/data", False, False) and mounts[1].source.is_dir()
    assert mounts[2].read_only
    with pytest.raises(ValueError):
        container_mounts(
            {"volumeMounts": [{"name": "cfg", "mountPath": "/x", "subPath": "../up"}]}, {"cfg": vol}, set(), {}
        )


def test_container_script_orders_and_quotes() -> None:
    mounts = [Mount(Path("/h/b"), "/a/b", True, False), Mount(Path("/h/a"), "/a", False, False)]
    script = container_script(
        "w-0", Path("/p/hosts"), mounts, (Path("/p/c.tl"), "/dev/termination-log"), "/w", ["echo", "a b"]
    )
    lines = script.splitlines()
    assert lines[:3] == ["set -e", "hostname w-0", "mount --bind /p/hosts /etc/hosts"]
    assert lines.index("mount --bind /h/a /a") < lines.index("mount --bind /h/b /a/b")
    assert lines.index("mount -o remount,bind,ro /a/b") > lines.index("mount --bind /h/b /a/b")
    assert lines[-1] == "exec echo 'a b'" and "cd /w" in lines


def _can_unshare() -> bool:
    try:
        return subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _can_unshare(), reason="needs unshare --mount (root, CAP_SYS_ADMIN)")
def test_container_script_runs_in_private_namespace(tmp_path: Path) -> None:
    hosts, vol, tlog = tmp_path / "hosts", tmp_path / "vol", tmp_path / "tl"
    hosts.write_text("127.0.9.9\tpeer.sub.ns.svc\n")
    vol.mkdir()
    (vol / "f").write_text("data")
    tlog.write_text("")
    target = str(tmp_path / "mnt")
    code = (
        "import socket; print(socket.gethostname(), socket.gethostbyname('peer.sub.ns.svc'),"
        f" open('{target}/f').read()); open('{tmp_path}/tm', 'w').write('bye')"
    )
    argv = [sys.executable, "-c", code]
    script = container_script("pod-x", hosts, [Mount(vol, target, True, False)], (tlog, f"{tmp_path}/tm"), None, argv)
    out = subprocess.run([*SANDBOX, *UNSHARE, script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["pod-x", "127.0.9.9", "data"]
    assert tlog.read_text() == "bye" and os.uname().nodename != "pod-x"


# -- status ----------------------------------------------------------------------------------------------------------


def run(name: str, state: dict, last: dict | None = None) -> ContainerRun:
    return ContainerRun(name, state=state, last_state=last or {})


RUNNING = {"running": {"startedAt": "t"}}
WAITING = {"waiting": {"reason": "ContainerCreating"}}


def test_pod_phase_like_kubelet() -> None:
    ok, bad = terminated(0, "a", "b"), terminated(1, "a", "b")
    crash = {"waiting": {"reason": "CrashLoopBackOff"}}
    assert pod_phase("Never", False, [run("a", RUNNING)]) == "Pending"
    assert pod_phase("Never", True, [run("a", WAITING)]) == "Pending"
    assert pod_phase("Never", True, [run("a", RUNNING), run("b", bad)]) == "Running"
    assert pod_phase("Never", True, [run("a", ok), run("b", ok)]) == "Succeeded"
    assert pod_phase("Never", True, [run("a", ok), run("b", bad)]) == "Failed"
    assert pod_phase("OnFailure", True, [run("a", crash, bad)]) == "Running"
    assert pod_phase("OnFailure", True, [run("a", ok)]) == "Succeeded"
    assert pod_phase("Always", True, [run("a", ok)]) == "Running"


def test_should_restart() -> None:
    assert not should_restart("Never", 1, False)
    assert should_restart("Always", 0, False) and not should_restart("Always", 0, True)
    assert should_restart("OnFailure", 2, False) and not should_restart("OnFailure", 0, False)


def test_container_status_shape_and_exit_codes() -> None:
    c = ContainerRun("c", "img", state=terminated(exit_code(-9), "s", "f", "oops"), restart_count=2, pid=42)
    status = c.status()
    assert status["state"]["terminated"] == {
        "exitCode": 137, "reason": "Error", "startedAt": "s", "finishedAt": "f", "message": "oops"
    }  # fmt: skip
    assert (status["containerID"], status["ready"], status["restartCount"], status["imageID"]) == (
        "local://42",
        False,
        2,
        "",
    )


def test_conditions_keep_transition_times() -> None:
    first = conditions("Running", True, True, [run("a", RUNNING)], [])
    assert {c["type"]: c["status"] for c in first}["Ready"] == "True"
    prev = [{**c, "lastTransitionTime": "early"} for c in first]
    again = conditions("Running", True, True, [run("a", RUNNING)], prev)
    assert all(c["lastTransitionTime"] == "early" for c in again)
    done = {c["type"]: c for c in conditions("Succeeded", True, True, [run("a", terminated(0, "a", "b"))], prev)}
    assert done["Ready"]["status"] == "False" and done["Ready"]["reason"] == "PodCompleted"
    assert done["Ready"]["lastTransitionTime"] != "early" and done["Initialized"]["lastTransitionTime"] == "early"


def test_termination_message(tmp_path: Path) -> None:
    log, msg = tmp_path / "c.log", tmp_path / "c.tl"
    log.write_text("old run\n" + "".join(f"line {i}\n" for i in range(200)))
    msg.write_text("")
    tail = termination_message("FallbackToLogsOnError", 1, msg, log, 0)
    assert tail.splitlines()[-1] == "line 199" and len(tail.splitlines()) == 80
    assert termination_message("FallbackToLogsOnError", 0, msg, log, 0) == ""
    assert termination_message("File", 1, msg, log, 0) == ""
    assert termination_message("FallbackToLogsOnError", 1, msg, log, log.stat().st_size - 9) == "line 199\n"
    msg.write_text("from file")
    assert termination_message("FallbackToLogsOnError", 1, msg, log, 0) == "from file"


def test_lost_pod_status() -> None:
    pod = make_pod("p")
    pod["status"]["containerStatuses"] = [
        {"name": "a", "state": RUNNING, "restartCount": 0},
        {"name": "b", "state": terminated(0, "s", "f")},
    ]
    status = lost_pod_status(pod)["status"]
    assert status["phase"] == "Failed" and status["reason"] == "NodeLost"
    a, b = status["containerStatuses"]
    assert (
        a["state"]["terminated"]["reason"] == "ContainerStatusUnknown" and a["state"]["terminated"]["exitCode"] == 137
    )
    assert b["state"] == terminated(0, "s", "f")


def runner_for(pod: dict, tmp_path: Path, previous: dict | None = None) -> PodRunner:
    ctx = AgentContext(None, "n1", tmp_path, "127.0.1.1", "127.0.0.1", 6443, {}, lambda pod, ip: "")  # type: ignore[arg-type]
    return PodRunner(ctx, pod, "127.0.1.3", previous)


def test_runner_status_patch_before_start(tmp_path: Path) -> None:
    pod = make_pod("p", initContainers=[{"name": "i", "command": ["true"]}])
    status = runner_for(pod, tmp_path).status_patch()["status"]
    assert status["phase"] == "Pending" and "podIP" not in status and status["hostIP"] == "127.0.1.1"
    assert status["initContainerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "PodReadyToStartContainers": "False", "Initialized": "False", "ContainersReady": "False", "Ready": "False"
    }  # fmt: skip


def test_runner_resumes_after_agent_restart(tmp_path: Path) -> None:
    pod = make_pod(
        "p",
        restartPolicy="OnFailure",
        initContainers=[{"name": "i", "command": ["true"]}],
        containers=[{"name": "a", "command": ["true"]}, {"name": "b", "command": ["true"]}],
    )
    previous = {
        "startTime": "t0",
        "podIP": "127.0.1.3",
        "initContainerStatuses": [{"name": "i", "state": terminated(0, "s", "f"), "restartCount": 0}],
        "containerStatuses": [
            {"name": "a", "state": terminated(0, "s", "f"), "restartCount": 1},
            {"name": "b", "state": RUNNING, "restartCount": 2},
        ],
    }
    runner = runner_for(pod, tmp_path, previous)
    assert runner.init_done and runner.skip == {"a"} and runner.start_time == "t0"
    a, b = runner.main
    assert a.exit_code == 0 and a.restart_count == 1
    assert b.restart_count == 3 and b.last_state["terminated"]["reason"] == "ContainerStatusUnknown"


# -- agent bits ------------------------------------------------------------------------------------------------------


def test_ip_pool_reuses_lowest_free() -> None:
    pool = IpPool("127.0.3")
    assert [pool.allocate() for _ in range(3)] == ["127.0.3.2", "127.0.3.3", "127.0.3.4"]
    pool.release("127.0.3.3")
    assert pool.allocate() == "127.0.3.3"
    assert pool.allocate(prefer="127.0.3.9") == "127.0.3.9" and pool.allocate(prefer="127.0.3.9") == "127.0.3.5"


def test_grace_period() -> None:
    pod = make_pod("p", terminationGracePeriodSeconds=5)
    assert grace_period(pod) == 5
    pod["metadata"]["deletionGracePeriodSeconds"] = 0
    assert grace_period(pod) == 0
