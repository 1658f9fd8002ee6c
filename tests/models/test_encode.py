"""encode_store: the latents table, the parameter guard, and the examples file for the report."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from quagga.models.encode import encode_store, load_autoencoder, write_examples
from quagga.models.train import train_model
from quagga.models.vae import TileAutoencoder
from quagga.params import TrainParams
from quagga.tables import read_table_params
from quagga.tiles.dataset import split_indices
from quagga.tiles.store import StoreError, TileStore

TILE_SIZE = 32  # the shared synthetic store (conftest.py): 64 tiles of 32 x 32


@pytest.fixture(scope="module")
def checkpoint(store_dir: Path, small_params: TrainParams, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(
        store_dir, dataclasses.replace(small_params, max_epochs=1), tmp_path_factory.mktemp("m")
    )


def test_latents_table(store_dir: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "latents.parquet"
    encode_store(store_dir, checkpoint, out, precision="32-true")  # compared with fp32 below (bf16: next test)
    table = pd.read_parquet(out)
    assert list(table.columns) == ["item_id", "z_0", "z_1", "z_2", "z_3", "recon_error", "neg_elbo"]
    assert table["item_id"].tolist() == TileStore(store_dir).index["item_id"].tolist()
    values = table.drop(columns="item_id").to_numpy()
    assert len(table) == 64 and np.isfinite(values).all()
    assert table["recon_error"].between(0, 1).all()
    # MSE model: negative ELBO = summed squared error + KL >= mean squared error x pixels
    assert (table["neg_elbo"] >= table["recon_error"] * TILE_SIZE**2 - 1e-3).all()
    # The latents are the posterior means of the model, in store order.
    model = load_autoencoder(checkpoint)
    x = torch.from_numpy(np.asarray(TileStore(store_dir).tiles[:5], dtype=np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(
            table.filter(like="z_").to_numpy()[:5], model.encode(x)[0].numpy(), atol=1e-5
        )
    meta = read_table_params(out)
    assert meta["model"]["tile_params"] == TileStore(store_dir).tile_params and meta["checkpoint"] == str(
        checkpoint
    )
    assert not list(tmp_path.glob(".*tmp*"))


def test_batches_and_precision_give_the_same_latents(store_dir: Path, checkpoint: Path, tmp_path: Path) -> None:
    """The batch size changes only the float order (equal within 1e-5); bf16 autocast, the policy where the
    hardware runs bf16, stays within bf16's precision of the fp32 latents and is recorded."""
    encode_store(store_dir, checkpoint, tmp_path / "a.parquet", precision="32-true")
    encode_store(store_dir, checkpoint, tmp_path / "b.parquet", precision="32-true", batch_size=7)
    encode_store(store_dir, checkpoint, tmp_path / "c.parquet", precision="bf16-mixed")
    a, b, c = (pd.read_parquet(tmp_path / f"{n}.parquet").drop(columns="item_id") for n in "abc")
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-5, atol=1e-5)
    scale = np.abs(a.to_numpy()).max(axis=0)
    assert (np.abs(c.to_numpy() - a.to_numpy()) <= 0.05 * scale + 1e-3).all()
    assert c.dtypes.eq(np.float32).all()
    # scored in float32 after bf16 networks: the negative ELBO (squared errors summed, plus a KL >= 0) is not
    # below the mean squared error times the pixels (a KL in bf16 rounded below 0 and broke this)
    assert (c["neg_elbo"] >= c["recon_error"] * TILE_SIZE**2 - 1e-3).all()
    assert read_table_params(tmp_path / "c.parquet")["precision"] == "bf16-mixed"
    assert read_table_params(tmp_path / "a.parquet")["precision"] == "32-true"


def test_refuses_other_tiles(other_store_dir: Path, checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"trained on other tiles.*'version': \(2, 1\)"):
        encode_store(other_store_dir, checkpoint, tmp_path / "latents.parquet")
    assert not (tmp_path / "latents.parquet").exists()


def test_refuses_a_store_whose_auto_settings_resolved_otherwise(
    small_params: TrainParams, tmp_path: Path
) -> None:
    """Two stores asked for with the same config (``auto``) whose data resolved it differently: a model
    trained on one refuses the other, naming the value that differs."""
    from quagga.tiles.store import write_store
    from tests.models.conftest import synthetic_items

    requested = {"tile_size": TILE_SIZE, "db_min": "auto"}
    for name, db_min in (("a", -93.2), ("b", -71.5)):
        write_store(tmp_path / name, synthetic_items(), {"tile_size": TILE_SIZE, "db_min": db_min}, "synthetic",
                    meta={"requested_tile_params": requested})
    model = train_model(tmp_path / "a", dataclasses.replace(small_params, max_epochs=1), tmp_path / "m")
    encode_store(tmp_path / "a", model, tmp_path / "a.parquet")
    with pytest.raises(StoreError, match=r"trained on other tiles.*'db_min': \(-71.5, -93.2\)"):
        encode_store(tmp_path / "b", model, tmp_path / "b.parquet")
    TileStore(tmp_path / "b").require_params(requested, requested=True)  # the config alone cannot tell them apart


def test_refuses_a_foreign_checkpoint(store_dir: Path, tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="not a quagga model checkpoint"):
        encode_store(store_dir, tmp_path / "other.ckpt", tmp_path / "latents.parquet")


def test_examples(store_dir: Path, checkpoint: Path, small_params: TrainParams, tmp_path: Path) -> None:
    encode_store(store_dir, checkpoint, tmp_path / "a.parquet", tmp_path / "ex.npz", n_examples=6, seed=1)
    ex = np.load(tmp_path / "ex.npz")  # no allow_pickle: every array is plain
    s = TILE_SIZE
    assert {k: ex[k].shape for k in ex.files} == {
        "item_id": (6,),
        "input": (6, s, s),
        "recon": (6, s, s),
        "prior_samples": (6, s, s),
        "interpolation": (8, s, s),
        "interpolation_ends": (2,),
        "held_out": (),
    }
    assert ex["input"].dtype == np.float32 and ex["item_id"].dtype.kind == "U"
    store = TileStore(store_dir)
    # Drawn from the validation tiles of the checkpoint's run: reconstructions of unseen tiles.
    val_rows = split_indices(len(store), small_params.val_fraction, small_params.seed)[1]
    assert ex["held_out"] and set(ex["item_id"]) <= set(store.index["item_id"].to_numpy()[val_rows])
    rows = store.index.reset_index().set_index("item_id").loc[ex["item_id"], "index"].to_numpy()
    np.testing.assert_array_equal(ex["input"], store.tiles[rows, 0].astype(np.float32))
    assert ex["interpolation_ends"].tolist() == ex["item_id"][:2].tolist()
    # The strip starts and ends at the reconstructions of its two items.
    np.testing.assert_allclose(ex["interpolation"][0], ex["recon"][0], atol=1e-5)
    np.testing.assert_allclose(ex["interpolation"][-1], ex["recon"][1], atol=1e-5)
    for name in ("recon", "prior_samples", "interpolation"):
        assert ex[name].min() >= 0 and ex[name].max() <= 1

    encode_store(store_dir, checkpoint, tmp_path / "b.parquet", tmp_path / "again.npz", n_examples=6, seed=1)
    again = np.load(tmp_path / "again.npz")
    for name in ex.files:
        np.testing.assert_array_equal(ex[name], again[name])
    encode_store(store_dir, checkpoint, tmp_path / "c.parquet", tmp_path / "other.npz", n_examples=6, seed=2)
    assert np.load(tmp_path / "other.npz")["item_id"].tolist() != ex["item_id"].tolist()


def test_autoencoder_prior_samples_follow_the_latents(store_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TileAutoencoder(tile_size=TILE_SIZE, latent_dim=3, base_channels=4, depth=3, model="ae").eval()
    store = TileStore(store_dir)
    far = np.full((len(store), 3), 50.0, dtype=np.float32)  # latents far from the origin, zero spread
    write_examples(model, store, far, tmp_path / "ex.npz", n_examples=4, seed=0)
    with torch.no_grad():
        expected = model.decode(torch.full((1, 3), 50.0))[0, 0].numpy()
    ex = np.load(tmp_path / "ex.npz")
    np.testing.assert_allclose(ex["prior_samples"], np.broadcast_to(expected, (4, 32, 32)), atol=1e-5)
    assert not ex["held_out"]  # no split given: drawn from every tile
