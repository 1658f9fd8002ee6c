"""Morphology features joined to the latents for the embedding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quagga.cli import main
from quagga.embed.morphology import MorphologyScaling, morphology_setting
from quagga.tiles.store import TileItem, write_store


def test_features_are_z_scored_and_weigh_as_much_as_the_latents() -> None:
    rng = np.random.default_rng(0)
    latents = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "z_0": rng.normal(0, 3, 4), "z_1": rng.normal(0, 3, 4),
                            "recon_error": 1.0})
    index = pd.DataFrame({"item_id": ["d", "c", "b", "a"], "feat_area": [4000.0, 3000.0, 2000.0, 1000.0],
                          "feat_solidity": [0.9, np.nan, 0.7, 0.8], "label": "x"})
    out = MorphologyScaling.fit(latents, index).apply(latents, index)
    assert list(out.columns) == ["item_id", "z_0", "z_1", "recon_error", "z_feat_area", "z_feat_solidity"]
    area = out["z_feat_area"].to_numpy()
    assert np.all(np.diff(area) > 0)  # matched by item_id: a < b < c < d
    assert out.loc[2, "z_feat_solidity"] == 0.0  # not measured: the mean
    feat_var = out[["z_feat_area", "z_feat_solidity"]].var(ddof=0).sum()
    assert feat_var == pytest.approx(latents[["z_0", "z_1"]].var(ddof=0).sum(), rel=1e-5)


def test_a_projection_is_scaled_by_the_reference_not_by_itself() -> None:
    latents = pd.DataFrame({"item_id": ["a", "b", "c"], "z_0": [0.0, 1.0, 2.0]})
    index = pd.DataFrame({"item_id": ["a", "b", "c"], "feat_area": [10.0, 20.0, 30.0]})
    scaling = MorphologyScaling(**json.loads(json.dumps(MorphologyScaling.fit(latents, index).to_dict())))
    new = pd.DataFrame({"item_id": ["x", "y"], "z_0": [0.0, 0.0]})
    out = scaling.apply(new, pd.DataFrame({"item_id": ["x", "y"], "feat_area": [20.0, 20.0]}))
    assert out["z_feat_area"].tolist() == [0.0, 0.0]  # the reference's mean, not the new items' own
    with pytest.raises(ValueError, match="lacks the morphology features"):
        scaling.apply(new, pd.DataFrame({"item_id": ["x", "y"], "feat_other": [1.0, 2.0]}))


def test_tiles_without_features_are_a_clear_error() -> None:
    latents = pd.DataFrame({"item_id": ["a"], "z_0": [0.0]})
    with pytest.raises(ValueError, match="no feat_\\* columns"):
        MorphologyScaling.fit(latents, pd.DataFrame({"item_id": ["a"], "label": ["x"]}))


def test_embed_stage_adds_the_features_of_the_tile_store(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    items = [TileItem(f"p{i}", np.full((8, 8), 0.5), {"label": None, "feat_area": float(i % 2) * 100 + i})
             for i in range(60)]
    write_store(tmp_path / "tiles", items, {}, "images")
    z = {f"z_{k}": rng.normal(size=60) for k in range(4)}
    latents = pd.DataFrame({"item_id": [f"p{i}" for i in range(60)], **z})
    latents.to_parquet(tmp_path / "latents.parquet")
    params = json.dumps({"morphology": True, "epochs": 2, "min_steps": 5})
    args = ["embed", "--latents", str(tmp_path / "latents.parquet"), "--params", params,
            "--out", str(tmp_path / "embedding.parquet"), "--models-dir", str(tmp_path / "models")]
    assert main(args) != 0  # no --tiles: a clear error, not a traceback
    assert main([*args, "--tiles", str(tmp_path / "tiles")]) == 0
    assert len(pd.read_parquet(tmp_path / "embedding.parquet")) == 60


def test_morphology_auto_embeds_the_features_where_the_store_has_them() -> None:
    images = pd.DataFrame({"item_id": ["a"], "feat_area": [3.0], "feat_solidity": [0.9]})
    calls = pd.DataFrame({"item_id": ["a"], "onset_s": [0.1]})
    assert morphology_setting("auto", images) == (True, {
        "value": True, "source": "data", "statistic": "the tile index has 2 morphology features"})
    use, how = morphology_setting("auto", calls)
    assert not use and how["source"] == "data" and "no morphology features" in how["statistic"]
    assert morphology_setting(False, images)[0] is False  # an explicit value wins
