"""Check exact resume: train straight, then again with SIGKILLs and --resume; compare losses and weights.

    python scripts/check_resume.py --config config/debug.yaml training.max_steps=30 --kills 3
    python scripts/check_resume.py --config config/debug.yaml --kill-at 7 --kill-at 19

Prints one JSON line; exit 0 when the final weights are bitwise equal and the losses match, 1 otherwise.
"""

import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from distributed_llm_trainer.errors import ArgParser, UserError, run_cli  # noqa: E402

SCRIPT = Path(__file__).resolve().parent / "run_training.py"


def _train(config: str, overrides: list[str], out: Path, name: str, kill_at: int | None, resume: bool) -> int:
    env = dict(os.environ)
    env.pop("DLT_FAULT_KILL_AT_STEP", None)
    if kill_at is not None:
        env["DLT_FAULT_KILL_AT_STEP"] = str(kill_at)
    cmd = [sys.executable, str(SCRIPT), "--config", config, *overrides, f"run.output_dir={out}", f"run.name={name}",
           "run.deterministic=true", "checkpoint.export_hf=false", "logging.progress_bar=false",
           "logging.report=false", "logging.sample_tokens=0"]
    if resume:
        cmd += ["--resume", str(out / name)]
    elif (out / name).exists():  # killed before its first checkpoint: start that run again
        cmd += ["--overwrite"]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # A killed multi-process job may end through the rank watchdog (exit 1, "died") instead of the SIGKILL itself.
    killed = proc.returncode == -9 or (kill_at is not None and proc.returncode == 1 and "died" in proc.stderr)
    if proc.returncode != 0 and not killed:
        sys.stderr.write(proc.stderr[-3000:])
        raise UserError("training", f"run {name} failed with exit code {proc.returncode} (output above)")
    return -9 if killed else 0


def _losses(run: Path) -> dict[int, float]:
    import csv

    out: dict[int, float] = {}
    with open(run / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                out[int(float(row["step"]))] = float(row["train/loss"])  # a replayed step keeps its last value
    return out


def _weights(run: Path) -> dict:
    from distributed_llm_trainer.training.checkpoint_io import load_checkpoint_file

    return load_checkpoint_file(run / "checkpoints" / "last.ckpt")["state_dict"]


def main() -> int:
    p = ArgParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("overrides", nargs="*")
    p.add_argument("--kill-at", type=int, action="append", default=[], help="optimizer step to SIGKILL after")
    p.add_argument("--kills", type=int, default=0, help="number of kills at seeded random steps")
    p.add_argument("--seed", type=int, default=0, help="seed for the random kill steps")
    p.add_argument("--workdir", default=None, help="folder for the two runs (default: a temp dir)")
    a = p.parse_args()

    from distributed_llm_trainer.config import load_config
    from distributed_llm_trainer.training.budget import compute_budget  # noqa: F401  (import check)

    cfg = load_config(a.config, a.overrides)
    max_steps = cfg.training.max_steps
    if max_steps is None or max_steps < 3:
        raise UserError("training.max_steps", "check_resume needs training.max_steps >= 3 (a fixed length)")
    kills = sorted(set(a.kill_at))
    if a.kills:
        rng = random.Random(a.seed)
        kills = sorted(set(kills) | set(rng.sample(range(1, max_steps), min(a.kills, max_steps - 1))))
    if not kills or kills[-1] >= max_steps or kills[0] < 1:
        raise UserError("--kill-at", f"give kill steps between 1 and {max_steps - 1} (or --kills N)")

    work = Path(a.workdir or tempfile.mkdtemp(prefix="check-resume-"))
    _train(a.config, a.overrides, work, "straight", None, resume=False)
    resumed = False
    for k in kills:
        code = _train(a.config, a.overrides, work, "interrupted", k, resume=resumed)
        if code != -9:
            raise UserError("--kill-at", f"the run finished before step {k}; choose earlier kill steps")
        resumed = resumed or (work / "interrupted" / "checkpoints").is_dir()
    _train(a.config, a.overrides, work, "interrupted", None, resume=resumed)

    import torch

    wa, wb = _weights(work / "straight"), _weights(work / "interrupted")
    max_diff = max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)
    bitwise = wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    la, lb = _losses(work / "straight"), _losses(work / "interrupted")
    common = sorted(set(la) & set(lb))
    loss_diff = max((abs(la[s] - lb[s]) for s in common), default=float("nan"))
    ok = bitwise and bool(common) and loss_diff == 0.0 and set(la) == set(lb)
    print(json.dumps({"ok": ok, "kills": kills, "bitwise_equal": bitwise, "max_weight_diff": max_diff,
                      "max_loss_diff": loss_diff, "steps_compared": len(common), "workdir": str(work)}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_cli(main))
