"""Resume on another world size: Lightning's batch counters re-expressed in the new world's micro-batches.

A checkpoint's loop state counts micro-batches of the world that saved it (``batch_progress``: 12 after 3 steps
at accumulation 4). The sampler state beside it says how many windows all ranks consumed in the epoch
(``consumed``, see ``data/sampler.py``). Resumed with accumulation 2, the loop must stand at 6, or it would step
the optimizer off the accumulation boundaries and validate at the wrong steps. Optimizer steps, the LR schedule
and the token count are counted in optimizer steps and carry over as they are.
"""

from __future__ import annotations

from typing import Any


def find_sampler_state(obj: Any) -> dict[str, Any] | None:
    """The train sampler's state inside the saved loader state (its nesting differs with and without workers)."""
    if isinstance(obj, dict):
        if "sampler_state" in obj and isinstance(obj["sampler_state"], dict):
            return obj["sampler_state"]
        children = obj.values()
    elif isinstance(obj, list | tuple):
        children = obj
    else:
        return None
    for child in children:
        found = find_sampler_state(child)
        if found is not None:
            return found
    return None


def saved_world(checkpoint: dict[str, Any]) -> tuple[int, int] | None:
    """(world size, micro-batch) of the run that wrote ``checkpoint``; None when it does not say."""
    fit = checkpoint.get("loops", {}).get("fit_loop", {})
    state = find_sampler_state(fit.get("state_dict"))
    if not state or "world_size" not in state:
        return None
    return int(state["world_size"]), int(state["batch_size"])


def rescale_batch_progress(checkpoint: dict[str, Any], micro_batch: int, world_size: int) -> int:
    """Shift the fit loop's batch counters to ``consumed / (micro_batch x world_size)``; returns the shift.

    Mutates ``checkpoint`` before Lightning restores its loops from it. Nothing changes when the world and
    micro-batch are the saved ones, or at an epoch's last batch (Lightning then starts the next epoch anyway).
    """
    fit = checkpoint.get("loops", {}).get("fit_loop", {})
    state = find_sampler_state(fit.get("state_dict"))
    progress = fit.get("epoch_loop.batch_progress")
    if not state or "consumed" not in state or not progress or progress.get("is_last_batch"):
        return 0
    if (int(state["world_size"]), int(state["batch_size"])) == (world_size, micro_batch):
        return 0
    delta = int(state["consumed"]) // (micro_batch * world_size) - int(progress["current"]["ready"])
    for part in ("current", "total"):
        for key in progress[part]:
            progress[part][key] += delta
    return delta
