"""Summarise a finished workflow run from Snakemake's benchmark files: time and peak memory per job.

Usage: python bench/workflow_summary.py [RESULTS_DIR]   (after `make demo`; default: results)
Prints a table (rule, dataset, seconds, peak RSS MiB) and ends with one JSON line of the totals.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd


def main(results: Path) -> None:
    rows = []
    for tsv in sorted((results / "benchmarks").glob("*/*.tsv")):
        bench = pd.read_csv(tsv, sep="\t")
        rss = pd.to_numeric(bench["max_rss"], errors="coerce").max()
        rows.append({"rule": tsv.parent.name, "dataset": tsv.stem, "seconds": float(bench["s"].iloc[-1]),
                     "peak_rss_mib": float(rss) if pd.notna(rss) else float("nan")})
    if not rows:
        sys.exit(f"no benchmark files under {results}/benchmarks: run the workflow first")
    table = pd.DataFrame(rows).sort_values(["dataset", "rule"])
    print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    figures = {
        "jobs": len(table),
        "sum_job_seconds": round(float(table["seconds"].sum()), 1),
        "peak_rss_mib": round(float(table["peak_rss_mib"].max()), 1),
        "train_seconds": round(float(table.loc[table["rule"] == "train", "seconds"].sum()), 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results"))
