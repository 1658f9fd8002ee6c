"""Latents table (and example reconstructions) of a tile store from a trained checkpoint.

The store is streamed through the model in batches, so only the output table grows with the number of
tiles. The checkpoint is read with ``weights_only=True``: tensors and plain containers, never pickled code.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from quagga.models.networks import TileCodec, TileScoring
from quagga.models.precision import resolve_precision
from quagga.tables import atomic_path, write_table
from quagga.tiles.split import split_indices
from quagga.tiles.store import StoreError, TileStore

log = logging.getLogger(__name__)

# inference only: tiles read as one slice of the memory map per batch; 512 x 128 x 128 float32 is 32 MB, and larger
# batches gain nothing on CPU (koumura-bird0: 256 -> 512 -> 1024 tiles within 3 %)
ENCODE_BATCH_SIZE = 512
N_INTERPOLATION = 8


def load_autoencoder(checkpoint: Path, device: str | torch.device = "cpu") -> TileCodec:
    """The networks of a Lightning checkpoint written by ``train_model``, in eval mode (without Lightning)."""
    ckpt = torch.load(checkpoint, map_location=device, weights_only=True)
    if "hyper_parameters" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{checkpoint} is not a quagga model checkpoint (no hyper_parameters/state_dict)")
    model = TileCodec(ckpt["hyper_parameters"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()


def encode_store(
    store_dir: Path,
    checkpoint: Path,
    out_path: Path,
    examples_path: Path | None = None,
    n_examples: int = 16,
    seed: int = 0,
    precision: str = "auto",
    batch_size: int = ENCODE_BATCH_SIZE,
) -> None:
    """Write ``out_path`` (item_id, z_0..z_{d-1}, recon_error, neg_elbo) and optionally an examples .npz.

    Refuses a store whose tile parameters differ from those the checkpoint was trained on. ``precision``
    follows training's policy (``auto``: bf16 autocast where the hardware computes in bf16, else fp32);
    the outputs are stored as float32 either way.
    """
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_autoencoder(checkpoint, device)
    hparams = dict(model.hparams)
    store = TileStore(store_dir)
    if hparams.get("tile_params") is None:
        raise StoreError(f"{checkpoint} records no tile parameters, so its tiles cannot be checked")
    try:
        store.require_params(hparams["tile_params"])
    except StoreError as err:
        raise StoreError(f"cannot encode with {checkpoint}, trained on other tiles: {err}") from err
    if store.tile_size != hparams["tile_size"] or store.channels != hparams.get("channels", 1):
        raise StoreError(
            f"{store_dir}: tiles are {store.channels} x {store.tile_size} px, {checkpoint} expects "
            f"{hparams.get('channels', 1)} x {hparams['tile_size']}"
        )

    n, d = len(store), hparams["latent_dim"]
    latents = np.empty((n, d), dtype=np.float32)
    recon_error = np.empty(n, dtype=np.float32)
    neg_elbo = np.empty(n, dtype=np.float32)
    bf16 = resolve_precision(precision, device) == "bf16-mixed"
    with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            batch = torch.from_numpy(np.array(store.tiles[start:stop])).float().to(device)  # see TileDataset
            out = model.predict_step(batch)
            latents[start:stop] = out["mean"].float().cpu().numpy()
            recon_error[start:stop] = out["recon_error"].float().cpu().numpy()
            neg_elbo[start:stop] = out["neg_elbo"].float().cpu().numpy()

    table = pd.DataFrame({"item_id": store.index["item_id"].to_numpy()})
    table = pd.concat([table, pd.DataFrame(latents, columns=[f"z_{i}" for i in range(d)])], axis=1)
    table["recon_error"] = recon_error
    table["neg_elbo"] = neg_elbo
    meta = {"checkpoint": str(checkpoint), "store": str(store_dir), "model": hparams,
            "precision": "bf16-mixed" if bf16 else "32-true"}
    write_table(table, out_path, meta)
    log.info("encoded %d tiles to %d-D latents -> %s", n, d, out_path)
    if examples_path is not None:
        write_examples(model, store, latents, Path(examples_path), n_examples, seed, held_out_rows(hparams, n))


def held_out_rows(hparams: dict, n_items: int) -> np.ndarray | None:
    """Rows of the validation split the model was trained with; None if unknown, empty or another store."""
    split = hparams.get("val_split")
    if not split or split["n_items"] != n_items or split["val_fraction"] <= 0:
        return None
    val = split_indices(n_items, split["val_fraction"], split["seed"])[1]
    return val if len(val) else None


def write_examples(
    model: TileScoring,
    store: TileStore,
    latents: np.ndarray,
    path: Path,
    n_examples: int = 16,
    seed: int = 0,
    candidates: np.ndarray | None = None,
) -> None:
    """Examples for the report, as an .npz written atomically.

    Arrays: ``item_id`` [n] (str), ``input``/``recon``/``prior_samples`` [n, S, S] (one channel) or
    [n, C, S, S] (colour), ``interpolation`` [8, ...] between the first two examples
    (``interpolation_ends``), ``held_out`` (scalar bool: the examples were drawn from ``candidates``, the
    validation rows, rather than from every tile). The
    plain autoencoder has no prior, so its samples come from a diagonal Gaussian fitted to ``latents``
    instead of N(0, I).
    """
    rng = np.random.default_rng(seed)
    pool = np.arange(len(store)) if candidates is None else np.asarray(candidates)
    n = min(n_examples, len(pool))
    idx = np.sort(rng.choice(pool, size=n, replace=False))
    device = next(model.parameters()).device
    ends = idx[[0, min(1, n - 1)]]
    z = torch.from_numpy(rng.standard_normal((n, latents.shape[1]), dtype=np.float32))
    if not model.variational:
        z = z * torch.from_numpy(latents.std(axis=0)) + torch.from_numpy(latents.mean(axis=0))
    t = torch.linspace(0.0, 1.0, N_INTERPOLATION).unsqueeze(1)
    a, b = torch.from_numpy(latents[ends])
    def image(x: torch.Tensor) -> torch.Tensor:  # one channel: [n, S, S], as the report's grey tiles
        return x[:, 0] if x.shape[1] == 1 else x

    with torch.inference_mode():
        inputs = torch.from_numpy(np.array(store.tiles[idx])).float().to(device)
        arrays = {
            "item_id": store.index["item_id"].to_numpy()[idx].astype(str),
            "input": image(inputs),
            "recon": image(model(inputs)),
            "prior_samples": image(model.decode(z.to(device))),
            "interpolation": image(model.decode(((1 - t) * a + t * b).to(device))),
            "interpolation_ends": store.index["item_id"].to_numpy()[ends].astype(str),
            "held_out": np.array(candidates is not None),
        }
    arrays = {k: v.float().cpu().numpy() if isinstance(v, torch.Tensor) else v for k, v in arrays.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    log.info("wrote %d examples to %s", n, path)
