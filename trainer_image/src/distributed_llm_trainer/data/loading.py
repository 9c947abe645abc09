"""Load a ``Source`` into a Hugging Face ``datasets`` table with exactly one column, ``text``.

Local ``.txt`` files are one document per file (read by us, so bad UTF-8 is reported with file and offset);
``.jsonl``/``.json``/``.csv``/``.parquet`` go through the ``datasets`` builders with ``data.text_field`` as
the text column. Arrow files made for local sources go to ``workdir`` (a temporary folder the caller
deletes), hub datasets use the normal HF cache so a warm cache works offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from ..config.schema import DataConfig
from ..errors import UserError
from .sources import Source
from .utf8 import checked_copy, read_text

# Builders whose files are text that may carry bad UTF-8 (parquet strings are validated by Arrow).
_TEXT_FORMATS = ("json", "csv")


def hub_error(cfg: DataConfig, exc: BaseException) -> UserError:
    """One readable error for an unreachable / unknown hub dataset."""
    what = cfg.hf_name + (f" (config {cfg.hf_config})" if cfg.hf_config else "")
    reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return UserError(
        "data.hf_name",
        f"cannot load dataset '{what}' split '{cfg.hf_split}' ({reason}); check the name, data.hf_config and "
        "data.hf_split, or when offline warm the HF cache first and set HF_HUB_OFFLINE=1",
    )


def _txt_documents(files: list[str], errors: str) -> Any:
    # Generator for Dataset.from_generator: one row per file. Top-level so datasets can hash it.
    for f in files:
        yield {"text": read_text(Path(f), errors)}


def _only_text(ds: Any, field: str, where: str) -> Any:
    """Keep ``field`` as the single column ``text`` (UserError naming the columns when it is missing)."""
    cols = list(ds.column_names or [])
    if ds.column_names is not None and field not in cols:
        raise UserError(
            "data.text_field", f"'{field}' is not a column of {where} (columns: {cols}); set data.text_field"
        )
    drop = [c for c in cols if c != field]
    if drop:
        ds = ds.remove_columns(drop)
    if field != "text":
        ds = ds.rename_column(field, "text")
    return ds


def _load_files(source: Source, cfg: DataConfig, workdir: Path | None, streaming: bool) -> Any:
    parts = []
    groups = source.files_by_format()
    if cfg.max_documents is not None and list(groups) == ["text"]:
        groups["text"] = groups["text"][: cfg.max_documents]  # one document per file: read only what is used
    for fmt, files in groups.items():
        where = str(files[0]) if len(files) == 1 else f"'{cfg.path}' ({fmt} files)"
        if fmt == "text":
            if streaming:  # bad bytes are reported (or replaced) when the stream reaches them
                gen_kwargs = {"files": [str(f) for f in files], "errors": cfg.encoding_errors}
                ds = datasets.IterableDataset.from_generator(_txt_documents, gen_kwargs=gen_kwargs)
            else:
                if cfg.encoding_errors == "error":
                    for f in files:  # fail before building anything, naming the file and byte offset
                        checked_copy(f, "error", None)
                assert workdir is not None
                gen_kwargs = {"files": [str(f) for f in files], "errors": "replace"}
                ds = datasets.Dataset.from_generator(
                    _txt_documents, gen_kwargs=gen_kwargs, cache_dir=str(workdir / "hf"), keep_in_memory=False
                )
            parts.append(ds)
            continue
        paths = [str(f) for f in files]
        if fmt in _TEXT_FORMATS:
            paths = [str(checked_copy(f, cfg.encoding_errors, workdir / "utf8" if workdir else None)) for f in files]
        cache_dir = str(workdir / "hf") if workdir is not None else None
        try:
            ds = datasets.load_dataset(fmt, data_files=paths, split="train", streaming=streaming, cache_dir=cache_dir)
        except Exception as e:  # noqa: BLE001 - a malformed file is a user problem; name it in one line
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise UserError("data.path", f"cannot read {where} as {fmt}: {first}; fix the file") from None
        parts.append(_only_text(ds, cfg.text_field, where))
    if len(parts) == 1:
        return parts[0]
    return datasets.concatenate_datasets(parts)


def _load_hub(source: Source, cfg: DataConfig, streaming: bool) -> Any:
    try:
        ds = datasets.load_dataset(source.hf_name, source.hf_config, split=source.hf_split, streaming=streaming)
    except Exception as e:  # noqa: BLE001 - network, auth, unknown name, bad split: all fixed by the user
        raise hub_error(cfg, e) from None
    if streaming and ds.column_names is None:
        # Unknown schema until the first row arrives: peek once to validate the text field.
        first = next(iter(ds.take(1)), None)
        if first is not None and cfg.text_field not in first:
            raise UserError(
                "data.text_field",
                f"'{cfg.text_field}' is not a column of {source.description} (columns: {list(first)}); "
                "set data.text_field",
            )
        ds = ds.select_columns([cfg.text_field])
        return ds.rename_column(cfg.text_field, "text") if cfg.text_field != "text" else ds
    return _only_text(ds, cfg.text_field, source.description)


def load_documents(source: Source, cfg: DataConfig, workdir: Path | None, streaming: bool = False) -> Any:
    """``datasets.Dataset`` (or ``IterableDataset`` when streaming) with one ``text`` column, source order.

    ``workdir`` holds Arrow files made from local sources; streaming makes none and passes None.
    """
    datasets.disable_progress_bars()
    if source.kind == "hub":
        return _load_hub(source, cfg, streaming)
    return _load_files(source, cfg, workdir, streaming)
