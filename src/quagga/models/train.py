"""Train the tile autoencoder from typed parameters, resuming a killed run from its last checkpoint.

Outputs in ``out_dir``: ``vae.ckpt`` (best by validation loss), ``metrics.csv`` (one row per epoch),
``params.json`` (train parameters, tile parameters, versions), ``checkpoints/`` (``last``, ``best`` and
``run.json``, the fingerprint that decides whether a later call may resume) and ``logs/`` (raw CSV logs).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import platform
import re
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from quagga import __version__
from quagga.models.precision import on_cpu, resolve_precision
from quagga.models.vae import TileAutoencoder
from quagga.params import TrainParams, to_dict
from quagga.settings import Choices, is_auto
from quagga.tables import atomic_path, write_json
from quagga.tiles.dataset import TileDataModule, split_indices
from quagga.tiles.store import TileStore

log = logging.getLogger(__name__)

# Fields that only bound how long or where training runs: changing them keeps a run resumable.
RESUMABLE_FIELDS = (
    "max_epochs",
    "max_steps",
    "min_steps",
    "max_time_s",
    "early_stopping_patience",
    "accelerator",
    "devices",
    "num_workers",
)
METRIC_COLUMNS = {
    "train_loss": "train_loss",
    "val_loss": "val_loss",
    "train_recon": "recon",
    "train_kl": "kl",
    "val_recon": "val_recon",
    "val_kl": "val_kl",
    "kl_weight": "kl_weight",
    "train_inv": "inv",
}
# Lightning warnings that do not apply here: memory-mapped tiles load fast without workers, the
# checkpoint folder is ours to reuse when resuming, and a deprecation inside Lightning itself.
_QUIET = (
    r".*does not have many workers.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*Total length of .* across ranks is zero.*",  # no validation split: intended
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
)


def build_model(
    params: TrainParams,
    tile_size: int,
    tile_params: dict[str, Any] | None = None,
    val_split: dict[str, Any] | None = None,
    channels: int = 1,
) -> TileAutoencoder:
    """The autoencoder a training recipe describes, for tiles of ``tile_size`` with ``channels`` channels."""
    return TileAutoencoder(
        tile_size=tile_size,
        channels=channels,
        latent_dim=params.latent_dim,
        base_channels=params.base_channels,
        depth=params.depth,
        model=params.model,
        beta=params.beta,
        kl_warmup_epochs=params.kl_warmup_epochs,
        recon_loss=params.recon_loss,
        learning_rate=params.learning_rate,
        denoise_noise_std=params.denoise_noise_std,
        denoise_mask_fraction=params.denoise_mask_fraction,
        augment=params.augment,
        invariance=float(params.invariance),
        tile_params=tile_params,
        val_split=val_split,
    )


class StepSeed(Callback):
    """Reseed torch from ``(seed, global step, rank)`` before every training batch.

    The VAE's sampling noise, denoising corruption and augmentation then depend only on the step, so a
    run resumed from ``last.ckpt`` continues exactly as an uninterrupted one. (Seeding per epoch is not
    enough: after a restore, Lightning creates the dataloader iterator, which draws from the global
    generator, at another moment than in a fresh epoch.)
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        entropy = [self.seed, trainer.global_step, trainer.global_rank]
        torch.manual_seed(int(np.random.SeedSequence(entropy).generate_state(1)[0]))


AUTO_EPOCHS = 30  # max_steps auto: this many epochs' steps ...
AUTO_STEPS = (2000, 20000)  # ... kept within these bounds where augmentation makes every epoch new views;
AUTO_STEPS_PLAIN = (200, 20000)  # without it each epoch repeats the same tiles: 260 epochs of the demo's 287
# calls (the 2,000-step floor) left a map of 2 clusters (V 0.59), 30 epochs one of the 4 call types (V 0.97)
SMALL_SET = 640  # fewer training tiles than this: batch_size auto is smaller than 64
VAL_EVERY_STEPS = 100  # tiny epochs: validate only every few epochs, so early stopping sees real progress


def resolve_training(params: TrainParams, modality: str, n_train: int) -> tuple[TrainParams, Choices, int]:
    """``params`` with its ``auto`` values found from the store (modality, number of training tiles), how
    each was chosen, and the epochs between validation checks.

    Training length is counted in optimizer steps, not epochs: 30 epochs of 105 tiles are 30 steps, of
    100,000 tiles 45,000; the step budget keeps both in a range where a model learns and does not
    overfit for hours, and early stopping on the validation loss ends it sooner where that stops improving.
    """
    choices = Choices()
    if modality == "images":
        dihedral = ("dihedral", "images: a particle under the microscope has no up or left")
    else:
        dihedral = ("none", f"{modality}: the tile's axes have meanings (time, frequency)")
    augment = choices.pick("augment", params.augment, dihedral, "none", "")
    pull = (1.0, "images: a particle's latent should not depend on its pose") if augment != "none" else \
        (0.0, "no augmentation, no poses to be invariant to")
    invariance = choices.pick("invariance", params.invariance, pull, 0.0, "")
    if n_train >= SMALL_SET:
        size = (64, f"{n_train} training tiles")
    else:
        size = (max(8, int(2 ** round(np.log2(max(n_train / 10, 1))))), f"about a tenth of {n_train} training tiles")
    batch = choices.pick("batch_size", params.batch_size, size, 64, "")
    per_epoch = steps_per_epoch(n_train, batch)
    # without augmentation an epoch is the natural unit (the same tiles again): validate after every one
    every = validation_interval(per_epoch, explicit_epochs=not is_auto(params.max_epochs) or augment == "none")
    if is_auto(params.max_steps) and is_auto(params.max_epochs):
        bounds = AUTO_STEPS if augment != "none" else AUTO_STEPS_PLAIN
        steps, check = int(np.clip(AUTO_EPOCHS * per_epoch, *bounds)), every * per_epoch
        # end on a validation check: round up what was raised to the minimum, down what was cut to the maximum
        steps = -(-steps // check) * check if steps <= bounds[0] else max(steps // check, 1) * check
        max_steps = choices.data("max_steps", steps, f"{AUTO_EPOCHS} epochs of {per_epoch} steps, within "
                                 f"{bounds[0]}-{bounds[1]} ({'augmented' if augment != 'none' else 'no augmentation'}"
                                 f"), validated every {every} epoch(s)")
    elif is_auto(params.max_steps):
        max_steps = choices.data("max_steps", int(params.max_epochs) * per_epoch,
                                 f"max_epochs {params.max_epochs} x {per_epoch} steps")
    else:
        max_steps = choices.config("max_steps", params.max_steps)
    max_epochs = choices.pick("max_epochs", params.max_epochs,
                              (-(-max_steps // per_epoch), f"max_steps {max_steps} / {per_epoch} steps per epoch"),
                              1, "")
    resolved = dataclasses.replace(params, augment=augment, invariance=invariance, batch_size=batch,
                                   max_steps=max_steps, max_epochs=max_epochs)
    return resolved, choices, every


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer steps per epoch (the last, partial batch is dropped when there is more than one batch)."""
    return max(1, n_train // batch_size)


def validation_interval(per_epoch: int, explicit_epochs: bool) -> int:
    """Epochs between validation checks: every epoch, or (epochs not set by the user) enough epochs for about
    VAL_EVERY_STEPS steps, so early stopping's patience means the same on 100 tiles as on 100,000."""
    return 1 if explicit_epochs else max(1, -(-VAL_EVERY_STEPS // per_epoch))


def train_model(store_dir: Path, params: TrainParams, out_dir: Path) -> Path:
    """Train on the tile store at ``store_dir`` and return the path of the best checkpoint (``vae.ckpt``)."""
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    L.seed_everything(params.seed, workers=True)
    store = TileStore(store_dir)
    n_train = len(split_indices(len(store), params.val_fraction, params.seed)[0])
    params, choices, val_every = resolve_training(params, str(store.meta.get("modality", "")), n_train)
    per_epoch = steps_per_epoch(n_train, int(params.batch_size))
    data = TileDataModule(store_dir, int(params.batch_size), params.val_fraction, params.seed, params.num_workers)
    model = build_model(
        params,
        store.tile_size,
        tile_params=store.tile_params,
        val_split={"n_items": len(store), "val_fraction": params.val_fraction, "seed": params.seed},
        channels=store.channels,
    )
    # Under DDP every rank runs this function (one process per device, started by `srun` or torchrun);
    # only rank 0 clears stale state and writes the outputs, the others decide the same resume read-only.
    rank = rank_zero_only.rank
    resume = _resumable_checkpoint(out_dir, _run_key(params, store), clear=rank == 0)
    precision = resolve_precision(params.precision, params.accelerator)
    monitor = "val_loss" if len(data.val_indices) else "train_loss"
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor=monitor,
        mode="min",
        save_last=True,
        enable_version_counter=False,
    )
    trainer = L.Trainer(
        accelerator=params.accelerator,
        devices=params.devices,
        precision=precision,  # type: ignore[arg-type]
        max_epochs=int(params.max_epochs),
        # a budget of whole epochs is max_epochs' to enforce (a run stopped by max_steps does not resume cleanly)
        max_steps=-1 if int(params.max_steps) % per_epoch == 0 else int(params.max_steps),
        min_steps=params.min_steps,
        check_val_every_n_epoch=val_every,
        max_time=None if params.max_time_s is None else datetime.timedelta(seconds=params.max_time_s),
        gradient_clip_val=params.gradient_clip_val,
        callbacks=[
            checkpoint,
            EarlyStopping(monitor, patience=params.early_stopping_patience, mode="min"),
            StepSeed(params.seed),
        ],
        logger=CSVLogger(out_dir, name="logs"),
        deterministic=True if on_cpu(params.accelerator) else "warn",
        enable_progress_bar=sys.stderr.isatty(),
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    log.info(
        "training %s (%s) on %d tiles (%d train, %d val) of %s for up to %d steps (%d epochs)%s%s",
        params.model,
        precision,
        len(store),
        len(data.train_indices),
        len(data.val_indices),
        store_dir,
        params.max_steps,
        params.max_epochs,
        f", resuming from {resume}" if resume else "",
        _distributed_note(trainer),
    )
    with warnings.catch_warnings():
        for pattern in _QUIET:
            warnings.filterwarnings("ignore", message=pattern)
        trainer.fit(model, datamodule=data, ckpt_path=resume, weights_only=True)

    target = out_dir / "vae.ckpt"
    if not trainer.is_global_zero:
        return target
    best = Path(checkpoint.best_model_path or checkpoint.last_model_path)
    if not best.is_file():
        raise RuntimeError(
            f"training wrote no checkpoint in {ckpt_dir} (did max_time_s end the first epoch?)"
        )
    with atomic_path(target) as tmp:
        shutil.copyfile(best, tmp)
    metrics = _write_metrics(out_dir / "logs", out_dir / "metrics.csv")
    best_score = None if checkpoint.best_model_score is None else float(checkpoint.best_model_score)
    write_json(
        {
            "train": to_dict(params),
            "settings": choices.records,
            "tile_params": store.tile_params,
            "tile_settings": store.meta.get("settings", {}),
            "store": {"path": str(store_dir), "n_items": len(store), "tile_size": store.tile_size},
            "n_train": len(data.train_indices),
            "n_val": len(data.val_indices),
            "epochs": int(metrics["epoch"].max()) + 1 if len(metrics) else 0,
            "steps": int(trainer.global_step),
            "precision": precision,
            "monitor": monitor,
            "best_score": best_score,
            "resumed_from": str(resume) if resume else None,
            "world_size": trainer.world_size,
            "versions": _versions(),
        },
        out_dir / "params.json",
    )
    log.info("best %s %s -> %s", monitor, best_score, target)
    return target


def _distributed_note(trainer: L.Trainer) -> str:
    """How training is spread: e.g. ", DDP rank 0 of 2 (SLURMEnvironment)"; empty for one process."""
    if trainer.world_size == 1:
        return ""
    env = type(trainer.strategy.cluster_environment).__name__
    return f", {type(trainer.strategy).__name__} rank {trainer.global_rank} of {trainer.world_size} ({env})"


def _run_key(params: TrainParams, store: TileStore) -> dict[str, Any]:
    """What must be unchanged for a run to resume: the training recipe and the exact tiles it sees."""
    recipe = {k: v for k, v in to_dict(params).items() if k not in RESUMABLE_FIELDS}
    items = hashlib.sha1("\n".join(store.index["item_id"].astype(str)).encode()).hexdigest()
    key = {
        "train": recipe,
        "tile_params": store.tile_params,
        "shape": list(store.shape),
        "item_ids_sha1": items,
    }
    return json.loads(json.dumps(key))


def _resumable_checkpoint(out_dir: Path, key: dict[str, Any], clear: bool = True) -> Path | None:
    """``last.ckpt`` of an interrupted run with the same recipe and tiles; otherwise clear stale state
    (unless ``clear`` is false: the DDP ranks other than 0 only look)."""
    ckpt_dir, log_dir = out_dir / "checkpoints", out_dir / "logs"
    last, run_file = ckpt_dir / "last.ckpt", ckpt_dir / "run.json"
    if last.is_file() and run_file.is_file() and json.loads(run_file.read_text()) == key:
        return last
    if not clear:
        return None
    if ckpt_dir.exists() or log_dir.exists():
        log.warning("discarding checkpoints and logs in %s: made with other parameters or tiles", out_dir)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        shutil.rmtree(log_dir, ignore_errors=True)
    write_json(key, run_file)
    return None


def _write_metrics(log_dir: Path, out_path: Path) -> pd.DataFrame:
    """One row per epoch from all CSV log versions (a resumed run logs to a new version folder).

    A killed run may have logged part of an epoch that was then repeated; the later value wins.
    """

    def version(p: Path) -> int:
        match = re.fullmatch(r"version_(\d+)", p.parent.name)
        return int(match.group(1)) if match else -1

    frames = [pd.read_csv(p) for p in sorted(log_dir.glob("version_*/metrics.csv"), key=version)]
    raw = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"epoch": []})
    per_epoch = raw.dropna(subset=["epoch"]).groupby("epoch", sort=True).last().reset_index()
    table = pd.DataFrame({"epoch": per_epoch["epoch"].astype(int)})
    for source, name in METRIC_COLUMNS.items():
        table[name] = per_epoch.get(source, np.nan)
    with atomic_path(out_path) as tmp:
        table.to_csv(tmp, index=False)
    return table


def _versions() -> dict[str, str]:
    return {
        "quagga": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }
