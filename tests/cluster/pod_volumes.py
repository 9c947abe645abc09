"""Pod volumes as host folders, and the shell script that mounts them in a container's private mount namespace.

Layout: DIR/pods/<namespace>_<pod>_<uid>/volumes/<volume>.  configMap, secret, downwardAPI and projected volumes are
written once at pod start (not refreshed) and, as with kubelet, always mounted read-only.
"""

from __future__ import annotations

import base64
import shlex
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from agent_kube import Kube, KubeError
from pod_env import expand, field_value, resource_value

Files = dict[str, tuple[bytes, "int | None"]]  # relative path -> (content, mode)
DEFAULT_MODE = 0o644
TERMINATION_LOG = "/dev/termination-log"


class VolumeWait(Exception):
    """The volume cannot be set up yet (unbound claim, missing object): the pod stays ContainerCreating."""


class VolumeApi(Protocol):
    def data(self, kind: str, namespace: str, name: str) -> dict[str, bytes] | None: ...

    def token(self, pod: dict, audience: str | None, expiration_s: int) -> str: ...

    def claim_path(self, namespace: str, claim: str) -> str: ...


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool
    is_file: bool


def pod_dir(root: Path, pod: dict) -> Path:
    meta = pod["metadata"]
    return root / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"


def decode_data(obj: dict) -> dict[str, bytes]:
    """A ConfigMap's or Secret's keys as bytes (Secret data and binaryData are base64)."""
    if obj.get("kind") == "Secret":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    out = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    return out | {k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()}


def key_files(data: dict[str, bytes] | None, items: list[dict] | None, optional: bool, what: str) -> Files:
    """Files of a configMap/secret source: every key, or just the listed items (key -> path)."""
    if data is None:
        if optional:
            return {}
        raise VolumeWait(f"{what} not found")
    if not items:
        return {key: (value, None) for key, value in data.items()}
    files: Files = {}
    for item in items:
        if item["key"] not in data:
            if optional:
                continue
            raise VolumeWait(f"key {item['key']!r} not found in {what}")
        files[item["path"]] = (data[item["key"]], item.get("mode"))
    return files


def downward_files(pod: dict, items: list[dict], pod_ip: str, host_ip: str, allocatable: Mapping[str, str]) -> Files:
    files: Files = {}
    for item in items or []:
        if "fieldRef" in item:
            value = field_value(pod, item["fieldRef"].get("fieldPath", ""), pod_ip, host_ip)
        elif "resourceFieldRef" in item:
            ref = item["resourceFieldRef"]
            containers = {c["name"]: c for c in pod["spec"].get("containers", [])}
            value = resource_value(containers.get(ref.get("containerName"), {}), ref, allocatable)
        else:
            raise ValueError(f"unsupported downwardAPI item {sorted(item)}")
        files[item["path"]] = (value.encode(), item.get("mode"))
    return files


def projected_files(pod: dict, sources: list[dict], api: VolumeApi, pod_ip: str, host_ip: str, alloc: dict) -> Files:
    namespace = pod["metadata"]["namespace"]
    files: Files = {}
    for src in sources or []:
        if "serviceAccountToken" in src:
            tok = src["serviceAccountToken"]
            token = api.token(pod, tok.get("audience"), int(tok.get("expirationSeconds") or 3600))
            files[tok["path"]] = (token.encode(), None)
        elif "configMap" in src or "secret" in src:
            kind = "configmap" if "configMap" in src else "secret"
            ref = src.get("configMap") or src.get("secret") or {}
            data = api.data(kind, namespace, ref.get("name", ""))
            files |= key_files(data, ref.get("items"), bool(ref.get("optional")), f"{kind} {ref.get('name')!r}")
        elif "downwardAPI" in src:
            files |= downward_files(pod, src["downwardAPI"].get("items", []), pod_ip, host_ip, alloc)
        else:
            raise ValueError(f"unsupported projected volume source {sorted(src)}")
    return files


def write_files(dest: Path, files: Files, default_mode: int | None) -> None:
    """Write the files afresh under dest; modes are applied best effort."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for rel, (content, mode) in files.items():
        path = dest / safe_relative(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode if mode is not None else (default_mode if default_mode is not None else DEFAULT_MODE))


def safe_relative(rel: str) -> str:
    """A volume-relative path (item path, subPath) that stays inside the volume."""
    parts = PurePosixPath(rel).parts
    if not rel or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise ValueError(f"path {rel!r} must be relative and must not contain '..'")
    return rel


def _host_path(vol: dict) -> Path:
    """A hostPath volume's path; missing folders are created for type "" too (like Docker, unlike kubelet)."""
    src = vol["hostPath"]
    path, kind = Path(src["path"]), src.get("type") or ""
    if kind in ("", "DirectoryOrCreate") and not path.exists():
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    elif kind in ("Directory", "File", "Socket", "CharDevice", "BlockDevice") and not path.exists():
        raise VolumeWait(f"hostPath {path} does not exist")
    return path


def prepare_volume(pod: dict, vol: dict, root: Path, api: VolumeApi, pod_ip: str, host_ip: str, alloc: dict) -> Path:
    """Materialise one volume; returns the host path its mounts bind."""
    namespace = pod["metadata"]["namespace"]
    dest = pod_dir(root, pod) / "volumes" / vol["name"]
    if "emptyDir" in vol:  # medium Memory is an ordinary folder too
        dest.mkdir(parents=True, exist_ok=True)
        return dest
    if "hostPath" in vol:
        return _host_path(vol)
    if "persistentVolumeClaim" in vol:
        path = Path(api.claim_path(namespace, vol["persistentVolumeClaim"]["claimName"]))
        path.mkdir(parents=True, exist_ok=True)
        return path
    if "configMap" in vol or "secret" in vol:
        kind = "configmap" if "configMap" in vol else "secret"
        ref = vol.get("configMap") or vol.get("secret") or {}
        name = ref.get("name") or ref.get("secretName", "")
        data = api.data(kind, namespace, name)
        files = key_files(data, ref.get("items"), bool(ref.get("optional")), f"{kind} {name!r}")
    elif "downwardAPI" in vol:
        ref = vol["downwardAPI"]
        files = downward_files(pod, ref.get("items", []), pod_ip, host_ip, alloc)
    elif "projected" in vol:
        ref = vol["projected"]
        files = projected_files(pod, ref.get("sources", []), api, pod_ip, host_ip, alloc)
    else:
        raise ValueError(f"unsupported volume {vol['name']!r}: {sorted(set(vol) - {'name'})}")
    write_files(dest, files, ref.get("defaultMode"))
    return dest


def always_read_only(vol: dict) -> bool:
    return any(k in vol for k in ("configMap", "secret", "downwardAPI", "projected")) or bool(
        (vol.get("persistentVolumeClaim") or {}).get("readOnly")
    )


def container_mounts(
    container: dict, volumes: Mapping[str, Path], read_only: set[str], env: Mapping[str, str]
) -> list[Mount]:
    """The container's bind mounts; subPath folders are created inside the volume like kubelet does."""
    mounts = []
    for vm in container.get("volumeMounts") or []:
        if vm["name"] not in volumes:
            raise ValueError(f"volumeMount {vm['name']!r} names no volume of the pod")
        source = volumes[vm["name"]]
        sub = vm.get("subPath") or (expand(vm["subPathExpr"], env) if vm.get("subPathExpr") else "")
        if sub:
            source = source / safe_relative(sub)
            if not source.exists():
                source.mkdir(parents=True)
        ro = bool(vm.get("readOnly")) or vm["name"] in read_only
        mounts.append(Mount(source, vm["mountPath"], ro, source.is_file()))
    return mounts


def container_script(
    hostname: str,
    hosts_file: Path,
    mounts: list[Mount],
    termination: tuple[Path, str] | None,
    workdir: str | None,
    argv: list[str],
) -> str:
    """The sh script run under `unshare --mount --uts`: hostname, /etc/hosts, volumes, termination log, exec.

    Parents are mounted before children (sorted by depth); read-only remounts come last so that mount points inside
    a read-only volume can still be created.  mkdir/touch of a missing mount point happens on the shared host file
    system (there is no image root), which leaves empty folders or files behind.
    """
    q = shlex.quote
    lines = ["set -e", f"hostname {q(hostname)}"]
    if not any(m.target == "/etc/hosts" for m in mounts):
        lines.append(f"mount --bind {q(str(hosts_file))} /etc/hosts")
    ordered = sorted(mounts, key=lambda m: len(PurePosixPath(m.target).parts))
    for m in ordered:
        lines.append(_mount_point(m.target, m.is_file))
        lines.append(f"mount --bind {q(str(m.source))} {q(m.target)}")
    if termination:
        src, target = termination
        lines.append(
            f"{{ {_mount_point(target, True)} && mount --bind {q(str(src))} {q(target)}; }} 2>/dev/null"
            f" || echo {q(f'node-agent: could not mount the termination log at {target}')} >&2"
        )
    lines += [f"mount -o remount,bind,ro {q(m.target)}" for m in ordered if m.read_only]
    if workdir:
        lines += [f"mkdir -p {q(workdir)}", f"cd {q(workdir)}"]
    lines.append("exec " + " ".join(q(a) for a in argv))
    return "\n".join(lines) + "\n"


def _mount_point(target: str, is_file: bool) -> str:
    q = shlex.quote
    if not is_file:
        return f"mkdir -p {q(target)}"
    return f"mkdir -p {q(str(PurePosixPath(target).parent))} && {{ [ -e {q(target)} ] || : > {q(target)}; }}"


class PodApi:
    """API reads for volumes and env (implements pod_volumes.VolumeApi); API errors become 'wait and retry'."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def data(self, kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
        plural = "configmaps" if kind == "configmap" else "secrets"
        try:
            obj = self.kube.get_or_none(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        except KubeError as exc:
            raise VolumeWait(str(exc)) from exc
        return None if obj is None else decode_data(obj)

    def text(self, namespace: str) -> Callable[[str, str], dict[str, str] | None]:
        def lookup(kind: str, name: str) -> dict[str, str] | None:
            data = self.data(kind, namespace, name)
            return None if data is None else {k: v.decode(errors="replace") for k, v in data.items()}

        return lookup

    def token(self, pod: dict, audience: str | None, expiration_s: int) -> str:
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": expiration_s,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
            },
        }
        path = f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token"
        try:
            return self.kube.post(path, body)["status"]["token"]
        except KubeError as exc:
            raise VolumeWait(f"token for serviceaccount {account!r}: {exc}") from exc

    def claim_path(self, namespace: str, claim: str) -> str:
        try:
            pvc = self.kube.get_or_none(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
            if pvc is None or pvc.get("status", {}).get("phase") != "Bound":
                raise VolumeWait(f"persistentvolumeclaim {claim!r} is {'not found' if pvc is None else 'not bound'}")
            pv = self.kube.get_or_none(f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")
        except KubeError as exc:
            raise VolumeWait(str(exc)) from exc
        if pv is None:
            raise VolumeWait(f"persistentvolume of claim {claim!r} not found")
        source = pv["spec"].get("hostPath") or pv["spec"].get("local")
        if not source:
            raise ValueError(f"persistentvolume {pv['metadata']['name']!r} is neither hostPath nor local")
        return source["path"]
