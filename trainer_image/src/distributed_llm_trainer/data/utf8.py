"""UTF-8 checks for local files: fail naming file and byte offset, or replace bad bytes with U+FFFD."""

from __future__ import annotations

import codecs
from pathlib import Path

from ..errors import UserError

_CHUNK = 1 << 22  # 4 MiB: bounded memory for huge files


def _error(path: Path, offset: int) -> UserError:
    return UserError(
        "data.encoding_errors",
        f"{path}: invalid UTF-8 at byte offset {offset}; "
        "fix or re-encode the file, or set data.encoding_errors=replace",
    )


def first_invalid_byte(path: Path) -> int | None:
    """Offset of the first byte that is not valid UTF-8 (a truncated final sequence counts), else None."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    done = 0  # bytes fully decoded before the current chunk
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            final = not chunk
            pending = len(decoder.getstate()[0])  # undecoded tail bytes carried over from the last chunk
            try:
                decoder.decode(chunk, final=final)
            except UnicodeDecodeError as e:
                # e.start indexes into (carried-over tail + chunk).
                return done - pending + e.start
            if final:
                return None
            done += len(chunk)


def read_text(path: Path, errors: str) -> str:
    """Whole file as text; ``errors`` is ``error`` (UserError with the offset) or ``replace``."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        if errors == "error":
            raise _error(path, e.start) from None
        return data.decode("utf-8", errors="replace")


def checked_copy(path: Path, errors: str, workdir: Path | None) -> Path:
    """``path`` if it is valid UTF-8; else fail (errors=error) or write a repaired copy into ``workdir``."""
    offset = first_invalid_byte(path)
    if offset is None:
        return path
    if errors == "error":
        raise _error(path, offset)
    if workdir is None:  # streaming reads the original file: nowhere to put a repaired copy
        raise UserError(
            "data.encoding_errors",
            f"{path}: invalid UTF-8 at byte offset {offset}; streaming cannot repair json/csv files, "
            "re-encode the file or set data.streaming=false",
        )
    workdir.mkdir(parents=True, exist_ok=True)
    fixed = workdir / f"{len(list(workdir.iterdir())):05d}-{path.name}"
    fixed.write_text(read_text(path, "replace"), encoding="utf-8")
    return fixed
