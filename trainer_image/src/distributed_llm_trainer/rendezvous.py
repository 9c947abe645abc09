"""``llmtj-rendezvous``: a standalone store for torchrun's c10d rendezvous, so that no worker has to host it.

With ``--rdzv-backend=c10d`` the rendezvous state lives in a TCPStore that, by default, the agent on the
endpoint's host serves: lose that worker and every agent loses the rendezvous (Kubeflow PyTorchJob's worker-0
problem, their issue #1638). The operator runs this process in a pod of its own; the workers point
``PET_RDZV_ENDPOINT`` at it with ``is_host=false`` in ``PET_RDZV_CONF``, so any worker can go and the rest re-form.

It holds a few keys per rendezvous round (bytes, not tensors) and serves until SIGTERM/SIGINT (exit 0).
"""

from __future__ import annotations

import argparse
import signal
import sys
from datetime import timedelta


def serve(host: str, port: int) -> None:
    """Serve the store until SIGTERM or SIGINT; prints one ``ready`` line once it accepts connections."""
    from torch.distributed import TCPStore

    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # delivered to sigwait below, not as an exception mid-start
    store = TCPStore(host, port, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=60))
    print(f"llmtj-rendezvous: ready on {host}:{store.port}", flush=True)
    signal.sigwait(stop)
    print("llmtj-rendezvous: stopping", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="llmtj-rendezvous", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    parser.add_argument("--port", type=int, default=29400, help="TCP port (default: torchrun's 29400)")
    args = parser.parse_args(argv)
    try:
        serve(args.host, args.port)
    except (RuntimeError, OSError) as e:  # the port is taken, or the address is not ours
        print(f"error: --port: cannot listen on {args.host}:{args.port} ({e}); free the port or choose another",
              file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
