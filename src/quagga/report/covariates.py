"""Covariates: a metadata table keyed by recording or image file, joined to the items, and the cluster
abundance along each of its columns (time, site, individual, depth, core...).

The metadata is a CSV with the file names in a column named ``file`` (else the first column); every other
column is a covariate. An item takes the row of its ``source`` (the path relative to the source root): the
same relative path first, else the same base name, so a sheet listing bare file names fits items found in
sub-folders. What each column shows is decided from its values alone, the same way on every run:

- numbers or ISO dates with more than ``MAX_LEVELS`` distinct values: ``N_BINS`` equal-width bins between
  the smallest and largest value, each with its item count and every cluster's count and share (equal
  width keeps the value axis linear, as in a core's stratigraphy; empty bins stay, as gaps);
- a few values (numbers too), or text with 2 to ``MAX_CATEGORIES`` values: the cluster composition per
  value, with Pearson's chi-square test that the composition (noise left out) does not depend on it;
- a single value, or more text values than that: not shown, with the reason.

Noise is counted in the tables and shares (it is part of what was found), not in the test (HDBSCAN's noise
is not a group). A metadata file the items cannot be joined to is a user error (MetadataError).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency

from quagga.params import ParamsError
from quagga.tables import atomic_path, text_encoding

log = logging.getLogger(__name__)

KEY_COLUMN = "file"  # the metadata column holding file names; absent: the first column
N_BINS = 10  # equal-width bins of a numeric or date column
MAX_LEVELS = 8  # a numeric column with more distinct values is binned, with fewer shown value by value
MAX_CATEGORIES = 30  # a text column with more distinct values is not shown
DOWNWARD = ("depth",)  # a binned column whose name holds one of these is drawn downward, as a core
MIN_EXPECTED = 5  # Cochran's rule: the chi-square p-value is approximate when over 20 % of expected counts
MAX_SMALL_EXPECTED = 0.2  # fall below MIN_EXPECTED

BINNED, CATEGORICAL, NOT_SHOWN = "binned", "categorical", "not shown"
NUMBER, DATE, TEXT = "number", "date", "text"


class MetadataError(ParamsError):
    """The metadata file cannot be read or joined to the items (named with its path)."""


@dataclass(frozen=True)
class Independence:
    """Pearson's chi-square test that the cluster composition does not depend on the covariate.

    ``statistic``, ``dof`` and ``p_value`` are None when the test does not apply (``note`` says why); ``note``
    also carries the caveat when expected counts are small.
    """

    statistic: float | None
    dof: int | None
    p_value: float | None
    n: int  # clustered items in the test
    note: str = ""


@dataclass(frozen=True)
class Covariate:
    """One metadata column as the report shows it: ``kind`` (binned, categorical or not shown), ``note`` (how
    it was binned, or why it is not shown), the ``table`` behind its figure (first column: bin or value; then
    n_items and every cluster's count ``n_<cluster>`` and share ``share_<cluster>``), the test and the file
    name of the table's CSV."""

    name: str
    kind: str
    note: str
    values: str = TEXT  # number, date or text
    table: pd.DataFrame | None = None
    clusters: tuple[int, ...] = ()  # the cluster ids of the table's columns, in order (-1: noise)
    test: Independence | None = None
    csv: str | None = None
    n_missing: int = 0  # items without a value (no metadata row, or the cell empty)


def _normalise(path: object) -> str:
    """A file name as a key: trimmed, forward slashes (a sheet made on Windows), no leading ``./``."""
    text = str(path).strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return text


def read_metadata(path: str | Path) -> pd.DataFrame:
    """The metadata table: column ``file`` (the normalised keys) first, then the covariates, typed as numbers,
    ISO dates or text (empty cells missing).

    Raises MetadataError, naming the file, when it is missing, unreadable, has no covariate column or no file
    names, or repeats a file name.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=text_encoding(path))
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise MetadataError(f"metadata {path}: cannot read as CSV ({exc})") from exc
    table.columns = [str(c).strip() for c in table.columns]
    named = [c for c in table.columns if c.lower() == KEY_COLUMN]
    key = named[0] if named else table.columns[0]
    covariates = [c for c in table.columns if c != key]
    if not covariates:
        raise MetadataError(f"metadata {path}: only the column {key!r}; expected a column of file names "
                            f"({KEY_COLUMN!r}, else the first) and at least one covariate column beside it")
    keys = table[key].map(_normalise)
    if not (keys != "").any():
        raise MetadataError(f"metadata {path}: no file names in its key column {key!r} (the column named "
                            f"{KEY_COLUMN!r}, else the first)")
    repeated = keys[(keys != "") & keys.duplicated(keep=False)]
    if not repeated.empty:
        lines = [str(i + 2) for i in repeated.index[repeated == repeated.iloc[0]]]
        raise MetadataError(f"metadata {path}: file {repeated.iloc[0]!r} is listed more than once (lines "
                            f"{', '.join(lines)}); give each file one row")
    if (keys == "").any():
        log.warning("metadata %s: %d rows without a file name are ignored", path, int((keys == "").sum()))
    out = pd.DataFrame({KEY_COLUMN: keys}).join(table[covariates].apply(_typed))
    return out[keys != ""].reset_index(drop=True)


def _typed(column: pd.Series) -> pd.Series:
    """A column of text cells as numbers (float), else as ISO dates, else as text; empty cells missing."""
    text = column.str.strip().replace("", None).astype("object")
    present = text.notna()
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers[present].notna().all():
        return numbers.astype(float)
    try:
        dates = pd.to_datetime(text, format="ISO8601", errors="coerce")
    except (ValueError, TypeError, OverflowError):
        dates = None
    if dates is not None and dates[present].notna().all():
        return dates
    return text.astype("string")


def join_metadata(sources: pd.Series, metadata: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """The covariates of every item (indexed like ``sources``, the items' source paths): the metadata row of
    the same relative path, else of the same base name (when one row has it); no row: missing values.

    Raises MetadataError when no item finds a row.
    """
    keys = metadata[KEY_COLUMN]
    exact = pd.Series(np.arange(len(keys)), index=keys.to_numpy())
    base = keys.map(lambda k: PurePosixPath(k).name)
    unique = ~base.duplicated(keep=False)
    by_name = pd.Series(np.arange(len(keys))[unique.to_numpy()], index=base[unique].to_numpy())
    names = sources.astype("object").where(sources.notna(), "").map(_normalise)
    row = names.map(exact)
    row = row.fillna(names.map(lambda n: PurePosixPath(n).name).map(by_name))
    matched = row.notna()
    if not matched.any():
        sheet = ", ".join(repr(k) for k in keys.head(3))
        found = ", ".join(repr(s) for s in names.drop_duplicates().head(3))
        raise MetadataError(
            f"metadata {path}: none of its {len(keys)} file names matches an item's source (e.g. {sheet} in the "
            f"sheet; {found} among the items); name the recordings or images as the data set does, relative to "
            "its source root or by base name")
    if not matched.all():
        log.warning("metadata %s: %d of %d items have no row (%d sources): their covariates are missing", path,
                    int((~matched).sum()), len(row), names[~matched].nunique())
    covariates = metadata.drop(columns=KEY_COLUMN)
    joined = covariates.reindex(row.fillna(-1).astype(int).to_numpy())  # -1: no such row, all missing
    joined.index = sources.index
    return joined


def value_kind(values: pd.Series) -> str:
    """Number, date or text: what :func:`read_metadata` made of the column."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return DATE
    return NUMBER if pd.api.types.is_numeric_dtype(values) else TEXT


def cluster_column(cluster: int) -> str:
    """The name of a cluster's columns in the tables (``n_<name>``, ``share_<name>``)."""
    return "noise" if cluster == -1 else f"cluster_{cluster}"


def _cluster_names(clusters: pd.Series) -> list[str]:
    """Noise first, then the clusters in order: the columns of every table."""
    return [cluster_column(k) for k in sorted(set(clusters.astype(int).tolist()))]


def downward(name: str) -> bool:
    """Whether a binned column is drawn with its values running down (depth, as a core is drawn)."""
    return any(word in name.lower() for word in DOWNWARD)


def _composition(rows: pd.Series, clusters: pd.Series, order: list[object], first: str,
                 names: list[str]) -> pd.DataFrame:
    """Per row of ``order`` (the bins' or values' labels, ``rows`` giving each item's): n_items, each
    cluster's count and share (empty rows keep missing shares)."""
    named = clusters.astype(int).map(cluster_column)
    counts = pd.crosstab(rows.to_numpy(dtype=object), named.to_numpy(dtype=object))
    counts = counts.reindex(index=order, columns=names, fill_value=0)
    total = counts.sum(axis=1)
    shares = counts.div(total.where(total > 0), axis=0)
    table = pd.DataFrame({first: order, "n_items": total.to_numpy()})
    for name in names:
        table[f"n_{name}"] = counts[name].to_numpy()
    for name in names:
        table[f"share_{name}"] = shares[name].to_numpy()
    return table


def _seconds(values: pd.Series) -> pd.Series:
    return (values - pd.Timestamp("1970-01-01")) / pd.Timedelta(1, "s")


def _edge_text(value: float, kind: str) -> str:
    if kind == DATE:
        stamp = pd.Timestamp(value, unit="s")
        return stamp.strftime("%Y-%m-%d" if stamp == stamp.normalize() else "%Y-%m-%d %H:%M")
    return f"{value:.4g}"


def abundance_by_bin(values: pd.Series, clusters: pd.Series, n_bins: int = N_BINS) -> pd.DataFrame:
    """Cluster abundance in ``n_bins`` equal-width bins of a numeric or date column (missing values left out):
    columns bin, lower, upper, n_items, then ``n_<cluster>`` and ``share_<cluster>``. The last bin holds its
    upper edge."""
    kind = value_kind(values)
    present = values.notna()
    x = (_seconds(values) if kind == DATE else values.astype(float))[present]
    edges = np.linspace(float(x.min()), float(x.max()), n_bins + 1)
    index = np.clip(np.searchsorted(edges, x.to_numpy(), side="right") - 1, 0, n_bins - 1)
    labels = [f"{_edge_text(lo, kind)} to {_edge_text(hi, kind)}" for lo, hi in zip(edges[:-1], edges[1:],
                                                                                     strict=True)]
    table = _composition(pd.Series(np.asarray(labels, dtype=object)[index], index=x.index), clusters[present],
                         list(labels), "bin", _cluster_names(clusters))
    lower, upper = edges[:-1], edges[1:]
    if kind == DATE:
        lower, upper = (np.array([_edge_text(v, kind) for v in e], dtype=object) for e in (lower, upper))
    table.insert(1, "lower", lower)
    table.insert(2, "upper", upper)
    return table


def value_text(value: object) -> str:
    """A covariate's value as the report writes it: whole numbers without a decimal point, dates as the day
    (with the time when not midnight)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, pd.Timestamp):
        return _edge_text(_seconds(pd.Series([value])).iloc[0], DATE)
    return str(value)


def composition_by_category(values: pd.Series, clusters: pd.Series, name: str) -> pd.DataFrame:
    """The cluster composition of every value of a column (missing values left out; numbers and dates in
    order, text sorted): columns ``name``, n_items, then ``n_<cluster>`` and ``share_<cluster>``."""
    present = values.notna()
    order = sorted(values[present].unique())
    text = {v: value_text(v) for v in order}
    return _composition(values[present].map(text), clusters[present], [text[v] for v in order], name,
                        _cluster_names(clusters))


def independence(table: pd.DataFrame) -> Independence:
    """Chi-square test of "the cluster composition does not depend on the row" on a table of
    :func:`abundance_by_bin` or :func:`composition_by_category`: noise left out, empty rows and clusters
    dropped."""
    counts = table[[c for c in table.columns if c.startswith("n_cluster_")]].to_numpy(dtype=float)
    counts = counts[counts.sum(axis=1) > 0]
    counts = counts[:, counts.sum(axis=0) > 0]
    n = int(counts.sum())
    if counts.shape[0] < 2:
        return Independence(None, None, None, n, "not applicable: the clustered items have fewer than two values")
    if counts.shape[1] < 2:
        return Independence(None, None, None, n, "not applicable: the items fall in fewer than two clusters")
    result = chi2_contingency(counts)
    small = float((result.expected_freq < MIN_EXPECTED).mean())
    note = (f"approximate: {small:.0%} of the expected counts are below {MIN_EXPECTED} (more than "
            f"{MAX_SMALL_EXPECTED:.0%})" if small > MAX_SMALL_EXPECTED else "")
    return Independence(float(result.statistic), int(result.dof), float(result.pvalue), n, note)


def csv_name(column: str, taken: set[str]) -> str:
    """``covariate-<column>.csv``, the column name made safe for a file name and distinct from ``taken``."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", column).strip("._") or "column"
    name, k = f"covariate-{stem}.csv", 2
    while name in taken:
        name, k = f"covariate-{stem}-{k}.csv", k + 1
    return name


def summarise(covariates: pd.DataFrame, clusters: pd.Series) -> list[Covariate]:
    """Every covariate column (``covariates``, indexed like ``clusters``) as the report shows it."""
    out: list[Covariate] = []
    taken: set[str] = set()
    for name in covariates.columns:
        values = covariates[name]
        kind = value_kind(values)
        n_missing = int(values.isna().sum())
        distinct = int(values.nunique(dropna=True))
        if distinct < 2:
            reason = "no item has a value" if distinct == 0 else "a single value for every item that has one"
            out.append(Covariate(str(name), NOT_SHOWN, reason, kind, n_missing=n_missing))
            continue
        if kind != TEXT and distinct > MAX_LEVELS:
            table = abundance_by_bin(values, clusters)
            ends = [v if isinstance(v, str) else _edge_text(v, kind) for v in (table["lower"].iloc[0],
                                                                                table["upper"].iloc[-1])]
            note, kind_shown = f"{N_BINS} equal-width bins from {ends[0]} to {ends[1]}", BINNED
        elif distinct <= MAX_CATEGORIES:
            table = composition_by_category(values, clusters, str(name))
            note, kind_shown = f"{distinct} values", CATEGORICAL
        else:
            out.append(Covariate(str(name), NOT_SHOWN, f"{distinct} distinct values (more than {MAX_CATEGORIES})",
                                 kind, n_missing=n_missing))
            continue
        csv = csv_name(str(name), taken)
        taken.add(csv)
        ids = tuple(sorted(set(clusters.astype(int).tolist())))
        out.append(Covariate(str(name), kind_shown, note, kind, table, ids, independence(table), csv, n_missing))
    return out


def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    """A covariate's table as CSV (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


# columns of a CSV / Raven call table or a box table that locate the item or hold its label: not covariates
_LOCATING = frozenset({"file", "wav_file", "onset_s", "offset_s", "image", "xmin", "ymin", "xmax", "ymax",
                       "selection", "view", "channel", "begin time (s)", "end time (s)", "begin file", "end file",
                       "begin path", "end path", "file offset (s)", "begin clock time", "end clock time"})


def _extra_columns(table: pd.DataFrame, label_column: str) -> list[str]:
    return [c for c in table.columns if c.strip().lower() not in _LOCATING and c != label_column]


def _read_text_table(file: Path, sep: str) -> pd.DataFrame | None:
    """A table as text cells, or None (with a warning) when it cannot be read: the tiling stage already listed
    an unreadable annotation file as skipped, so the report goes on without its columns."""
    try:
        return pd.read_csv(file, sep=sep, dtype=str, keep_default_na=False, encoding=text_encoding(file))
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        log.warning("covariates: %s left out, it cannot be read (%s)", file, exc)
        return None


def _call_tables(path: Path, fmt: str) -> list[tuple[str, Path]]:
    """(name as the tile index's ``annotation_row`` gives it, file) of every CSV or Raven table at ``path``."""
    if path.is_file():
        return [(path.name, path)]
    suffix = ".csv" if fmt == "csv" else ".txt"
    return [(f.relative_to(path).as_posix(), f) for f in sorted(path.rglob(f"*{suffix}"))
            if f.is_file() and not any(p.startswith(".") for p in f.relative_to(path).parts)]


def _box_keys(images: pd.Series, boxes: pd.DataFrame) -> pd.Series:
    """``<image base name>#xmin,ymin,xmax,ymax`` (rounded): a box table's row and the item tiled from it agree."""
    coords = boxes[["xmin", "ymin", "xmax", "ymax"]].apply(lambda c: pd.to_numeric(c, errors="coerce"))
    names = images.astype(str).map(lambda p: PurePosixPath(_normalise(p)).name)
    return names + "#" + coords.round().astype("Int64").astype(str).agg(",".join, axis=1)


DURATION = "call duration (s)"


def item_covariates(index: pd.DataFrame, dataset: dict, base_dir: Path = Path(".")) -> pd.DataFrame | None:
    """The extra columns of the tables the items come from, per item (indexed by item_id), and each call's
    duration (``DURATION``: a tile stretched over its width (``time_stretch``) no longer shows it, so the
    report does). Table columns: a CSV or Raven call table's beside times, file and label (matched by the
    index's ``annotation_row``, "<table> line <n>"), or a box table's beside image, label and box (matched by
    image and box). None when there is none of these (image tables without such a column)."""
    table = _table_covariates(index, dataset, base_dir)
    if dataset.get("modality") != "audio" or "duration_s" not in index:
        return table
    duration = pd.DataFrame({DURATION: index["duration_s"].astype(float).round(4).to_numpy()},
                            index=index["item_id"].astype(str).to_numpy())
    return duration if table is None else pd.concat([table, duration], axis=1)


def _table_covariates(index: pd.DataFrame, dataset: dict, base_dir: Path) -> pd.DataFrame | None:
    modality = dataset.get("modality")
    section = dataset.get(modality) or {}
    if modality == "audio" and section.get("annotation_format") in ("csv", "raven") and section.get("annotations") \
            and "annotation_row" in index:
        path, label = base_dir / section["annotations"], section.get("label_column", "")
        sep = "," if section["annotation_format"] == "csv" else "\t"
        parts = []
        for name, file in _call_tables(path, section["annotation_format"]) if path.exists() else []:
            table = _read_text_table(file, sep)
            extra = [] if table is None else _extra_columns(table, label)
            if extra:
                parts.append(table[extra].set_axis([f"{name} line {i + 2}" for i in table.index]))
        if not parts:
            return None
        rows = pd.concat(parts)
        rows = rows[~rows.index.duplicated()]
        joined = rows.reindex(index["annotation_row"].astype(str).to_numpy())
    elif modality == "images" and section.get("boxes") and (base_dir / section["boxes"]).is_file() \
            and {"xmin", "ymin", "xmax", "ymax"} <= set(index.columns):
        file = base_dir / section["boxes"]
        table = _read_text_table(file, ",")
        extra = [] if table is None else _extra_columns(table, "label")
        if not extra or "image" not in table:
            return None
        rows = table[extra].set_axis(_box_keys(table["image"], table).to_numpy())
        rows = rows[~rows.index.duplicated()]
        joined = rows.reindex(_box_keys(index["source"], index).to_numpy())
    else:
        return None
    joined = joined.fillna("").apply(_typed)
    joined.index = index["item_id"].astype(str).to_numpy()
    return joined
