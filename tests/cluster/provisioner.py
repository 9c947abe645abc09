"""The test bed's volume provisioner: a hostPath PV for every Pending PVC of the ``standard`` class.

    python tests/cluster/provisioner.py --kubeconfig K --dir DIR

A PVC qualifies when its storage class is ``standard`` (the default class, which the DefaultStorageClass admission
plugin fills in when the PVC names none) and it is Pending with no ``volumeName``. The PV is pre-bound through
``claimRef``; the controller manager's PV controller then completes the binding, exactly as with a real external
provisioner. The volume is the folder DIR/volumes/<namespace>-<pvc>-<uid>, which the node agents use as is.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

CLASS = "standard"
PROVISIONER = "llmtj.test/hostpath"


def wanted(pvc: client.V1PersistentVolumeClaim) -> bool:
    cls = pvc.spec.storage_class_name
    return (cls in (None, CLASS) and pvc.status.phase == "Pending" and not pvc.spec.volume_name
            and pvc.metadata.deletion_timestamp is None)


def volume_for(pvc: client.V1PersistentVolumeClaim, root: Path) -> client.V1PersistentVolume:
    meta = pvc.metadata
    path = root / f"{meta.namespace}-{meta.name}-{meta.uid}"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)  # pod processes may run as any user; a test bed has no other tenant
    size = (pvc.spec.resources.requests or {}).get("storage", "1Gi")
    return client.V1PersistentVolume(
        metadata=client.V1ObjectMeta(name=f"pvc-{meta.uid}",
                                     annotations={"pv.kubernetes.io/provisioned-by": PROVISIONER}),
        spec=client.V1PersistentVolumeSpec(
            capacity={"storage": size},
            access_modes=pvc.spec.access_modes or ["ReadWriteOnce"],
            storage_class_name=CLASS,
            persistent_volume_reclaim_policy="Retain",
            volume_mode=pvc.spec.volume_mode,
            host_path=client.V1HostPathVolumeSource(path=str(path), type="DirectoryOrCreate"),
            claim_ref=client.V1ObjectReference(kind="PersistentVolumeClaim", api_version="v1",
                                               namespace=meta.namespace, name=meta.name, uid=meta.uid),
        ),
    )


def provision(core: client.CoreV1Api, pvc: client.V1PersistentVolumeClaim, root: Path) -> None:
    if not wanted(pvc):
        return
    try:
        core.create_persistent_volume(volume_for(pvc, root))
        print(f"provisioned pvc-{pvc.metadata.uid} for {pvc.metadata.namespace}/{pvc.metadata.name}", flush=True)
    except ApiException as e:
        if e.status != 409:  # 409: made on an earlier pass, the PV controller has not bound it yet
            raise


def run_once(core: client.CoreV1Api, root: Path) -> None:
    """List, provision what is pending, then follow a watch until it times out (the caller loops)."""
    pvcs = core.list_persistent_volume_claim_for_all_namespaces()
    for pvc in pvcs.items:
        provision(core, pvc, root)
    # A bounded watch: a re-list every 30 s also retries anything a failed create left behind.
    for event in watch.Watch().stream(core.list_persistent_volume_claim_for_all_namespaces,
                                      resource_version=pvcs.metadata.resource_version, timeout_seconds=30):
        if event["type"] in ("ADDED", "MODIFIED"):
            provision(core, event["object"], root)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--dir", required=True, type=Path, help="the test bed's folder; volumes go under DIR/volumes")
    args = p.parse_args(argv)
    config.load_kube_config(config_file=args.kubeconfig)
    core = client.CoreV1Api()
    root = args.dir.resolve() / "volumes"
    while True:
        try:
            run_once(core, root)
        except Exception as e:  # the API server restarts in some tests: keep going, retry after a pause
            print(f"provisioner: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            time.sleep(1)


if __name__ == "__main__":
    main()
