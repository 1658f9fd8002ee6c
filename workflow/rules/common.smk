# Validation, dataset names and per-stage parameters; all logic lives in quagga.config.
import json
import os
import sys

from quagga.config import ConfigError, check_inputs, stage_section, validate_config
from quagga.locks import clear_stale_locks

try:
    config.update(validate_config(config, workflow.source_path("../schemas/config.schema.yaml")))
    check_inputs(config)
except ConfigError as exc:
    sys.exit(f"quagga: {exc}")

if workflow.is_main_process:  # locks of a killed run must not block its rerun (see quagga.locks)
    for ended in clear_stale_locks():
        print(f"quagga: removed the locks left by an ended run (pid {ended['pid']})", file=sys.stderr)

RESULTS = config["results"]
DEMO = config["demo_data"]
DATASETS = sorted(config["run_datasets"] or config["datasets"])
SHARDS = {d: stage_section(config, d, "tiles")["shards"] for d in DATASETS}  # tiling jobs per dataset
# one tiling job (rules tiles_audio, tiles_images) or shards merged into one store (tiles.smk)
AUDIO = [d for d in DATASETS if config["datasets"][d]["modality"] == "audio" and SHARDS[d] == 1] or ["__none__"]
IMAGES = [d for d in DATASETS if config["datasets"][d]["modality"] == "images" and SHARDS[d] == 1] or ["__none__"]
SHARDED = [d for d in DATASETS if SHARDS[d] > 1] or ["__none__"]
ENV = "../../environment.yml"


wildcard_constraints:
    dataset="|".join(DATASETS),


def stage_params(stage):
    """Input function: one stage's validated section as JSON (Snakemake reruns a job when it changes)."""

    def get(wildcards):
        return json.dumps(stage_section(config, wildcards.dataset, stage), sort_keys=True)

    return get


def modality(wildcards):
    """A dataset's modality: which front end tiles it."""
    return config["datasets"][wildcards.dataset]["modality"]


def input_tables(wildcards):
    """The annotation / label / box tables a dataset's tiles are made from."""
    section = stage_section(config, wildcards.dataset, "tiles")
    keys = ("annotations",) if config["datasets"][wildcards.dataset]["modality"] == "audio" else ("labels", "boxes")
    return [section[k] for k in keys if section.get(k) and not section[k].endswith("/")]


def labels_corrections(wildcards):
    """The dataset's label corrections, if any: an input of evaluate only (editing it reruns evaluate and report)."""
    path = config["datasets"][wildcards.dataset].get("labels_corrections")
    return [path] if path else []


def shard_stores(wildcards):
    """The shard stores a sharded dataset's tile store is merged from, in shard order."""
    return [f"{RESULTS}/{wildcards.dataset}/tiles.shards/{k}" for k in range(SHARDS[wildcards.dataset])]


def run_info(wildcards):
    """What the report's run summary shows about the configuration."""
    ds = config["datasets"][wildcards.dataset]
    return json.dumps({"seed": config["seed"], "modality": ds["modality"], "config": ds}, sort_keys=True)


def output_dir(wildcards, output):
    """Folder of a rule's first output (for CLIs that write several files into one folder)."""
    return os.path.dirname(output[0])


def demo_root(wildcards, output):
    """The demo data folder, two levels above the audio selection table."""
    return os.path.dirname(os.path.dirname(output[0]))


def dataset_dir(wildcards, input):
    """A dataset's results folder: the parent of its tile store."""
    return os.path.dirname(input.tiles)


def source_root(wildcards):
    """Folder the items' sources are relative to: the report plays audio clips and shows original image
    crops from it (image paths are relative to the working directory)."""
    ds = config["datasets"][wildcards.dataset]
    if ds["modality"] != "audio":
        return "."
    recordings = ds["audio"]["recordings"]
    return recordings if os.path.isdir(recordings) else os.path.dirname(recordings)
