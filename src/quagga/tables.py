"""Result tables (latents, embedding, clusters) as parquet, written atomically with their parameters.

Everything downstream of the tiles is a table keyed by ``item_id``. The parameters and versions that
made a table ride along in its parquet metadata, so a figure can always be traced back to its run.
Tables people write by hand (annotations, label corrections) are decoded by :func:`text_encoding`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from quagga import __version__

log = logging.getLogger(__name__)
_META_KEY = b"quagga"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary name next to ``path`` to write to; renamed to ``path`` only if the block succeeds.

    On any failure (a full disk, a kill signal turned into an exception) the partial file is removed, so
    ``path`` is either the old complete file or the new complete file, never half of one. A process killed
    outright (SIGKILL) can leave a ``.<name>.tmp-<pid>`` behind; no step reads such names, and the next
    write of ``path`` removes it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_table(df: pd.DataFrame, path: str | Path, params: dict[str, Any] | None = None) -> None:
    """Write ``df`` to ``path`` (temp file + rename: a reader never sees a partial table)."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[_META_KEY] = json.dumps({"params": params or {}, "quagga_version": __version__}).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table_params(path: str | Path) -> dict[str, Any]:
    """The parameters a table was written with (empty if none were recorded)."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[_META_KEY])["params"] if _META_KEY in meta else {}


def write_json(obj: Any, path: str | Path) -> None:
    """Atomic JSON write (sidecars, metrics)."""
    text = json.dumps(obj, indent=2, default=str)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def text_encoding(path: Path) -> str:
    """The encoding of a text table: UTF-8 (a byte-order mark, as Excel writes, is dropped), else Windows-1252
    (what Raven and spreadsheets on Windows write), else Latin-1 (which decodes any bytes)."""
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if encoding != "utf-8-sig":
            log.warning("%s is not UTF-8; read as %s", path, encoding)
        return encoding
    log.warning("%s is not UTF-8; read as latin-1", path)
    return "latin-1"
