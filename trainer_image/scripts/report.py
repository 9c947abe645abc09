"""Rebuild a run's report: ``python scripts/report.py runs/NAME`` writes runs/NAME/report.html and loss.png.

Works on a finished run, one still training, or one that crashed (it needs only metrics.csv).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout without installing

from distributed_llm_trainer.errors import ArgParser, UserError, run_cli  # noqa: E402


def main() -> int:
    p = ArgParser(prog="report.py", description="Write report.html and loss.png into a run directory.")
    p.add_argument("run_dir", help="run directory (runs/<name>)")
    run_dir = Path(p.parse_args().run_dir)
    if not run_dir.is_dir():
        raise UserError("run_dir", f"{run_dir} is not a directory; pass a run directory such as runs/<name>")
    if not any((run_dir / f).is_file() for f in ("metrics.csv", "summary.json", "config.yaml")):
        raise UserError("run_dir", f"{run_dir} holds no run (no metrics.csv, summary.json or config.yaml); "
                                   "pass the directory a training run wrote")
    try:
        from distributed_llm_trainer.monitoring.report import write_report

        path = write_report(run_dir)
    except PermissionError as e:
        raise UserError("run_dir", f"cannot write into {run_dir} ({e.strerror}); copy the run somewhere "
                                   "writable") from None
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
