"""Config: schema validation with defaults, clear errors, and agreement with the typed params."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from quagga import params as P
from quagga.config import ConfigError, load_config, load_schema, stage_section, validate_config

REPO = Path(__file__).resolve().parents[1]
AUDIO = {"modality": "audio", "audio": {}}


def test_default_config_validates_and_fills_defaults() -> None:
    config = load_config(REPO / "config" / "config.yaml")
    assert set(config["datasets"]) >= {"demo-audio", "demo-particles"}
    audio = config["datasets"]["demo-audio"]
    assert audio["train"]["latent_dim"] == 32 and audio["audio"]["spectrogram"]["tile_size"] == 128
    train = stage_section(config, "demo-audio", "train")
    assert train["seed"] == config["seed"]
    assert P.from_dict(P.TrainParams, train).seed == config["seed"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train": {"max_epochs": 0}}, r"datasets.d.train.max_epochs: 0 is less than the minimum of 1"),
        ({"train": {"latent_dim": "big"}}, r"datasets.d.train.latent_dim: 'big' is not of type 'integer'"),
        ({"train": {"lr": 0.1}}, r"Additional properties are not allowed \('lr' was unexpected\)"),
        ({"train": {"model": "gan"}}, r"datasets.d.train.model: 'gan' is not one of \['vae', 'ae'\]"),
        ({"modality": "video"}, r"datasets.d.modality: 'video' is not one of"),
        ({"audio": {"spectrogram": {"fmax": 20000, "sample_rate": 22050}}}, r"fmax: 20000 Hz is above sample_rate/2"),
        ({"audio": {"spectrogram": {"n_fft": 5}}}, r"spectrogram.n_fft: 5 is less than the minimum of 64, and it"),
        ({"train": {"batch_size": "many"}}, r"train.batch_size: 'many' is not of type 'integer', and it is not"),
        ({"audio": {"channel": "left"}}, r"datasets.d.audio.channel: 'left' does not match"),
        ({"audio": {"segment": {"fmax": 16000}, "spectrogram": {"sample_rate": 22050}}},
         r"audio.segment.fmax: 16000 Hz is above sample_rate/2"),
        ({"audio": {"segment": {"onset_db": 5, "offset_db": 8}}}, r"offset_db 8 must not exceed onset_db 5"),
        ({"audio": {"segment": {"min_duration_s": 1.0}}}, r"min_duration_s must be below max_duration_s"),
        ({"audio": {"annotations": None}}, r"audio.annotations: required when segments is 'annotations'"),
        ({"audio": {"annotation_format": "excel"}}, r"annotation_format: 'excel' is not one of"),
        ({"audio": {"spectrogram": {"scale": "bark"}}}, r"spectrogram.scale: 'bark' is not one of"),
    ],
)
def test_bad_values_name_key_value_and_rule(change: dict, message: str) -> None:
    dataset = {**AUDIO, **change}
    with pytest.raises(ConfigError, match=message):
        validate_config({"datasets": {"d": dataset}})


def test_missing_section_and_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'audio' is a required property"):
        validate_config({"datasets": {"d": {"modality": "audio"}}})
    with pytest.raises(ConfigError, match="boxes: required when input is 'boxes'"):
        validate_config({"datasets": {"d": {"modality": "images", "images": {"input": "boxes"}}}})
    with pytest.raises(ConfigError, match="augment: 'dihedral' turns tiles"):
        validate_config({"datasets": {"d": {"modality": "audio", "audio": {}, "train": {"augment": "dihedral"}}}})
    with pytest.raises(ConfigError, match=r"run_datasets: \['koumura'\] are not datasets; the datasets are \['d'\]"):
        validate_config({"run_datasets": ["koumura"], "datasets": {"d": AUDIO}})
    (tmp_path / "c.yaml").write_text("datasets: [unclosed")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "c.yaml")


SECTIONS = {
    "audio": P.AudioParams, "spectrogram": P.SpectrogramParams, "images": P.ImageParams,
    "normalize": P.NormalizeParams, "train": P.TrainParams, "embed": P.EmbedParams,
    "cluster": P.ClusterParams, "evaluate": P.EvaluateParams, "report": P.ReportParams,
}


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_schema_and_dataclass_agree_on_keys_and_defaults(name: str) -> None:
    """Defaults live in the schema; the dataclasses must not drift from it."""
    section = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())["$defs"][name]
    fields = {f.name: f for f in dataclasses.fields(SECTIONS[name])}
    schema_keys = set(section["properties"])
    assert schema_keys == set(fields) - {"seed"}
    for key, sub in section["properties"].items():
        if "default" in sub:
            f = fields[key]
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            assert default == sub["default"], key


def test_schema_inlines_refs() -> None:
    schema = load_schema()
    assert "$ref" not in str(schema)


def test_every_key_is_documented() -> None:
    doc = (REPO / "config" / "README.md").read_text()
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    keys = set(schema["properties"])
    for section in schema["$defs"].values():
        keys |= set(section.get("properties", {}))
    missing = sorted(k for k in keys if f"`{k}`" not in doc)
    assert not missing, f"config/README.md lacks {missing}"


@pytest.mark.parametrize("path", sorted((REPO / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path: Path) -> None:
    config = load_config(path)
    assert config["datasets"] and set(config["run_datasets"] or []) <= set(config["datasets"])


def _projected(reference: str, images: dict | None = None, ref_images: dict | None = None) -> tuple[dict, dict]:
    raw = {"results": "res", "datasets": {
        "core-a": {"modality": "images", "images": {"images": "a", **(ref_images or {})}},
        "calls": {"modality": "audio",
                  "audio": {"recordings": "r", "annotations": "r/t.csv", "annotation_format": "csv"}},
        "core-b": {"modality": "images", "reference": reference, "images": {"images": "b", **(images or {})}}}}
    return validate_config(raw), raw


@pytest.mark.parametrize(("reference", "images", "ref_images", "message"), [
    ("core-b", None, None, "cannot be projected onto itself"),
    ("calls", None, None, "'calls' is audio, 'core-b' is images"),
    ("nowhere/results", None, None, "neither a dataset of the config"),
    ("core-a", {"normalize": {"tile_size": 64}}, None,
     "normalize.tile_size is 64 but the reference 'core-a' made its tiles with 128"),
    ("core-a", {"channel": "rgb"}, {"channel": "luminance"}, "channel is 'rgb' but the reference 'core-a'"),
])
def test_a_reference_that_cannot_serve_stops_at_start(tmp_path: Path, reference: str, images: dict | None,
                                                       ref_images: dict | None, message: str) -> None:
    from quagga.config import check_references

    config, raw = _projected(reference, images, ref_images)
    with pytest.raises(ConfigError, match=message):
        check_references(config, raw, tmp_path)


def test_a_reference_folder_must_be_a_finished_run_of_the_same_modality(tmp_path: Path) -> None:
    import json

    from quagga.config import check_references, reference_dir

    folder = tmp_path / "old" / "core-a"
    folder.mkdir(parents=True)
    config, raw = _projected("old/core-a")
    with pytest.raises(ConfigError, match="no settings.json"):
        check_references(config, raw, tmp_path)
    (folder / "settings.json").write_text(json.dumps({"modality": "images", "resolved": {}, "choices": {}}))
    with pytest.raises(ConfigError, match="no trained model"):
        check_references(config, raw, tmp_path)
    for name in ("models/vae.ckpt", "models/umap_2d.pt", "clusters.parquet"):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(b"")
    check_references(config, raw, tmp_path)  # a finished run: accepted
    assert reference_dir(config, "core-b") == "old/core-a" and reference_dir(config, "core-a") is None
    config, raw = _projected("core-a")
    check_references(config, raw, tmp_path)
    assert reference_dir(config, "core-b") == str(Path("res") / "core-a")
