"""Annotation tables -> one row per call: file, onset_s, offset_s, label.

Raven selection tables (multi-file, with ``Begin File`` and ``File Offset (s)``) and a simple CSV
(``file`` or ``wav_file``, ``onset_s``, ``offset_s`` and a label column) are read here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

COLUMNS = ["file", "onset_s", "offset_s", "label", "row"]


class AnnotationError(ValueError):
    """The annotation table itself is unusable (missing, unparseable, lacks a needed column)."""


def read_annotations(path: str | Path, fmt: str, label_column: str) -> pd.DataFrame:
    """Read an annotation table into the columns file, onset_s, offset_s, label, row (1-based line)."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"annotation table not found: {path}")
    readers = {"raven": _read_raven, "csv": _read_csv}
    if fmt not in readers:
        raise AnnotationError(f"unknown annotation format {fmt!r}; allowed: {sorted(readers)}")
    try:
        table = pd.read_csv(path, sep="\t" if fmt == "raven" else ",", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: cannot parse as {fmt} table: {exc}") from exc
    if label_column not in table.columns:
        raise AnnotationError(
            f"{path}: label column {label_column!r} not found; columns are {list(table.columns)}"
        )
    out = readers[fmt](table, path)
    out["label"] = table[label_column].str.strip().replace("", pd.NA)
    out["row"] = range(2, len(table) + 2)  # line number in the file, header is line 1
    return out[COLUMNS]


def _require(table: pd.DataFrame, path: Path, *names: str) -> None:
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise AnnotationError(f"{path}: missing column(s) {missing}; columns are {list(table.columns)}")


def _numbers(table: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(table[column], errors="coerce")


def _read_raven(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    _require(table, path, "Begin Time (s)", "End Time (s)", "Begin File")
    begin, end = _numbers(table, "Begin Time (s)"), _numbers(table, "End Time (s)")
    onset = _numbers(table, "File Offset (s)") if "File Offset (s)" in table.columns else begin
    return pd.DataFrame({"file": table["Begin File"], "onset_s": onset, "offset_s": (onset + (end - begin)).round(6)})


def _read_csv(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    file_col = "file" if "file" in table.columns else "wav_file"
    _require(table, path, file_col, "onset_s", "offset_s")
    onset, offset = _numbers(table, "onset_s"), _numbers(table, "offset_s")
    return pd.DataFrame({"file": table[file_col], "onset_s": onset, "offset_s": offset})
