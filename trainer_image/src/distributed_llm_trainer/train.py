"""``python -m distributed_llm_trainer.train [--config FILE] [section.key=value ...]``: what torchrun runs in a pod.

Under torchrun the world is known only after rendezvous (elastic: any size in MIN:MAX nodes), so the node and
device counts come from the launcher's ``WORLD_SIZE`` and ``LOCAL_WORLD_SIZE``, after the user's overrides.
When ``LLMTJ_TERMINATION_MESSAGE_PATH`` names a file (the pod's terminationMessagePath), rank 0 leaves a short
JSON there at the end (step, checkpoint, stop reason, losses): the operator reads it into the job's status
without the pods needing any access to the Kubernetes API.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

from .errors import UserError, run_cli
from .training.runner import main, repo_default_config

MESSAGE_LIMIT = 4096  # kubelet keeps at most 4096 bytes of a termination message


def world_overrides(env: dict[str, str]) -> list[str]:
    """``distributed.num_nodes``/``devices`` for the world torchrun formed; none outside torchrun."""
    if not env.get("TORCHELASTIC_RUN_ID") or not env.get("WORLD_SIZE") or not env.get("LOCAL_WORLD_SIZE"):
        return []
    world, local = int(env["WORLD_SIZE"]), int(env["LOCAL_WORLD_SIZE"])
    return [f"distributed.num_nodes={max(1, world // local)}", f"distributed.devices={local}"]


def termination_message(summary: dict[str, Any]) -> str:
    """The summary's few fields the operator shows in status, as compact JSON within kubelet's size limit."""
    keys = {"steps": "step", "checkpoint": "checkpoint", "stop_reason": "stopReason",
            "final_train_loss": "trainLoss", "final_val_loss": "valLoss", "world_size": "worldSize"}
    return json.dumps({out: summary[k] for k, out in keys.items() if summary.get(k) is not None})[:MESSAGE_LIMIT]


def permanent(main: Callable[[], int]) -> Callable[[], int]:
    """Bad input is permanent: leave the error line where ``llmtj-worker`` looks (it stops torchrun's retries)."""

    def wrapped() -> int:
        try:
            return main()
        except UserError as e:
            path = os.environ.get("LLMTJ_ERROR_FILE")
            if path:
                with open(path, "a", encoding="utf-8") as f:
                    f.write(e.line() + "\n")
            raise

    return wrapped


def report(summary: dict[str, Any]) -> None:
    path = os.environ.get("LLMTJ_TERMINATION_MESSAGE_PATH")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(termination_message(summary))


def exit_code(code: int) -> int:
    """A rank stopped only because another was signalled exits ``PEER_STOPPED``: its torchrun agent then restarts
    the group, which re-forms without the stopped node (exit 0 would end this node's training for good)."""
    from .training.guards import PEER_STOPPED, stop_cause

    return PEER_STOPPED if code == 0 and stop_cause() == "peer" else code


if __name__ == "__main__":
    argv = [*sys.argv[1:], *world_overrides(dict(os.environ))]
    sys.exit(exit_code(run_cli(permanent(lambda: main(argv, default_config=repo_default_config(),
                                                            on_summary=report)))))
