"""Where a run's time goes around the training: wall, CPU and peak memory of every stage.

    .venv/bin/python bench/stages.py DATA_DIR [--results DIR] [--no-preset | --config YAML] [--cores N]

DATA_DIR is laid out like the shared sets (see ``bench/quality.py``; the same config is written, so a
finished ``bench/quality.py`` run of the folder is reused). The workflow is run up to the report (a
finished training of the same settings is kept), then every stage but the training is redone and timed:
``encode`` and all that follows it with Snakemake's ``--forcerun``; the settings and tiling stages in a
scratch results folder (``<results>/stages-scratch``), so the training is not redone. The figures are
Snakemake's own benchmark files (``<results>/benchmarks/<rule>/<dataset>.tsv``: wall seconds, CPU
seconds, peak resident memory). Prints a table; ends with one JSON line whose top level has
``non_train_s`` (every stage but ``train``, summed) and ``stages`` (per stage); ``train`` is as last run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import pandas as pd
import yaml
from benchutil import ROOT
from quality import build_config, run_pipeline

# the workflow's rules in run order; a sharded tiling runs tiles_shard jobs and tiles_merge instead of one job
STAGES = ("settings", "tiles", "train", "encode", "embed", "cluster", "evaluate", "report")
AFTER_TRAINING = ("encode",)  # forced: Snakemake redoes it and every rule downstream of it


def write_config(data_dir: Path, base: Path | None, results: Path) -> Path:
    """The one-dataset config of ``bench/quality.py`` for ``data_dir``, written next to its outputs."""
    name = data_dir.name
    path = results / name / "bench-config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(build_config(data_dir, name, base, results), sort_keys=False))
    return path.resolve()


def stage_figures(results: Path, name: str, stage: str) -> dict | None:
    """Wall s, CPU s and peak RSS of one stage from its benchmark file(s) (shards summed; memory: the largest)."""
    bench = results / "benchmarks"
    if stage == "tiles":
        files = [p for rule in ("tiles_audio", "tiles_images", "tiles_merge") for p in [bench / rule / f"{name}.tsv"]
                 if p.is_file()] + sorted((bench / "tiles_shard" / name).glob("*.tsv"))
    else:
        files = [p for p in [bench / stage / f"{name}.tsv"] if p.is_file()]
    if not files:
        return None
    rows = pd.concat([pd.read_csv(p, sep="\t").tail(1) for p in files])
    return {"wall_s": round(float(rows["s"].sum()), 2),
            "cpu_s": round(float(pd.to_numeric(rows["cpu_time"], errors="coerce").sum()), 2),
            "peak_rss_mib": round(float(pd.to_numeric(rows["max_rss"], errors="coerce").max()), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--config", type=Path, help="dataset settings (default: config/<folder name>.yaml if any)")
    parser.add_argument("--no-preset", action="store_true", help="the defaults only, no config/<folder name>.yaml")
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="workflow results folder")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rerun-triggers", nargs="+", default=["mtime", "params", "input"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    data_dir = args.data_dir.resolve()
    name = data_dir.name
    base = None if args.no_preset else args.config or (ROOT / "config" / f"{name}.yaml")
    base = base if base is not None and base.is_file() else None
    results = args.results.resolve()
    config = write_config(data_dir, base, results)
    report = results / name / "report" / "index.html"
    run_pipeline(config, report, args.cores, args.rerun_triggers)  # whatever is missing or out of date
    run_pipeline(config, report, args.cores, args.rerun_triggers, force=AFTER_TRAINING)
    scratch = results / "stages-scratch"
    run_pipeline(write_config(data_dir, base, scratch), scratch / name / "tiles", args.cores, args.rerun_triggers,
                 force=("settings",))

    stages = {}
    for stage in STAGES:
        figures = stage_figures(scratch if stage in ("settings", "tiles") else results, name, stage)
        if figures is not None:
            stages[stage] = figures
    non_train = round(sum(f["wall_s"] for s, f in stages.items() if s != "train"), 1)
    print(f"\n{name} ({args.cores} cores; settings and tiling redone in {scratch}; train as last run)")
    print(f"{'stage':12}{'wall s':>10}{'CPU s':>10}{'peak MiB':>10}")
    for stage, f in stages.items():
        print(f"{stage:12}{f['wall_s']:>10.1f}{f['cpu_s']:>10.1f}{f['peak_rss_mib']:>10.0f}")
    print(f"{'all but train':12}{non_train:>10.1f}")
    print(json.dumps({"dataset": name, "cores": args.cores, "non_train_s": non_train, "stages": stages}))


if __name__ == "__main__":
    main()
