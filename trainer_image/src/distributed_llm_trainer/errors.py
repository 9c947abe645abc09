"""The one exception type for bad user input, and how an entry point reports it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class UserError(Exception):
    """Bad input from the user: reported as one ``error: <what>: <why and fix>`` line, exit code 2."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")
        self.what = what
        self.why = why

    def line(self) -> str:
        return f"error: {self.what}: {self.why}"


def run_cli(main: Callable[[], T]) -> T:
    """Call ``main``; turn a UserError into one stderr line and exit 2 (no traceback)."""
    try:
        return main()
    except UserError as e:
        print(e.line(), file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted: stopped by the user (Ctrl-C); resume with --resume", file=sys.stderr)
        sys.exit(130)


class ArgParser(argparse.ArgumentParser):
    """argparse whose usage errors are one ``error: command line: ...`` line (exit 2), like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError("command line", f"{message}; see --help")
