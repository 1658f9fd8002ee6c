"""Human annotations of calls -> one table, one row per call: file, onset_s, offset_s, label, row.

Every format that ``crowsetta`` reads is read with crowsetta: it is well kept, tested against real files from
each program, and is what vak uses, so we do not keep parsers of our own. Only our simple CSV, and the
multi-recording Raven layout that crowsetta does not know, are read with pandas.

Formats (``fmt``) and what a row comes from:

- ``csv``: one table for many recordings; columns ``file`` (or ``wav_file``), ``onset_s``, ``offset_s`` and the
  label column. Bad numbers become NaN here and are reported per row downstream.
- ``raven``: Raven selection tables (tab-separated). With a ``Begin File`` column, one table lists many recordings
  (onset = ``File Offset (s)``, offset = onset + End - Begin; pandas). Without it, one table per recording
  (crowsetta ``raven``), the recording named by the table's stem (``bird1.Table.1.selections.txt`` -> ``bird1.*``).
  Waveform and Spectrogram views of one selection are one call: Waveform duplicates are dropped.
- ``audacity``: Audacity label tracks (crowsetta ``aud-seq``), one ``.txt`` per recording of the same stem.
  crowsetta (5.1.2) refuses an Audacity or per-recording Raven file with an empty label or a time that is not a
  float: that whole file is reported unreadable (never half read).
- ``notmat``: evsonganaly ``.not.mat`` files (crowsetta ``notmat``); ``x.cbin.not.mat`` annotates ``x.cbin``.
  Each character of ``labels`` is one call's label; onsets and offsets are converted from ms to s.
- ``textgrid``: Praat TextGrids (crowsetta's TextGrid parser), one per recording of the same stem; the interval tier
  named like the label column, else the first interval tier; intervals with empty text are gaps, not calls.

``path`` is one annotation file or a folder searched recursively. In a folder, a file that cannot be read is
logged and listed in ``table.attrs["unreadable"]`` as ``(annotation file, reason)``; the rest is still used.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.errors
import scipy.io.matlab
from crowsetta.formats.bbox import Raven
from crowsetta.formats.seq import AudSeq, NotMat
from crowsetta.formats.seq.textgrid.classes import IntervalTier
from crowsetta.formats.seq.textgrid.parse import parse as parse_textgrid

from quagga.audio import io
from quagga.tables import text_encoding

log = logging.getLogger(__name__)

COLUMNS = ["file", "onset_s", "offset_s", "label", "row"]
FORMATS = ("csv", "raven", "audacity", "notmat", "textgrid")

_RAVEN_TIMES = ("Begin Time (s)", "End Time (s)")
_RAVEN_FREQS = ("Low Freq (Hz)", "High Freq (Hz)")  # crowsetta's raven format needs them too
_RAVEN_TABLE_SUFFIX = re.compile(r"\.Table\.\d+\.selections$", flags=re.IGNORECASE)
_SCHEMA_ERRORS = (pandera.errors.SchemaError, pandera.errors.SchemaErrors)


class AnnotationError(ValueError):
    """The annotation source itself is unusable (missing, unparseable, lacks a needed column)."""


class _Unreadable(ValueError):
    """One annotation file cannot be used; the message says why (without the file name)."""


@dataclass
class _Source:
    """One annotation file and what its reader needs."""

    path: Path
    folder: Path  # names in ``file`` and ``row`` are relative to this folder
    label_column: str
    listings: dict[Path, list[str]] = field(default_factory=dict)  # folder -> file names, shared by one call

    @property
    def name(self) -> str:
        return self.path.relative_to(self.folder).as_posix()

    def recording(self, stem: str) -> str:
        """The recording a per-recording file annotates: a sibling ``stem.<audio suffix>``, else ``stem.wav``."""
        parent = self.path.parent
        if Path(stem).suffix.lower() in io.AUDIO_SUFFIXES:
            name = stem
        else:
            if parent not in self.listings:
                self.listings[parent] = sorted(p.name for p in parent.iterdir() if p.is_file())
            found = {n[len(stem):].lower(): n for n in self.listings[parent] if n.startswith(stem)}
            name = next((found[s] for s in io.AUDIO_SUFFIXES if s in found), f"{stem}.wav")
        return (parent / name).relative_to(self.folder).as_posix()


def read_annotations(path: str | Path, fmt: str, label_column: str) -> pd.DataFrame:
    """Read one annotation file, or every file of ``fmt`` under a folder, into the columns ``COLUMNS``.

    ``label_column`` names the label column (csv, raven) or interval tier (textgrid); audacity and notmat files
    have one label per call and ignore it. For per-recording formats ``file`` is the recording's path relative to
    the annotation folder (POSIX). ``row`` locates the row for a human (``"sub/a.txt line 5"``).
    Files that cannot be read in a folder are listed in ``attrs["unreadable"]`` as ``(annotation file, reason)``;
    if none can be read, or the path is a single file that cannot be read, ``AnnotationError`` is raised.
    """
    path = Path(path)
    if fmt not in _READERS:
        raise AnnotationError(f"unknown annotation format {fmt!r}; allowed: {list(FORMATS)}")
    if not path.exists():
        raise AnnotationError(f"annotations not found: {path}")
    reader = _READERS[fmt]
    if not path.is_dir():
        try:
            table = _read_one(reader, _Source(path, path.parent, label_column))
        except _Unreadable as exc:
            raise AnnotationError(f"{path}: {exc}") from exc
        table.attrs["unreadable"] = []
        return table
    files = _find_files(path, fmt)
    if not files:
        raise AnnotationError(f"no {fmt} annotation files found in {path}")
    listings: dict[Path, list[str]] = {}
    parts, unreadable = [], []
    for file in files:
        source = _Source(file, path, label_column, listings)
        try:
            parts.append(_read_one(reader, source))
        except _Unreadable as exc:
            log.warning("annotation file %s skipped: %s", file, exc)
            unreadable.append((source.name, str(exc)))
    if not parts:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in unreadable[:5])
        more = f" (and {len(unreadable) - 5} more)" if len(unreadable) > 5 else ""
        raise AnnotationError(f"none of the {len(files)} {fmt} annotation files in {path} could be read: "
                              f"{reasons}{more}")
    table = pd.concat(parts, ignore_index=True)
    table.attrs["unreadable"] = unreadable
    return table


def label_column_problem(path: str | Path, fmt: str, label_column: str) -> str | None:
    """Why no table at ``path`` has the column ``label_column`` (None if one has, or the format has no label
    column), from the headers alone: the workflow checks this at start, before any job runs."""
    if fmt not in ("csv", "raven"):  # audacity, notmat: one label per call; textgrid: the first tier otherwise
        return None
    path = Path(path)
    files = _find_files(path, fmt) if path.is_dir() else [path]
    headers = []
    for file in files:
        try:
            header = list(pd.read_csv(file, sep="," if fmt == "csv" else "\t", nrows=0,
                                      encoding=text_encoding(file)).columns)
        except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
            continue  # an unreadable table is reported by the tiles job, with the rest of its problems
        if label_column in header:
            return None
        headers.append(header)
    if not headers:
        return None
    where = path if len(files) == 1 else f"any of the {len(files)} {fmt} tables in {path}"
    return f"{label_column!r} is not a column of {where}; columns are {headers[0]}"


def _read_one(reader: Callable[[_Source], pd.DataFrame], source: _Source) -> pd.DataFrame:
    try:
        return reader(source)
    except OSError as exc:  # permissions, a file removed meanwhile, ...
        raise _Unreadable(f"cannot open: {_reason(exc)}") from exc


def _find_files(folder: Path, fmt: str) -> list[Path]:
    """Files of ``fmt`` under ``folder`` (recursive, hidden files and folders left out), in name order."""
    suffix = {"csv": ".csv", "raven": ".txt", "audacity": ".txt", "notmat": ".not.mat", "textgrid": ".textgrid"}[fmt]
    found = []
    for file in sorted(folder.rglob("*")):
        relative = file.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not file.name.lower().endswith(suffix):
            continue
        if file.is_file() and (fmt != "raven" or _is_selection_table(file)):
            found.append(file)
    return found


def _is_selection_table(file: Path) -> bool:
    with file.open(encoding="utf-8", errors="replace") as stream:
        header = stream.readline().rstrip("\r\n").split("\t")
    return all(name in header for name in _RAVEN_TIMES)


def _strip(name: str, suffix: str) -> str:
    """``name`` without ``suffix`` (any case), or without its last suffix when it ends otherwise."""
    return name[: -len(suffix)] if name.lower().endswith(suffix) else Path(name).stem


def _reason(exc: BaseException) -> str:
    """An exception as one line, short enough for a table cell."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _frame(file: object, onset: object, offset: object, label: object, row: list[str]) -> pd.DataFrame:
    """The output columns with their dtypes; ``label`` is stripped and empty labels become NA.

    Text columns are pandas' ``string`` dtype (Arrow-backed), not Python objects, and columns that come in
    as pandas Series are converted as they are (not through an array of Python objects): a million-call
    table's file and row names take a third of the memory, and reading it leaves less behind (koumura-bird0
    16x: 65 -> 41 MiB more after reading its table, with only its four columns read)."""
    n = len(row)

    def column(values: object) -> pd.Series:
        if isinstance(values, pd.Series):
            return values.reset_index(drop=True)
        return pd.Series(np.broadcast_to(np.asarray(values, dtype=object), (n,)), dtype=object)

    return pd.DataFrame({
        "file": column(file).astype("string"),
        "onset_s": pd.to_numeric(column(onset), errors="coerce").astype(float),
        "offset_s": pd.to_numeric(column(offset), errors="coerce").astype(float),
        "label": column(label).astype("string").str.strip().replace("", pd.NA),
        "row": pd.Series(row, dtype="string"),
    }, columns=COLUMNS)


def _empty() -> pd.DataFrame:
    return _frame([], [], [], [], [])


def _require(columns: list[str], *names: str) -> None:
    missing = [n for n in names if n not in columns]
    if missing:
        raise _Unreadable(f"missing column(s) {missing}; columns are {columns}")


def _require_label(columns: list[str], label_column: str) -> None:
    if label_column not in columns:
        raise _Unreadable(f"label column {label_column!r} not found; columns are {columns}")


def _read_table(path: Path, sep: str, what: str, columns: list[str] | None = None, rows: int | None = None
                ) -> pd.DataFrame:
    """A text table with every cell a string ('' when empty), as our own readers want it; only ``columns``
    when given (a million-call table's other columns would be parsed into strings nothing reads)."""
    try:
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding=text_encoding(path),
                           usecols=columns, nrows=rows)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise _Unreadable(f"cannot parse as {what}: {_reason(exc)}") from exc


def _read_csv(source: _Source) -> pd.DataFrame:
    columns = list(_read_table(source.path, ",", "CSV", rows=0).columns)
    file_column = "wav_file" if "file" not in columns and "wav_file" in columns else "file"
    if file_column not in columns:
        raise _Unreadable(f"missing column 'file' (or 'wav_file'); columns are {columns}")
    _require(columns, "onset_s", "offset_s")
    _require_label(columns, source.label_column)
    table = _read_table(source.path, ",", "CSV", list(dict.fromkeys([file_column, "onset_s", "offset_s",
                                                                     source.label_column])))
    rows = [f"{source.name} line {i}" for i in range(2, len(table) + 2)]  # the header is line 1
    return _frame(table[file_column], table["onset_s"], table["offset_s"], table[source.label_column], rows)


def _one_per_selection(table: pd.DataFrame, key: list[str]) -> np.ndarray:
    """Rows to keep: Raven writes a selection once per view; a Waveform row goes when another view has it."""
    if "View" not in table.columns:
        return np.ones(len(table), dtype=bool)
    keys = table[key].astype(str).agg("\t".join, axis=1)
    waveform = table["View"].astype(str).str.startswith("Waveform")
    keep = np.array(~(waveform & keys.isin(keys[~waveform])), dtype=bool)
    keep[keep] = ~keys[keep].duplicated().to_numpy()  # e.g. two Spectrogram views of one selection
    return keep


def _read_raven(source: _Source) -> pd.DataFrame:
    lines = source.path.read_text(encoding=text_encoding(source.path)).splitlines()
    columns = lines[0].split("\t") if lines else []
    if "Begin File" in columns:
        return _read_raven_multi(source)
    _require(columns, *_RAVEN_TIMES, *_RAVEN_FREQS)
    _require_label(columns, source.label_column)
    if not any(line.strip() for line in lines[1:]):
        return _empty()  # a recording without calls; crowsetta refuses a table with no rows
    try:
        df = Raven.from_file(source.path, annot_col=source.label_column).df
    except (ValueError, KeyError, *_SCHEMA_ERRORS) as exc:
        raise _Unreadable(f"cannot read as a Raven selection table: {_reason(exc)}") from exc
    keep = _one_per_selection(df, ["Selection"] if "Selection" in df.columns else ["begin_time_s", "end_time_s"])
    df = df[keep]
    stem = _RAVEN_TABLE_SUFFIX.sub("", _strip(source.path.name, ".txt"))
    rows = [f"{source.name} line {i + 2}" for i in df.index]
    return _frame(source.recording(stem), df["begin_time_s"], df["end_time_s"], df["annotation"], rows)


def _read_raven_multi(source: _Source) -> pd.DataFrame:
    """A Raven table listing many recordings (``Begin File``); crowsetta does not read this layout."""
    table = _read_table(source.path, "\t", "a Raven selection table")
    columns = list(table.columns)
    _require(columns, *_RAVEN_TIMES, "Begin File")
    _require_label(columns, source.label_column)
    key = ["Selection"] if "Selection" in columns else list(_RAVEN_TIMES)
    table = table[_one_per_selection(table, key)]
    begin = pd.to_numeric(table["Begin Time (s)"], errors="coerce")
    end = pd.to_numeric(table["End Time (s)"], errors="coerce")
    onset = pd.to_numeric(table["File Offset (s)"], errors="coerce") if "File Offset (s)" in columns else begin
    rows = [f"{source.name} line {i + 2}" for i in table.index]
    return _frame(table["Begin File"], onset, (onset + (end - begin)).round(6), table[source.label_column], rows)


def _read_audacity(source: _Source) -> pd.DataFrame:
    if not source.path.read_bytes().strip():
        return _empty()  # a recording without calls
    try:
        labels = AudSeq.from_file(source.path)
    except (ValueError, KeyError, *_SCHEMA_ERRORS) as exc:
        raise _Unreadable(f"cannot read as an Audacity label track: {_reason(exc)}") from exc
    rows = [f"{source.name} line {i}" for i in range(1, len(labels.labels) + 1)]
    stem = _strip(source.path.name, ".txt")
    return _frame(source.recording(stem), labels.start_times, labels.end_times, labels.labels, rows)


def _read_notmat(source: _Source) -> pd.DataFrame:
    try:
        notmat = NotMat.from_file(source.path)
    except (ValueError, KeyError, TypeError, NotImplementedError, scipy.io.matlab.MatReadError) as exc:
        raise _Unreadable(f"cannot read as an evsonganaly .not.mat file: {_reason(exc)}") from exc
    onsets, offsets, labels = np.atleast_1d(notmat.onsets), np.atleast_1d(notmat.offsets), notmat.labels
    if not len(onsets) == len(offsets) == len(labels):
        raise _Unreadable(f"{len(labels)} labels but {len(onsets)} onsets and {len(offsets)} offsets")
    rows = [f"{source.name} note {i}" for i in range(1, len(labels) + 1)]
    recording = (source.path.parent / _strip(source.path.name, ".not.mat")).relative_to(source.folder).as_posix()
    return _frame(recording, onsets, offsets, labels, rows)


def _read_textgrid(source: _Source) -> pd.DataFrame:
    # crowsetta's parser, called directly: TextGrid.from_file refuses the suffix ".textgrid".
    # A malformed line fails its regex match (AttributeError), an unknown tier type leaves a name unbound.
    try:
        tiers = parse_textgrid(source.path, keep_empty=True)["tiers"]
    except (ValueError, AttributeError, UnboundLocalError) as exc:
        raise _Unreadable(f"cannot parse as a Praat TextGrid: {_reason(exc)}") from exc
    interval_tiers = [t for t in tiers if isinstance(t, IntervalTier)]
    if not interval_tiers:
        raise _Unreadable(f"no interval tier; tiers are {[t.name for t in tiers]}")
    tier = next((t for t in interval_tiers if t.name == source.label_column), interval_tiers[0])
    calls = [(i, iv) for i, iv in enumerate(tier.intervals, 1) if iv.text.strip()]
    rows = [f"{source.name} interval {i}" for i, _ in calls]
    stem = _strip(source.path.name, ".textgrid")
    return _frame(source.recording(stem), [iv.xmin for _, iv in calls], [iv.xmax for _, iv in calls],
                  [iv.text for _, iv in calls], rows)


_READERS: dict[str, Callable[[_Source], pd.DataFrame]] = {
    "csv": _read_csv,
    "raven": _read_raven,
    "audacity": _read_audacity,
    "notmat": _read_notmat,
    "textgrid": _read_textgrid,
}
