"""Result tables (latents, embedding, clusters) as parquet, written atomically with their parameters.

Everything downstream of the tiles is a table keyed by ``item_id``. The parameters and versions that
made a table ride along in its parquet metadata, so a figure can always be traced back to its run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from quagga import __version__

_META_KEY = b"quagga"


def write_table(df: pd.DataFrame, path: str | Path, params: dict[str, Any] | None = None) -> None:
    """Write ``df`` to ``path`` (temp file + rename: a reader never sees a partial table)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[_META_KEY] = json.dumps({"params": params or {}, "quagga_version": __version__}).encode()
    table = table.replace_schema_metadata(meta)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def read_table_params(path: str | Path) -> dict[str, Any]:
    """The parameters a table was written with (empty if none were recorded)."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[_META_KEY])["params"] if _META_KEY in meta else {}


def write_json(obj: Any, path: str | Path) -> None:
    """Atomic JSON write (sidecars, metrics)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)
