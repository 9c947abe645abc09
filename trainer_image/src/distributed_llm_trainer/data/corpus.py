"""The embedded default corpus: this interpreter's own standard-library ``.py`` sources.

Real text that exists on every machine with Python, needs no network, and is large enough (~10 MB) for a
meaningful small run. One document per file, files in sorted order so every machine with the same Python
builds the same corpus. Tests, IDLE, vendored third-party code and generated tables are left out: they are
slow to tokenize and not representative text.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

# Top-level stdlib folders left out: test suites, GUI/IDE code, bundled wheels, code-generation tables.
_SKIP_DIRS = frozenset(
    {
        "site-packages",
        "dist-packages",
        "test",
        "tests",
        "idlelib",
        "lib2to3",
        "turtledemo",
        "ensurepip",
        "pydoc_data",
        "encodings",
        "__pycache__",
        "tkinter",
    }
)


def stdlib_root() -> Path:
    """Folder of the running interpreter's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"]).resolve()


def stdlib_files() -> list[Path]:
    """Sorted ``.py`` files of the standard library (no site-packages, tests or IDLE)."""
    root = stdlib_root()
    out: list[Path] = []
    for folder, dirs, files in os.walk(root):
        # Prune skipped folders in place so their (large) trees are never walked.
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS and not d.startswith("config-")]
        out.extend(Path(folder) / f for f in files if f.endswith(".py"))
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def stdlib_description() -> str:
    """Short human name of the corpus, e.g. for logs: ``python 3.11 stdlib (/usr/lib/python3.11)``."""
    return f"python {sys.version_info.major}.{sys.version_info.minor} stdlib ({stdlib_root()})"
