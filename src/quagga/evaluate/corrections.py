"""Label corrections: the report's lasso export, edited, fed back as ``labels_corrections``.

A person selects calls on the map, downloads them as CSV (``item_id,label,cluster,...``), fixes the label
column in a spreadsheet and names the file in the dataset's config. Only the ``item_id`` and ``label``
columns are read; the rest of the export may stay. Each corrected label replaces the annotation's label
(or gives an unlabelled item one) for evaluation and the report; tiles and model are untouched.

Rows that cannot be applied are counted and listed, never fatal: an ``item_id`` the tile store does not
hold, an empty label (or the map's ``(none)``: the annotation's label is kept), and a repeated ``item_id``
(the later row wins, as the later edit). A file that is not a table with those two columns is a user
error (CorrectionsError), named with its path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from quagga.tables import text_encoding

NO_LABEL = "(none)"  # how the report's map and its CSV exports write a missing label
PROBLEMS_MAX = 500  # longer problem lists are cut in metrics.json (the counts stay exact)


class CorrectionsError(ValueError):
    """The corrections file is not a CSV with ``item_id`` and ``label`` columns."""


@dataclass(frozen=True)
class Corrections:
    """The usable rows of a corrections file and the problems of the others."""

    path: str
    labels: dict[str, str]  # item_id -> corrected label
    problems: list[dict[str, str]]  # line, item_id, label, problem
    n_rows: int


def read_corrections(path: str | Path) -> Corrections:
    """The corrections in ``path``: later rows of a repeated item_id win; empty labels are problems."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=text_encoding(path))
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CorrectionsError(f"labels_corrections {path}: cannot read as CSV ({exc})") from exc
    missing = [c for c in ("item_id", "label") if c not in table.columns]
    if missing:
        raise CorrectionsError(f"labels_corrections {path}: missing column(s) {missing}; columns are "
                               f"{list(table.columns)} (the report's lasso export has item_id and label)")
    labels: dict[str, str] = {}
    first_line: dict[str, int] = {}
    problems = []
    for line, item_id, label in zip(range(2, len(table) + 2), table["item_id"].str.strip(),
                                    table["label"].str.strip(), strict=True):
        if label in ("", NO_LABEL):
            problems.append(_problem(line, item_id, label, "empty label: the annotation's label is kept"))
            continue
        if item_id in first_line:
            problems.append(_problem(line, item_id, label,
                                     f"item_id repeated (line {first_line[item_id]}): this later line is used"))
        first_line.setdefault(item_id, line)
        labels[item_id] = label
    return Corrections(str(path), labels, problems, len(table))


def _problem(line: int, item_id: str, label: str, problem: str) -> dict[str, str]:
    return {"line": str(line), "item_id": item_id, "label": label, "problem": problem}


def apply_corrections(items: pd.DataFrame, corrections: Corrections) -> tuple[pd.Series, dict[str, Any]]:
    """``items``' labels (columns item_id, label) with the corrections applied, and what was done.

    The summary (plain JSON values) counts rows, labels changed (``n_changed``, of which ``n_added`` gave
    an unlabelled item a label), rows that repeat the annotation's label, and lists the problems.
    """
    original = items["label"].astype("string").reset_index(drop=True)
    ids = items["item_id"].astype(str).reset_index(drop=True)
    known = set(ids)
    problems = list(corrections.problems)
    unknown = [i for i in corrections.labels if i not in known]
    problems += [{"line": "", "item_id": i, "label": corrections.labels[i],
                  "problem": "item_id not in the tile store: nothing to correct"} for i in unknown]
    corrected = ids.map(corrections.labels).astype("string").fillna(original)
    changed = corrected.ne(original).fillna(True) & corrected.notna()
    summary = {
        "file": corrections.path,
        "n_rows": corrections.n_rows,
        "n_changed": int(changed.sum()),
        "n_added": int((changed & original.isna()).sum()),
        "n_unchanged": int(ids.isin(corrections.labels.keys()).sum() - changed.sum()),
        "n_problems": len(problems),
        "n_unknown_ids": len(unknown),
        "problems": problems[:PROBLEMS_MAX],
    }
    return corrected, summary
