"""``llmtj-operator`` / ``python -m llmtj_operator``: run the operator (kubeconfig or in-cluster)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

import kopf


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="llmtj-operator", description="Reconcile LLMTrainingJobs into elastic torchrun "
                                "pod groups.")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)")
    p.add_argument("--kubeconfig", help="kubeconfig file; default: in-cluster, else $KUBECONFIG or ~/.kube/config")
    p.add_argument("--job-defaults", default=os.environ.get("LLMTJ_JOB_DEFAULTS") or None,
                   help="YAML file of cluster-wide job defaults: image, nodeSelector, tolerations, priorityClassName, "
                        "queueName, checkpoint storage (env LLMTJ_JOB_DEFAULTS; the chart's jobDefaults); unset: the "
                        "built-in ones")
    p.add_argument("--health", default="http://0.0.0.0:8080/healthz", help="liveness endpoint for the probes")
    p.add_argument("--metrics", default="0.0.0.0:9451", help="HOST:PORT of the Prometheus endpoint (/metrics); "
                   "empty: none")
    p.add_argument("--peering", default=os.environ.get("LLMTJ_PEERING") or None,
                   help="run as one of several replicas, exactly one acting, through kopf's peering object of this "
                        "name (env LLMTJ_PEERING; needs the kopf.dev peering CRDs); unset: run alone")
    p.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # kopf's "Handler ... succeeded", once per watch event: thousands of lines an hour
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    from . import handlers  # registers the handlers
    from .defaults import DefaultsError, load

    try:
        handlers.DEFAULTS = load(args.job_defaults)
    except DefaultsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from .metrics import serve

    if args.metrics:
        serve(args.metrics)
    from .peering import own_identity, peering_object, priority
    from .resync import Resync

    if args.peering:  # the shared record of the replicas; kopf only updates it
        for ns in args.namespace or [None]:
            handlers.kube().ensure_peering(peering_object(args.peering, ns))
    identity, rank = own_identity(), priority() if args.peering else None
    handlers.start(args.namespace or None, peering=bool(args.peering))
    Resync(handlers.kube, handlers.CACHE, handlers.run, handlers.last_pass, handlers.ACTING,
           namespaces=args.namespace or None, peering=args.peering, identity=identity, priority=rank).start()
    asyncio.run(kopf.operator(
        clusterwide=not args.namespace, namespaces=args.namespace, liveness_endpoint=args.health,
        standalone=not args.peering, peering_name=args.peering, priority=rank, identity=identity,
    ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
