"""A container's environment, built the way kubelet does: service variables, envFrom, env, $(VAR) expansion."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

# (kind "configmap" | "secret", name) -> the object's data decoded to text, or None when the object does not exist.
Lookup = Callable[[str, str], "dict[str, str] | None"]

# Taken from the agent's own environment when the container does not set them: the test bed has no images, so these
# stand in for what an image would provide (the venv's site-packages, a home directory, a locale).
PASSTHROUGH = ("PYTHONPATH", "HOME", "LANG")

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:[eE]([+-]?\d+))?([KMGTPE]i|[numkMGTPE])?$")
_SUFFIXES = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}  # fmt: skip


class ConfigError(Exception):
    """A referenced ConfigMap, Secret or key is missing: kubelet's CreateContainerConfigError, retried later."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Expand $(VAR) like kubelet (k8s third_party/forked/golang/expansion): `$$` escapes, unknown names stay."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$" or i + 1 >= len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:  # an unterminated reference is copied verbatim
                out.append("$(")
                i += 2
                continue
            name = text[i + 2 : close]
            out.append(env[name] if name in env else f"$({name})")
            i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def parse_quantity(text: str | int | float) -> Decimal:
    """A Kubernetes resource quantity ("500m", "32Gi", "1e3") as a number."""
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise ValueError(f"bad quantity {text!r}")
    number, exponent, suffix = match.groups()
    value = Decimal(number) * (Decimal(10) ** int(exponent or 0))
    return value * Decimal(_SUFFIXES[suffix]) if suffix else value


def field_value(pod: dict, path: str, pod_ip: str, host_ip: str) -> str:
    """A downward-API fieldRef value; whole label/annotation maps render as sorted `key="value"` lines."""
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    sub = _SUBSCRIPT.match(path)
    if sub:
        return (meta.get(sub.group(1)) or {}).get(sub.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted((meta.get(path.split(".")[1]) or {}).items())
        return "\n".join(f'{k}="{v}"' for k, v in items)
    values = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path not in values:
        raise ValueError(f"unsupported fieldRef {path!r}")
    return values[path]


def resource_value(container: dict, ref: dict, allocatable: Mapping[str, str]) -> str:
    """A resourceFieldRef value: limits fall back to the node's allocatable, rounded up by the divisor."""
    where, _, resource = ref.get("resource", "").partition(".")
    resources = container.get("resources") or {}
    raw = (resources.get(where) or {}).get(resource)
    if raw is None:
        raw = allocatable.get(resource, "0") if where == "limits" else "0"
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor == 0:
        divisor = Decimal(1)
    return str(math.ceil(parse_quantity(raw) / divisor))


def _key_ref(ref: dict, kind: str, lookup: Lookup) -> str | None:
    data = lookup(kind, ref.get("name", ""))
    if data is not None and ref.get("key") in data:
        return data[ref["key"]]
    if ref.get("optional"):
        return None
    what = f"{kind} {ref.get('name')!r}" if data is None else f"key {ref.get('key')!r} in {kind} {ref.get('name')!r}"
    raise ConfigError(f"{what} not found")


def _value_from(pod: dict, container: dict, src: dict, ctx: EnvContext) -> str | None:
    if "fieldRef" in src:
        return field_value(pod, src["fieldRef"].get("fieldPath", ""), ctx.pod_ip, ctx.host_ip)
    if "resourceFieldRef" in src:
        return resource_value(container, src["resourceFieldRef"], ctx.allocatable)
    if "configMapKeyRef" in src:
        return _key_ref(src["configMapKeyRef"], "configmap", ctx.lookup)
    if "secretKeyRef" in src:
        return _key_ref(src["secretKeyRef"], "secret", ctx.lookup)
    raise ValueError(f"unsupported valueFrom {sorted(src)}")


@dataclass(frozen=True)
class EnvContext:
    """What an environment needs beyond the pod spec: addresses, the API server, node capacity, lookups."""

    pod_ip: str
    host_ip: str
    hostname: str
    api_host: str
    api_port: int
    path_prefix: str  # the agent's venv bin directory, so console scripts resolve
    agent_env: Mapping[str, str]
    allocatable: Mapping[str, str]
    lookup: Lookup


def service_env(api_host: str, api_port: int) -> dict[str, str]:
    """The `kubernetes` Service's variables; they point straight at the API server because there is no kube-proxy."""
    url = f"tcp://{api_host}:{api_port}"
    return {
        "KUBERNETES_SERVICE_HOST": api_host,
        "KUBERNETES_SERVICE_PORT": str(api_port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(api_port),
        "KUBERNETES_PORT": url,
        f"KUBERNETES_PORT_{api_port}_TCP": url,
    }


def container_env(pod: dict, container: dict, ctx: EnvContext) -> dict[str, str]:
    """Variables defined by the container spec (envFrom, then env in order) over the service variables.

    Expansion sees the service variables and the container's variables defined earlier, like kubelet.
    """
    env = service_env(ctx.api_host, ctx.api_port)
    for src in container.get("envFrom") or []:
        ref, kind = (src["configMapRef"], "configmap") if "configMapRef" in src else (src.get("secretRef"), "secret")
        if ref is None:
            raise ValueError(f"unsupported envFrom {sorted(src)}")
        data = ctx.lookup(kind, ref.get("name", ""))
        if data is None:
            if ref.get("optional"):
                continue
            raise ConfigError(f"{kind} {ref.get('name')!r} not found")
        for key, value in data.items():
            name = src.get("prefix", "") + key
            if _ENV_NAME.match(name):  # kubelet skips keys that are not valid variable names
                env[name] = value
    for var in container.get("env") or []:
        if "valueFrom" in var:
            value = _value_from(pod, container, var["valueFrom"], ctx)
            if value is None:
                continue
        else:
            value = expand(var.get("value") or "", env)
        env[var["name"]] = value
    return env


def build_env(pod: dict, container: dict, ctx: EnvContext) -> dict[str, str]:
    """The full process environment: runtime defaults, then the container's variables, then pass-through ones."""
    own = container_env(pod, container, ctx)
    base_path = ctx.agent_env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env = {"PATH": f"{ctx.path_prefix}:{base_path}" if ctx.path_prefix else base_path, "HOSTNAME": ctx.hostname}
    env.update(own)  # the container's PATH replaces the default, as an image's PATH would be replaced
    for name in PASSTHROUGH:
        if name not in env and name in ctx.agent_env:
            env[name] = ctx.agent_env[name]
    return env


def command_line(container: dict, env: Mapping[str, str]) -> list[str]:
    """command + args with $(VAR) expanded; there are no images, so a container without a command cannot run."""
    argv = list(container.get("command") or [])
    if not argv:
        raise ValueError(f"container {container.get('name')!r} has no command (the test bed has no images)")
    return [expand(str(a), env) for a in argv + list(container.get("args") or [])]
