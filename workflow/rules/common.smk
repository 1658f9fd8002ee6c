# Validation, dataset names and per-stage parameters; all logic lives in quagga.config.
import copy
import json
import os
import sys

from quagga.config import ConfigError, check_inputs, check_references, reference_dir, stage_section, validate_config
from quagga.project import explicit_tile_settings
from quagga.locks import clear_stale_locks

RAW_CONFIG = copy.deepcopy(config)  # as written: which tile settings a projected dataset gives explicitly
try:
    config.update(validate_config(config, workflow.source_path("../schemas/config.schema.yaml")))
    check_inputs(config)
    check_references(config, RAW_CONFIG)
except ConfigError as exc:
    sys.exit(f"quagga: {exc}")

if workflow.is_main_process:  # locks of a killed run must not block its rerun (see quagga.locks)
    for ended in clear_stale_locks():
        print(f"quagga: removed the locks left by an ended run (pid {ended['pid']})", file=sys.stderr)

RESULTS = config["results"]
DEMO = config["demo_data"]
DATASETS = sorted(config["run_datasets"] or config["datasets"])
# projected datasets (datasets.<name>.reference): the reference's results folder; they are not trained
REFERENCES = {d: reference_dir(config, d) for d in config["datasets"] if config["datasets"][d].get("reference")}
# what the run makes: its datasets and the config datasets they are projected onto
NEEDED = sorted(set(DATASETS) | {config["datasets"][d]["reference"] for d in DATASETS
                                 if d in REFERENCES and config["datasets"][d]["reference"] in config["datasets"]})
TRAINED = [d for d in NEEDED if d not in REFERENCES] or ["__none__"]
PROJECTED = [d for d in NEEDED if d in REFERENCES] or ["__none__"]
SHARDS = {d: stage_section(config, d, "tiles")["shards"] for d in NEEDED}  # tiling jobs per dataset
# one tiling job (rules tiles_audio, tiles_images) or shards merged into one store (tiles.smk)
AUDIO = [d for d in NEEDED if config["datasets"][d]["modality"] == "audio" and SHARDS[d] == 1] or ["__none__"]
IMAGES = [d for d in NEEDED if config["datasets"][d]["modality"] == "images" and SHARDS[d] == 1] or ["__none__"]
SHARDED = [d for d in NEEDED if SHARDS[d] > 1] or ["__none__"]
ENV = "../../environment.yml"


wildcard_constraints:
    dataset="|".join(NEEDED),


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


def reference_settings(wildcards):
    """A projected dataset's reference's settings.json (its tile settings are the projection's)."""
    return [f"{REFERENCES[wildcards.dataset]}/settings.json"] if wildcards.dataset in REFERENCES else []


def reference(wildcards):
    """A projected dataset's reference results folder ("" for a trained dataset)."""
    return REFERENCES.get(wildcards.dataset, "")


def explicit_settings(wildcards):
    """JSON of the tile settings a projected dataset's config gives explicitly (checked against the reference's)."""
    if wildcards.dataset not in REFERENCES:
        return ""
    ds = RAW_CONFIG["datasets"][wildcards.dataset]
    return json.dumps(explicit_tile_settings(ds.get(ds["modality"]) or {}, ds["modality"]), sort_keys=True)


def reference_models(wildcards):
    """What a projection reads of its reference: the models and the reference's own tables (novelty thresholds)."""
    ref = REFERENCES[wildcards.dataset]
    return [f"{ref}/models/{name}" for name in ("vae.ckpt", "umap_2d.pt", "morphology.json")] + [
        f"{ref}/{name}" for name in ("embedding.parquet", "clusters.parquet", "latents.parquet")]


def report_reference(wildcards):
    """The map and clusters a projected dataset's report draws behind its items."""
    ref = REFERENCES.get(wildcards.dataset)
    return [f"{ref}/embedding.parquet", f"{ref}/clusters.parquet"] if ref else []


def metadata_table(wildcards):
    """A dataset's covariate table, if any: an input of the report only."""
    path = config["datasets"][wildcards.dataset].get("metadata")
    return [path] if path else []


def metadata_path(wildcards):
    """A dataset's covariate table ("" for none)."""
    return config["datasets"][wildcards.dataset].get("metadata") or ""


def training_curve(wildcards):
    """The training curve the report shows (a projected dataset trains nothing)."""
    return [] if wildcards.dataset in REFERENCES else [f"{RESULTS}/{wildcards.dataset}/models/metrics.csv"]


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
