"""Load, validate and default the workflow config; hand each stage its own section.

Validation happens once, at workflow start, against workflow/schemas/config.schema.yaml. A bad value
stops the run with the key, the value and what is allowed. The global ``seed`` reaches every stage.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from quagga.settings import is_auto

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
SEEDED_STAGES = ("train", "embed", "cluster", "evaluate")


class ConfigError(ValueError):
    """The config does not fit the schema; the message names every offending key."""


def load_schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """The schema with its ``$ref``s inlined, so defaults of referenced sections are visible."""
    schema = yaml.safe_load(Path(path).read_text())
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]]))
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


def _with_defaults(cls: type[jsonschema.protocols.Validator]) -> type[jsonschema.protocols.Validator]:
    validate_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: dict, instance: Any, schema: dict) -> Iterator[Any]:
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(cls, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def validate_config(config: dict[str, Any], schema_path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """Return a validated copy of ``config`` with every default filled in; raise ConfigError otherwise."""
    config = copy.deepcopy(config)
    errors = sorted(_Validator(load_schema(schema_path)).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        lines = []
        for err in errors:
            key = ".".join(str(p) for p in err.path) or "(top level)"
            hint = err.schema.get("description") if isinstance(err.schema, dict) else None
            lines.append(f"  {key}: {_message(err)}" + (f" ({hint})" if hint else ""))
        raise ConfigError("invalid config:\n" + "\n".join(lines))
    for name, dataset in config["datasets"].items():
        _check_consistency(name, dataset)
    unknown = [n for n in config["run_datasets"] if n not in config["datasets"]]
    if unknown:
        raise ConfigError(f"run_datasets: {unknown} are not datasets; the datasets are {sorted(config['datasets'])}")
    return config


def _message(err: jsonschema.ValidationError) -> str:
    """The error of a value that may also be ``auto``: what is wrong with it as a value, then "or 'auto'"."""
    if err.validator == "anyOf" and err.context:
        auto = [{"const": "auto"}]
        if any(sub.get("const") == "auto" for sub in err.validator_value):
            real = [e for e in err.context if e.schema not in auto]
            if real:
                return f"{real[0].message}, and it is not 'auto'"
    return err.message


def _check_consistency(name: str, dataset: dict[str, Any]) -> None:
    """Rules that span several keys, which the schema cannot express."""
    audio = dataset.get("audio") or {}
    if dataset["modality"] == "audio" and audio:
        _check_audio(f"datasets.{name}.audio", audio)
    images = dataset.get("images")
    if dataset["modality"] == "images" and images and images["input"] == "boxes" and not images.get("boxes"):
        raise ConfigError(f"datasets.{name}.images.boxes: required when input is 'boxes'")
    augment = dataset.get("train", {}).get("augment", "auto")
    if dataset["modality"] == "audio" and augment not in ("none", "auto"):
        raise ConfigError(f"datasets.{name}.train.augment: {augment!r} turns tiles, but spectrogram axes are "
                          "time and frequency; use 'none' for audio")


def _check_audio(where: str, audio: dict[str, Any]) -> None:
    """Cross-key rules among explicit values (``auto`` ones are checked when they are resolved)."""
    spec, seg = audio["spectrogram"], audio["segment"]

    def given(*values: Any) -> bool:
        return not any(is_auto(v) for v in values)

    for key, section in (("spectrogram", spec), ("segment", seg)):
        if given(spec["sample_rate"], section["fmax"]) and section["fmax"] > spec["sample_rate"] / 2:
            raise ConfigError(f"{where}.{key}.fmax: {section['fmax']} Hz is above sample_rate/2 = "
                              f"{spec['sample_rate'] / 2} Hz")
        if given(section["fmin"], section["fmax"]) and section["fmin"] >= section["fmax"]:
            raise ConfigError(f"{where}.{key}: fmin {section['fmin']} must be below fmax {section['fmax']}")
    if given(spec["db_min"], spec["db_max"]) and spec["db_min"] >= spec["db_max"]:
        raise ConfigError(f"{where}.spectrogram: db_min {spec['db_min']} must be below db_max")
    if given(seg["offset_db"], seg["onset_db"]) and seg["offset_db"] > seg["onset_db"]:
        raise ConfigError(f"{where}.segment: offset_db {seg['offset_db']} must not exceed onset_db {seg['onset_db']}")
    if seg["min_duration_s"] >= seg["max_duration_s"]:
        raise ConfigError(f"{where}.segment: min_duration_s must be below max_duration_s")
    if audio["segments"] == "annotations" and not audio.get("annotations"):
        raise ConfigError(f"{where}.annotations: required when segments is 'annotations' "
                          "(or set segments: energy to find calls without annotations)")


INPUT_KEYS = {"audio": ("recordings", "annotations"), "images": ("images", "labels", "boxes")}
DATASET_INPUT_KEYS = ("labels_corrections", "metadata")  # input paths at the dataset level


def input_paths(config: dict[str, Any], dataset: str, base_dir: str | Path = ".") -> dict[str, Path]:
    """A dataset's input paths (recordings, annotations, images, labels, boxes, labels_corrections), resolved
    against ``base_dir``."""
    ds = config["datasets"][dataset]
    section = {**(ds.get(ds["modality"]) or {}), **{k: ds.get(k) for k in DATASET_INPUT_KEYS}}
    keys = (*INPUT_KEYS.get(ds["modality"], ()), *DATASET_INPUT_KEYS)
    return {k: (Path(base_dir) / section[k]).resolve() for k in keys if section.get(k)}


def check_inputs(config: dict[str, Any], base_dir: str | Path = ".") -> None:
    """Stop at start, naming key, value and resolved path, when an input of a dataset to run is missing,
    and when its annotation tables lack the label column (naming the columns they have).

    Paths inside ``demo_data`` are skipped: the demo_data rule makes them.
    """
    base = Path(base_dir).resolve()
    demo = (base / config["demo_data"]).resolve()
    missing = []
    for name in config["run_datasets"] or config["datasets"]:
        modality = config["datasets"][name]["modality"]
        for key, path in input_paths(config, name, base).items():
            if not path.is_relative_to(demo) and not path.exists():
                dataset_level = key in DATASET_INPUT_KEYS
                section = config["datasets"][name] if dataset_level else config["datasets"][name][modality]
                where = f"datasets.{name}.{key}" if dataset_level else f"datasets.{name}.{modality}.{key}"
                missing.append(f"  {where}: {section[key]!r} -> {path} does not exist")
    if missing:
        raise ConfigError(f"input not found (relative paths start at {base}):\n" + "\n".join(missing))
    from quagga.audio.annotations import label_column_problem  # reads annotation headers: audio's business

    for name in config["run_datasets"] or config["datasets"]:
        audio = config["datasets"][name].get("audio") or {}
        table = input_paths(config, name, base).get("annotations")
        if config["datasets"][name]["modality"] == "audio" and table and not table.is_relative_to(demo):
            problem = label_column_problem(table, audio["annotation_format"], audio["label_column"])
            if problem:
                raise ConfigError(f"datasets.{name}.audio.label_column: {problem}")


def reference_dir(config: dict[str, Any], name: str) -> str | None:
    """Where the reference of dataset ``name`` keeps its results: ``results/<reference>`` for a dataset of the
    config, else the folder given; None for a dataset that is trained, not projected."""
    reference = config["datasets"][name].get("reference")
    if not reference:
        return None
    return str(Path(config["results"]) / reference) if reference in config["datasets"] else reference


def check_references(config: dict[str, Any], raw: dict[str, Any], base_dir: str | Path = ".") -> None:
    """Stop at start when a projected dataset's reference cannot serve: itself, projected too, another
    modality, not a finished run, or tile settings given explicitly that differ from the reference's.

    ``raw``: the config as written (before defaults), to tell explicit settings from defaults.
    """
    from quagga.project import Reference, ReferenceError, conflicts, explicit_tile_settings

    for name, ds in config["datasets"].items():
        reference = ds.get("reference")
        if not reference:
            continue
        where = f"datasets.{name}.reference"
        modality = ds["modality"]
        explicit = explicit_tile_settings((raw.get("datasets", {}).get(name) or {}).get(modality) or {}, modality)
        if reference in config["datasets"]:
            theirs = config["datasets"][reference]
            if reference == name:
                raise ConfigError(f"{where}: a dataset cannot be projected onto itself")
            if theirs.get("reference"):
                raise ConfigError(f"{where}: {reference!r} is projected itself (onto {theirs['reference']!r}); "
                                  "name the dataset it was projected onto, which has the trained model")
            if theirs["modality"] != modality:
                raise ConfigError(f"{where}: {reference!r} is {theirs['modality']}, {name!r} is {modality}: "
                                  "a dataset can only be projected onto a map of its own modality")
            lines = conflicts(explicit, theirs[modality], f"datasets.{name}.{modality}", f"{reference!r}")
        else:
            if not (Path(base_dir) / reference).is_dir():
                raise ConfigError(f"{where}: {reference!r} is neither a dataset of the config "
                                  f"({sorted(config['datasets'])}) nor an existing results folder")
            try:
                ref = Reference.open(Path(base_dir) / reference)
            except ReferenceError as exc:
                raise ConfigError(f"{where}: {exc}") from exc
            if ref.modality != modality:
                raise ConfigError(f"{where}: {reference!r} holds {ref.modality} tiles, {name!r} is {modality}: "
                                  "a dataset can only be projected onto a map of its own modality")
            lines = conflicts(explicit, ref.settings["resolved"], f"datasets.{name}.{modality}", f"{reference!r}")
        if lines:
            raise ConfigError("\n  ".join(lines))


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file and validate it."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    return validate_config(raw)


def stage_section(config: dict[str, Any], dataset: str, stage: str) -> dict[str, Any]:
    """One stage's validated section of one dataset, with the global seed where the stage is seeded."""
    ds = config["datasets"][dataset]
    section = dict(ds[ds["modality"]] if stage == "tiles" else ds.get(stage, {}))
    if stage in SEEDED_STAGES:
        section["seed"] = config["seed"]
    return section
