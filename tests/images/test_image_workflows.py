"""The microscopy inputs through the real workflow: automatic detection on the demo fields, and the
shipped planktonclas-demo config on the real plankton images (skipped without ../shared)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.test_workflow import REPO, _snakemake

PLANKTON = REPO.parent / "shared" / "data" / "planktonclas-demo"
pytestmark = pytest.mark.workflow


def _quick(dataset: dict) -> dict:
    dataset["train"] = {**dataset.get("train", {}), "max_epochs": 3, "batch_size": 32}
    dataset["embed"] = {**dataset.get("embed", {}), "epochs": 5}
    return dataset


def test_segment_input_on_field_images_runs_through_the_workflow(tmp_path: Path) -> None:
    fields = {"modality": "images",
              "images": {"input": "segment", "images": "data/demo/images/fields", "labels": None,
                         "boxes": "data/demo/images/fields/boxes.csv", "normalize": {"intensity": "absorbance"},
                         # small, faint grains under uneven light: triangle threshold, light opening
                         "detect": {"threshold": "triangle", "open_px": 1, "min_area_px": 20}}}
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump({"datasets": {"found": _quick(fields)}}))
    done = _snakemake(tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    out = tmp_path / "results" / "found"
    found = pd.read_csv(out / "tiles" / "found_boxes.csv")
    human = pd.read_csv(tmp_path / "data/demo/images/fields/boxes.csv")
    assert set(found["image"]) <= set(human["image"])
    assert len(found) >= 0.8 * len(human)  # the demo particles lie apart: most are found
    labelled = found["label"].notna().mean()
    assert labelled > 0.7, f"only {labelled:.0%} of found particles match a human box at IoU >= 0.5"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_items"] == len(found) and 0 <= metrics["v_measure"] <= 1
    assert (out / "report" / "contact_sheet.png").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not PLANKTON.is_dir(), reason="../shared/data/planktonclas-demo is not here")
def test_shipped_plankton_config_runs_through_the_workflow(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "config" / "planktonclas-demo.yaml").read_text())
    images = config["datasets"]["planktonclas-demo"]["images"]
    images["images"], images["labels"] = str(PLANKTON), str(PLANKTON / "labels.csv")
    _quick(config["datasets"]["planktonclas-demo"])
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    done = _snakemake(tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    out = tmp_path / "results" / "planktonclas-demo"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_items"] == 105 and metrics["n_labels"] == 6
    index = pd.read_parquet(out / "tiles" / "index.parquet")
    assert index["feat_area"].notna().all() and (index["scale"] > 0).all()
    assert (out / "report" / "contact_sheet.png").is_file()
