"""Typed, frozen parameters for every stage.

The JSON schema (workflow/schemas/config.schema.yaml) holds defaults and bounds; these dataclasses
turn one validated config section into a typed object, so stage code never reads loose dicts.
Field names equal the config keys one to one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


class ParamsError(ValueError):
    """A parameter section does not fit its dataclass (unknown key, wrong type)."""


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build ``cls`` from a config section, rejecting unknown keys; nested dataclasses recurse."""
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamsError(f"{where or cls.__name__}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        sub = _NESTED.get((cls.__name__, name))
        if sub is not None:
            value = from_dict(sub, value, f"{where}.{name}" if where else name)
        kwargs[name] = value
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain dict (JSON-able) of a params dataclass, for sidecars and the report."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))


@dataclass(frozen=True)
class SpectrogramParams:
    """How a call becomes a tile. Stored with the tiles; training refuses a store made otherwise.

    ``auto`` values are found from the recordings before tiling (``quagga.audio.settings``); a store
    always records the resolved numbers.
    """

    sample_rate: int | str = "auto"  # auto: the recordings' own rate
    n_fft: int | str = "auto"  # auto: about tile_size FFT bins over fmin..fmax
    hop_length: int | str = "auto"  # auto: about tile_size frames per tile
    n_mels: int = 128
    fmin: float | str = "auto"  # auto: the band where the calls stand above the noise
    fmax: float | str = "auto"
    db_min: float | str = "auto"  # fixed normalisation bounds (loudness survives); auto: noise floor ...
    db_max: float | str = "auto"  # ... and the loudest call bins
    tile_duration_s: float | str = "auto"  # time span of one tile; auto: every call but rare outliers fits
    tile_size: int = 128
    scale: str = "linear"  # linear (STFT bins between fmin and fmax) | mel
    normalize: str = "fixed"  # fixed: db_min..db_max for every tile | per_tile: each tile's own min..max
    # none: a call spans duration / tile_duration_s of the tile | sqrt: AVA-style, sqrt of that fraction |
    # full: every call spans the whole tile (its shape, not its duration, is what the tile shows) | auto: full
    time_stretch: str = "auto"
    noise_reduce: bool = False  # stationary spectral gating (noisereduce) before the spectrogram


@dataclass(frozen=True)
class SegmentParams:
    """Energy segmentation (the AVA / vocalseg method) for recordings without annotated calls.

    The energy trace is the band power in dB per STFT frame, smoothed; thresholds are relative to the
    noise floor of the block being segmented, so recordings made at different gains segment alike.
    ``auto`` values are found from the recordings' own energy trace (``quagga.audio.settings``).
    """

    n_fft: int | str = "auto"  # auto: 16 ms
    hop_length: int | str = "auto"  # auto: n_fft / 8
    fmin: float | str = "auto"  # band whose energy is traced (Hz); auto: where loud frames stand out
    fmax: float | str = "auto"
    smooth_s: float = 0.005  # moving-average window of the energy trace
    noise_percentile: float = 20.0  # the noise floor: this percentile of the trace
    onset_db: float | str = "auto"  # a call starts when the trace rises this far above the noise floor ...
    offset_db: float | str = "auto"  # ... and ends when it falls below this
    peak_db: float | str = "auto"  # and is kept only if it reaches this somewhere
    min_gap_s: float | str = "auto"  # calls separated by a shorter gap are merged
    min_duration_s: float = 0.02
    max_duration_s: float = 0.5  # longer segments are listed as skipped, not tiled


@dataclass(frozen=True)
class AudioParams:
    """Where the recordings and their annotations are, and how calls are found."""

    recordings: str = "data/demo/audio"  # folder (searched recursively) or a single file
    annotations: str | None = "data/demo/audio/selections.txt"  # a table, or a folder of per-recording files
    annotation_format: str = "raven"  # csv | raven | audacity | notmat | textgrid
    label_column: str = "call_type"
    channel: str = "mix"  # "mix" or a 0-based channel number as text
    segments: str = "annotations"  # annotations: the annotated calls | energy: found by segment (labels by overlap)
    segment: SegmentParams = field(default_factory=SegmentParams)
    block_s: float = 120.0  # long recordings are read and processed in blocks of this length
    max_clipped_fraction: float = 0.01  # calls with more samples at full scale are skipped
    shards: int = 1  # tiling jobs: contiguous blocks of the recordings, merged into one store
    spectrogram: SpectrogramParams = field(default_factory=SpectrogramParams)


@dataclass(frozen=True)
class NormalizeParams:
    """How a particle crop becomes a tile."""

    tile_size: int = 128
    scale_mode: str = "auto"  # fit: particle fills the tile | fixed: tile covers fixed_extent_px pixels | auto
    fixed_extent_px: int | str = "auto"  # auto: the largest particles (99th percentile) with their margin
    margin: float = 0.1  # context around a box, as a fraction of its longer side
    intensity: str = "auto"  # percentile: per-crop stretch | absorbance: 1 - I / background | auto: by the field
    gain: float | str = "auto"  # absorbance x gain, so faint stained cells use the range; auto: from the data
    orient: str = "none"  # none | canonical: major axis along x, mass lower right
    percentile_low: float = 1.0
    percentile_high: float = 99.0
    invert: bool = False  # dark particles on a bright field: invert so particles are bright


@dataclass(frozen=True)
class DetectParams:
    """Automatic particle detection in field images without boxes (images.input: segment)."""

    channel: str | None = None  # None: images.channel
    background_sigma_px: float = 50.0  # Gaussian background estimate subtracted first (0: none)
    threshold: str = "otsu"  # otsu | li | triangle | yen
    polarity: str = "auto"  # auto | dark | bright
    open_px: int = 2  # opening radius: removes specks and thin bridges
    close_px: int = 0  # closing radius: joins the parts of one particle (the lobes of a nucleus)
    fill_holes: bool = True
    split_touching: bool = False  # watershed on the distance transform
    split_min_distance_px: int = 15
    grow_px: int = 0  # dilate each particle mask (e.g. to include a pale rim)
    min_area_px: int = 50
    max_area_px: int | None = None
    border: str = "keep"  # keep | drop particles that touch the image edge
    label_min_iou: float = 0.5  # with a box table: a particle takes the label of a box it overlaps this much


@dataclass(frozen=True)
class ImageParams:
    """Where the images and their labels or boxes are."""

    input: str = "single"  # single: one particle per image | boxes: field images + box table | segment
    images: str = "data/demo/images/particles"
    labels: str | None = "data/demo/images/particles/labels.csv"  # single: file,label
    boxes: str | None = None  # boxes: image,label,xmin,ymin,xmax,ymax (segment: optional, for labels)
    channel: str = "auto"  # luminance | red | green | blue | hematoxylin | eosin | rgb | auto
    page: int = 0  # page of a multi-page TIFF
    max_megapixels: float = 100.0  # larger images are refused from their header, before decoding
    single_crop: str = "particle"  # single: tile the located particle | the whole image
    shards: int = 1  # tiling jobs: contiguous blocks of the images, merged into one store
    normalize: NormalizeParams = field(default_factory=NormalizeParams)
    detect: DetectParams = field(default_factory=DetectParams)


@dataclass(frozen=True)
class TrainParams:
    """The model and its Trainer. ``auto`` values are resolved from the tile store at training time."""

    model: str = "vae"  # vae | ae
    latent_dim: int = 32
    base_channels: int = 16
    depth: int = 5  # stride-2 stages; the bottleneck is tile_size / 2**depth
    beta: float = 1.0
    kl_warmup_epochs: int = 0
    recon_loss: str = "mse"  # mse | bce
    denoise_noise_std: float = 0.0
    denoise_mask_fraction: float = 0.0
    augment: str = "auto"  # none | dihedral (random 90-degree turns and mirror flips) | auto: images dihedral
    invariance: float | str = "auto"  # weight of the pull between two views' latents; auto: 1 with augment
    learning_rate: float = 1e-3
    batch_size: int | str = "auto"  # auto: 64, smaller for small data sets (enough steps per epoch)
    max_epochs: int | str = "auto"  # auto: as many as max_steps takes
    max_steps: int | str = "auto"  # optimizer steps; auto: 30 epochs, at least 2,000 and at most 20,000 steps
    min_steps: int = 1000  # early stopping cannot end training before this many steps
    max_time_s: float | None = None
    val_fraction: float = 0.1
    early_stopping_patience: int = 10  # validation checks (every epoch, or every ~100 steps for tiny epochs)
    gradient_clip_val: float = 1.0
    accelerator: str = "auto"
    devices: int = 1
    precision: str = "auto"  # auto: bf16-mixed where the hardware runs bf16 natively, else 32-true
    num_workers: int = 0
    seed: int = 0


@dataclass(frozen=True)
class EmbedParams:
    """ParametricUMAP: a 2-D map for plots and an n-D space for clustering."""

    n_neighbors: int = 15
    min_dist: float = 0.1
    cluster_dims: int = 10
    cluster_min_dist: float = 0.0
    metric: str = "euclidean"
    epochs: int = 14
    min_steps: int = 600  # small data sets get more epochs, so the encoder still takes this many steps
    batch_size: int = 2048
    negative_sample_rate: int = 5
    learning_rate: float = 1e-2  # with 14 epochs: umap-learn's trustworthiness in 2/3 of the time of 3e-3 x 20
    hidden: int = 128
    morphology: bool | str = "auto"  # embed the morphology features (z-scored) next to the latents; auto: images
    seed: int = 0


@dataclass(frozen=True)
class ClusterParams:
    """HDBSCAN on the n-D embedding."""

    # a value, or a list of candidates: every combination is fit and, among those with at most
    # max_noise_fraction noise, the clustering the candidates support most is kept (label-free model selection)
    min_cluster_size: float | list[float] = field(default_factory=lambda: [0.005, 0.01, 0.02, 0.04])  # < 1: fraction
    min_samples: int | None | list[int | None] = field(default_factory=lambda: [None, 5])
    cluster_selection_method: str | list[str] = field(default_factory=lambda: ["eom", "leaf"])  # eom | leaf
    max_noise_fraction: float = 0.05
    assign_noise: bool = False  # also report the most likely cluster of noise points (kept distinct)
    seed: int = 0


@dataclass(frozen=True)
class EvaluateParams:
    """Label agreement extras: intervals, items to re-check, the few-label classifier curve."""

    bootstrap: int = 200  # resamples for the metric intervals (0: none)
    mislabelled_min_probability: float = 0.9
    mislabelled_min_purity: float = 0.8
    few_label_repeats: int = 3  # labelled draws per fraction (0: no curve)
    few_label_max_items: int = 20000  # larger data sets are sampled for the curve
    # label propagation: hide all but this % of each label's items and score the predictions on the hidden
    propagation_keep_percent: float | None = None
    seed: int = 0


@dataclass(frozen=True)
class ReportParams:
    """What the report shows."""

    n_examples: int = 16
    max_points: int = 10000
    label_next: int = 30  # least certain predicted labels listed to label next


_NESTED: dict[tuple[str, str], type] = {
    ("AudioParams", "spectrogram"): SpectrogramParams,
    ("AudioParams", "segment"): SegmentParams,
    ("ImageParams", "normalize"): NormalizeParams,
    ("ImageParams", "detect"): DetectParams,
}
