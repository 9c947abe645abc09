"""Build the Dockerfile's images with Debian's podman (it builds but cannot run containers here) and run an
image's entry point by chroot into its mounted root filesystem. Test infrastructure only."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

BASE = "localhost/debian-base:bookworm"
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"


def available() -> str | None:
    """None when images can be built here, else what is missing."""
    missing = [tool for tool in ("podman", "debootstrap", "chroot") if shutil.which(tool) is None]
    return f"{', '.join(missing)} not installed (apt-get install podman debootstrap)" if missing else None


def podman(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


def debian_mirror() -> str:
    """The machine's own Debian mirror (no registry can be pulled from, the package mirror can)."""
    for src in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        text = src.read_text(errors="replace") if src.is_file() else ""
        for url in re.findall(r"(?:URIs:|deb)\s+(https?://\S+/debian)\b(?!-security)", text):
            return url
    return "http://deb.debian.org/debian"


def ensure_base() -> str:
    """A Debian bookworm base image made from Debian's packages (debootstrap), imported once."""
    if podman("image", "exists", BASE).returncode == 0:
        return BASE
    with tempfile.TemporaryDirectory(prefix="debootstrap-") as root:
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", root, debian_mirror()], check=True,
                       capture_output=True, timeout=900)
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["podman", "import", "-", BASE], stdin=tar.stdout, check=True, capture_output=True)
        tar.wait()
    return BASE


def build(context: Path, target: str, tag: str) -> subprocess.CompletedProcess[str]:
    """``podman build`` of one target; pip inside reaches the index through this machine's CA bundle, mounted
    read-only for the build only (never a layer)."""
    ca = "/etc/ssl/certs/host-ca.crt"
    return podman("build", "--isolation=chroot", "--target", target, "--build-arg", f"BASE={ensure_base()}",
                  "--build-arg", f"PIP_CERT={ca}", "-v", f"{HOST_CA}:{ca}:ro", "-t", tag, str(context), timeout=1800)


def run(tag: str, argv: list[str], user: str = "1000:1000") -> subprocess.CompletedProcess[str]:
    """``argv`` inside the image's root filesystem, as ``user``, by chroot (podman run is not possible here)."""
    container = podman("create", tag).stdout.strip()
    try:
        root = podman("mount", container).stdout.strip()
        chroot = shutil.which("chroot") or "/usr/sbin/chroot"
        return subprocess.run([chroot, f"--userspec={user}", root, *argv], capture_output=True, text=True,
                              timeout=300, env={"PATH": "/opt/venv/bin:/usr/bin:/bin", "HOME": "/tmp"})
    finally:
        podman("umount", container)
        podman("rm", container)


def run_entrypoint(tag: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The image's own entry point (and its user) with ``args``."""
    config = json.loads(podman("image", "inspect", tag, "--format", "{{json .Config}}").stdout)
    entry = config["Entrypoint"]
    exe = entry[0] if entry[0].startswith("/") else f"/opt/venv/bin/{entry[0]}"
    return run(tag, [exe, *entry[1:], *args], user=config.get("User") or "0:0")
