"""The README shows exactly the job the end-to-end test applies, and its commands name files that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_shows_the_tested_example_job_verbatim():
    job = (ROOT / "manifests" / "examples" / "job.yaml").read_text().rstrip("\n")
    assert f"```yaml\n{job}\n```" in README


def test_every_path_the_readme_runs_exists():
    paths = set(re.findall(r"(?:\.venv/bin/python |bash |sbatch |-f )((?:trainer_image|tests|manifests|crds|bench)"
                           r"/[\w./-]+)", README))
    assert paths, "no commands found"
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, missing


def test_commands_use_the_virtual_environment():
    """Set-up makes .venv and never activates it: a bare `python` would be the wrong interpreter."""
    bare = [ln for ln in README.splitlines() if re.match(r"^\s*python3? (?!-m venv)", ln)]
    assert not bare, bare
