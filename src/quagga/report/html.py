"""Assemble a dataset's report: one self-contained HTML page, rendered from a Jinja2 template.

Python computes what each section shows (tables of plain values, figures and tiles as data URIs, sound
clips); the page's structure, order and style live in ``templates/report.html.j2``, which a lab can
restyle without touching this file. The template environment escapes every value it prints (autoescape,
through ``html.escape``), so a label, file name or parameter from the data is shown as text and never
run; only Bokeh's own output is marked safe. Figures are inline base64 PNGs and the style sheet is
inline, so the page can be mailed or archived as one file and references nothing outside itself.

All tables are joined on ``item_id``. With ``predicted_labels.csv`` (the evaluate stage's), the labels
shown are the corrected ones and every item also carries its predicted label. With a metadata table (file
name -> date, site, depth...), a Covariates section follows the cluster abundance along each column (see
:mod:`quagga.report.covariates`), the tables behind its figures written as CSV next to the page. A dataset
projected onto a reference run (encoded, mapped and clustered with the reference's models) is drawn over the
reference's map in the reference's cluster colours, with its cluster counts beside the reference's and its
most novel items.

Tiles are drawn as the store holds them: grey (C = 1) through the modality's colormap, colour (C = 3) as
RGB. Absorbance tiles (``normalize.intensity: absorbance``: particles bright on black) are shown as
``1 - tile``, so they look like the bright-field micrograph they were cut from. The run details list every
setting the stages found from the data (``auto``), with the statistic behind it; stated fallbacks stand out.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from markupsafe import Markup

from quagga import __version__
from quagga.evaluate.labelling import label_next
from quagga.params import ReportParams
from quagga.report import covariates as cov
from quagga.report import figures, interactive, media
from quagga.settings import AUTO, read_settings
from quagga.tables import atomic_path, read_table_params
from quagga.tiles.store import TileStore

log = logging.getLogger(__name__)

SUBSAMPLE_SEED = 0  # the scatter's subsample is the same on every run
SKIPPED_ROWS_MAX = 500  # a longer skipped list is cut here; the full list stays in the store's skipped.csv
GALLERY_PX = 64  # tile side in galleries and tables
CONTACT_SHEET_FILE = "contact_sheet.png"  # next to index.html: the tiles of every label, to check by eye
DETAIL_PX = 128  # tile side for reconstructions, prior samples and interpolations
TEMPLATE = "report.html.j2"
SETTINGS_FILE = "settings.json"  # results/{dataset}/: the settings stage's resolved tile settings
TRAIN_PARAMS_FILE = "models/params.json"  # results/{dataset}/: the train stage's record (settings, steps)
PROJECTION_FILE = "projection.json"  # results/{dataset}/ of a projected dataset: its reference and novelty
PROJECTION_CSV = "projection-clusters.csv"  # next to index.html: cluster counts, reference and new

# the page's sections in order: the answer first, the parameters last
SECTIONS: tuple[tuple[str, str], ...] = (
    ("overview", "Summary"),
    ("embedding", "Map"),
    ("projection", "New data and the reference"),
    ("covariates", "Covariates"),
    ("metrics", "Label agreement"),
    ("contingency", "Labels by cluster"),
    ("mislabelled", "Likely mislabelled items"),
    ("label_next", "Label next"),
    ("corrections", "Correcting labels"),
    ("few_labels", "Few-label classifier"),
    ("labels", "Tiles per label"),
    ("gallery", "Cluster gallery"),
    ("examples", "Reconstructions and samples"),
    ("anomalies", "Most anomalous items"),
    ("training", "Training curves"),
    ("skipped", "Skipped inputs"),
    ("summary", "Run details"),
)

OPTIONAL_SECTIONS = frozenset({"projection", "covariates"})  # shown only with a reference, with metadata

_METRICS: tuple[tuple[str, str], ...] = (
    ("n_items", "items compared"),
    ("n_labels", "distinct human labels"),
    ("n_unlabelled", "items without a human label"),
    ("n_clusters", "clusters found (noise not counted)"),
    ("noise_fraction", "share of items HDBSCAN calls noise"),
    ("homogeneity", "each cluster holds a single label (1 = pure clusters)"),
    ("completeness", "each label falls in a single cluster (1 = no label is split)"),
    ("v_measure", "harmonic mean of homogeneity and completeness"),
    ("ari", "adjusted Rand index: pairwise agreement beyond chance"),
    ("ami", "adjusted mutual information: shared information beyond chance"),
)
_BEFORE_AFTER = ("n_labels", "n_unlabelled", "homogeneity", "completeness", "v_measure", "ari", "ami")


@dataclass(frozen=True)
class Image:
    """A picture in the page (a PNG as a data URI); ``tiles``: drawn pixelated, as tiles are."""

    src: str
    alt: str
    tiles: bool = False


@dataclass(frozen=True)
class Clip:
    """A sound clip (an Ogg data URI) with a player."""

    src: str


@dataclass(frozen=True)
class Table:
    """Columns and rows of plain values, Images or Clips; ``numeric``: indices of right-aligned columns;
    ``flagged``: indices of rows drawn to stand out (e.g. settings that fell back)."""

    columns: list[str]
    rows: list[list[object]]
    numeric: frozenset[int] = frozenset()
    flagged: frozenset[int] = frozenset()


def _text(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str)
    return str(value)


def _finalize(value: object) -> object:
    """Every value the template prints: as text (missing as n/a), escaped, unless already markup."""
    return value if isinstance(value, Markup) else Markup(html.escape(_text(value)))


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("quagga.report", "templates"),
    autoescape=True,
    finalize=_finalize,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_ENV.tests.update(image=lambda v: isinstance(v, Image), clip=lambda v: isinstance(v, Clip))


def _img(png: bytes, alt: str, tiles: bool = False) -> Image:
    return Image("data:image/png;base64," + base64.b64encode(png).decode("ascii"), alt, tiles)


def _table(columns: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[str] = (),
           flagged: Iterable[int] = ()) -> Table:
    right = frozenset(i for i, c in enumerate(columns) if c in numeric)
    return Table(list(columns), [list(row) for row in rows], right, frozenset(flagged))


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, object]]:
    """Nested parameters as (dotted key, value) rows."""
    rows: list[tuple[str, object]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows.extend(_flatten(value, f"{name}."))
        else:
            rows.append((name, value))
    return rows


def join_items(
    store: TileStore, latents_path: Path, embedding_path: Path, clusters_path: Path
) -> pd.DataFrame:
    """One row per item on the map: tile row, label, source, x, y, cluster, probability, recon_error (and
    outlier_score and novel, when the clusters table has them)."""
    index = store.index
    items = pd.DataFrame(
        {
            "item_id": index["item_id"].astype(str),
            "tile_row": np.arange(len(index)),
            "label": index["label"].astype("string")
            if "label" in index
            else pd.Series(pd.NA, index.index, "string"),
            "source": index["source"].astype("string")
            if "source" in index
            else pd.Series(pd.NA, index.index, "string"),
        }
    )
    embedding = pd.read_parquet(embedding_path, columns=["item_id", "x", "y"])
    optional = [c for c in ("outlier_score", "novelty", "novel") if c in pq.read_schema(clusters_path).names]
    clusters = pd.read_parquet(clusters_path, columns=["item_id", "cluster", "probability", *optional])
    latent_cols = [c for c in ("item_id", "recon_error") if c in pq.read_schema(latents_path).names]
    latents = pd.read_parquet(latents_path, columns=latent_cols)
    for table in (embedding, clusters, latents):
        table["item_id"] = table["item_id"].astype(str)
    joined = (
        items.merge(embedding, on="item_id", validate="one_to_one")
        .merge(clusters, on="item_id", validate="one_to_one")
        .merge(latents, on="item_id", how="left", validate="one_to_one")
    )
    if len(joined) != len(items):
        log.warning(
            "%d of %d tiles have no embedding or cluster; they are left out of the report",
            len(items) - len(joined),
            len(items),
        )
    joined["cluster"] = joined["cluster"].astype(int)
    return joined.reset_index(drop=True)


def with_predictions(items: pd.DataFrame, predicted_path: Path | None) -> pd.DataFrame:
    """``items`` with the evaluate stage's labels (corrections applied) and predicted labels, when written:
    columns label, predicted_label, predicted_probability, labelled."""
    if predicted_path is None or not Path(predicted_path).is_file():
        return items
    predicted = pd.read_csv(predicted_path, dtype={"item_id": str, "label": "string", "predicted_label": "string"},
                            keep_default_na=False, na_values={"label": [""], "predicted_label": [""]})
    if predicted.empty:
        return items
    predicted = predicted.rename(columns={"probability": "predicted_probability", "label": "corrected"})
    joined = items.merge(predicted, on="item_id", how="left", validate="one_to_one")
    joined["label"] = joined.pop("corrected").fillna(joined["label"])  # corrections replace or add, never remove
    joined["labelled"] = joined["labelled"].astype("boolean").fillna(False).astype(bool)
    return joined


def subsample_per_cluster(items: pd.DataFrame, max_points: int, seed: int = SUBSAMPLE_SEED) -> pd.DataFrame:
    """At most about ``max_points`` rows, drawn per cluster in proportion, so small clusters stay visible.

    Every cluster (and the noise) keeps at least one point; rows keep their original order.
    """
    if len(items) <= max_points:
        return items
    rng = np.random.default_rng(seed)
    keep = [
        rng.choice(
            group.index.to_numpy(),
            size=min(len(group), max(1, max_points * len(group) // len(items))),
            replace=False,
        )
        for _, group in items.groupby("cluster", sort=True)
    ]
    return items.loc[np.sort(np.concatenate(keep))]


def bright_field(store: TileStore) -> bool:
    """Whether the store's tiles are absorbance (``normalize.intensity: absorbance``): particles bright on
    black, to be shown as ``1 - tile`` (a white field with the stained particle, as under the microscope).

    Read from the tile parameters, else (an ``auto`` left there) from the store's settings record.
    """
    if store.meta.get("modality") == "audio":
        return False
    intensity = (store.meta.get("tile_params") or {}).get("intensity")
    if intensity is None or intensity == AUTO:
        record = (store.meta.get("settings") or {}).get("normalize.intensity")
        intensity = record.get("value") if isinstance(record, Mapping) else None
    return intensity == "absorbance"


def _tiles(store: TileStore, rows: Sequence[int]) -> np.ndarray:
    """Tiles as shown, read from the memory map (only these rows are touched): float32 ``[n, S, S]``
    (grey) or ``[n, 3, S, S]`` (colour); absorbance tiles inverted (see :func:`bright_field`)."""
    tiles = figures.tile_batch(store.tiles[np.asarray(rows, dtype=int)])
    return 1.0 - tiles if bright_field(store) else tiles


def _has_audio(store: TileStore, source_root: Path | None) -> bool:
    return source_root is not None and {"source", "onset_s", "offset_s"} <= set(store.index.columns)


class Sounds:
    """The audio items' clips by tile row, each made once: the map's all together (by the workers), the
    tables' and gallery's looked up, or made here when not on the map. Only clips made are kept: an item
    whose recording could not be read is tried again when asked for again, as it was before."""

    def __init__(self, store: TileStore, source_root: Path | None):
        self.store, self.source_root = store, source_root
        self.made: dict[int, str] = {}

    def times(self, rows: Sequence[int]) -> pd.DataFrame:
        """Columns source, onset_s, offset_s of the items at tile ``rows``, indexed 0..n-1."""
        times = self.store.index.iloc[np.asarray(rows, dtype=int)][["source", "onset_s", "offset_s"]]
        return times.reset_index(drop=True)

    def keep(self, rows: Sequence[int], clips: Sequence[str]) -> None:
        self.made.update((int(row), clip) for row, clip in zip(rows, clips, strict=True) if clip)

    def clips(self, rows: Sequence[int]) -> tuple[list[str], list[str]]:
        """Ogg clip data URIs of the audio items at tile ``rows`` ('' each for images or without audio),
        and the problems met (one per unreadable recording)."""
        if self.source_root is None or not _has_audio(self.store, self.source_root):
            return [""] * len(rows), []
        missing = list(dict.fromkeys(int(row) for row in rows if int(row) not in self.made))
        problems: list[str] = []
        if missing:
            clips, problems = interactive.audio_clips(self.times(missing), Path(self.source_root))
            self.keep(missing, clips)
        return [self.made.get(int(row), "") for row in rows], problems


def _tile_table(
    store: TileStore, top: pd.DataFrame, columns: Sequence[str], cells: Sequence[Sequence[object]],
    numeric: Sequence[str], sounds: Sounds, origin: str, cmap: str, at: int = 0,
) -> Table:
    """``columns`` and ``cells`` of the items ``top`` with each row's tile and sound inserted at column ``at``
    (no sound column when no item has one)."""
    clips, _ = sounds.clips(top["tile_row"].to_numpy())
    tiles = _tiles(store, top["tile_row"])
    media = [
        [_img(figures.tile_grid([tile[None]], origin, cmap, GALLERY_PX), f"item {item_id}", True)]
        + ([Clip(clip) if clip else ""] if any(clips) else [])
        for tile, clip, item_id in zip(tiles, clips, top["item_id"], strict=True)
    ]
    head = ["tile", "sound"] if any(clips) else ["tile"]
    return _table([*columns[:at], *head, *columns[at:]],
                  [[*row[:at], *extra, *row[at:]] for row, extra in zip(cells, media, strict=True)], numeric)


def _chunks(arr: np.ndarray, size: int) -> list[np.ndarray]:
    return [arr[i : i + size] for i in range(0, len(arr), max(size, 1))]


def _share(n: int, total: int) -> str:
    return f"{n} ({n / max(total, 1):.1%})"


def _overview(
    items: pd.DataFrame, metrics: Mapping[str, Any], skipped: pd.DataFrame, fallbacks: Sequence[str] = (),
    other_granularity: Mapping[str, Any] | None = None, noise_assigned: float = 0.0,
    reference: Reference | None = None,
) -> dict[str, Any]:
    """The one-screen answer: what was there, what was found, how well it matches the labels (and which
    settings could not be found from the data: ``fallbacks``; a clustering at another granularity that the
    data support about as well: ``other_granularity``; the run a projected dataset was placed in:
    ``reference``)."""
    n_noise = int((items["cluster"] == -1).sum())
    n_labelled = int(items["label"].notna().sum())
    v = metrics.get("v_measure")
    interval = (metrics.get("intervals") or {}).get("v_measure")
    agreement = "n/a (no labels)" if v is None else f"{v:.3f}" + (
        f" (95 % interval {interval[0]:.3f} to {interval[1]:.3f})" if interval else "")
    facts = [
        ("items on the map", len(items)),
        ("labelled items", f"{n_labelled} in {items['label'].nunique()} labels"),
        ("clusters", int(items.loc[items["cluster"] >= 0, "cluster"].nunique())),
        ("noise items", _share(n_noise, len(items)) + (
            f" ({100 * noise_assigned:.1f} % left as noise by the chosen setting were given their most likely "
            "cluster: max_noise_fraction)" if noise_assigned else "")),
        ("V-measure against the labels", agreement),
        ("skipped inputs", len(skipped)),
    ]
    if reference is not None:
        facts.insert(0, ("projection", reference.onto))
        if "novel" in items:
            facts.insert(4, ("novel items", _share(int(items["novel"].sum()), len(items))
                             + ": far from every cluster of the reference"))
    corrections = metrics.get("corrections")
    if corrections:
        before = corrections["before"].get("v_measure")
        facts.append(("labels corrected", f"{corrections['n_changed']} (V-measure "
                      + ("n/a" if before is None else f"{before:.3f}") + " before the corrections)"))
    propagation = metrics.get("propagation")
    if propagation:
        facts.append(("labels predicted", _propagation_text(propagation)))
    flagged = []
    if fallbacks:
        flagged.append(len(facts))
        facts.append(("settings not found from the data",
                      f"{len(fallbacks)} fell back to a stated default: {', '.join(fallbacks)} (see Run details)"))
    if other_granularity:
        flagged.append(len(facts))
        other = other_granularity
        facts.append(("another granularity", (
            f"{other['n_clusters']} clusters are about as valid (DBCV {other['dbcv']:.3f}, min_cluster_size "
            f"{other['min_cluster_size']}, min_samples {other['min_samples']}, {other['cluster_selection_method']}):"
            " the data support a coarser and a finer grouping; which one is chosen can change with the seed")))
    return {"facts": _table(["", "value"], facts, flagged=flagged)}


def _propagation_text(propagation: Mapping[str, Any]) -> str:
    cv = propagation.get("cv_balanced_accuracy") or {}
    chosen = f"{propagation['classifier']} on {propagation.get('features', 'latents')}"
    text = f"every item, by {chosen.replace('_', ' ')} from {propagation['n_labelled']} labelled items"
    if chosen in cv:
        text += f" (cross-validated balanced accuracy {cv[chosen]:.3f})"
    hidden = propagation.get("hidden")
    if hidden:
        text += (f"; with {propagation['keep_percent']:g} % of the labels kept, balanced accuracy "
                 f"{hidden['balanced_accuracy']:.3f} on the {hidden['n']} hidden")
    return text


def _read_record(path: Path | None) -> dict[str, Any]:
    """A JSON record of another stage (settings.json, params.json); empty when absent or unreadable."""
    if path is None or not Path(path).is_file():
        return {}
    try:
        record = read_settings(path)
    except (OSError, ValueError) as exc:
        log.warning("%s: not read (%s); its settings are not shown", path, exc)
        return {}
    return record if isinstance(record, dict) else {}


def found_settings(
    store: TileStore, train_record: Mapping[str, Any], embedding_path: Path | None,
    settings_path: Path | None = None,
) -> list[tuple[str, Mapping[str, Any]]]:
    """How every setting of the run was chosen, in stage order (tiles, train, embed): (dotted config key,
    record with ``value``, ``source`` (config, data or fallback) and ``statistic``).

    The tile settings are the store's (``store.json``: what made the tiles), else ``settings_path`` (the
    settings stage's ``settings.json``); training's are ``train_record["settings"]`` (``models/params.json``),
    the embedding's ride in its table's parameters. A record absent (an older run) gives no rows.
    """
    section, tiles = str(store.meta.get("modality", "tiles")), store.meta.get("settings")
    if not tiles:
        resolved = _read_record(settings_path)
        section, tiles = str(resolved.get("modality", section)), resolved.get("choices")
    embed = read_table_params(embedding_path).get("settings") if embedding_path is not None \
        and Path(embedding_path).is_file() else None
    rows: list[tuple[str, Mapping[str, Any]]] = []
    for prefix, records in ((section, tiles), ("train", train_record.get("settings")), ("embed", embed)):
        if isinstance(records, Mapping):
            rows += [(f"{prefix}.{key}", record) for key, record in records.items()
                     if isinstance(record, Mapping) and "value" in record]
    return rows


def _setting_value(value: object) -> str:
    """A setting as text: floats to 4 significant digits (a band's ends too), the rest as they are."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple) and any(isinstance(v, float) for v in value):
        return "[" + ", ".join(_setting_value(v) for v in value) + "]"
    return _text(value)


def _settings(settings: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any] | None:
    """The table of settings found from the data, fallbacks flagged; None when the run recorded none."""
    if not settings:
        return None
    rows = [(key, _setting_value(r.get("value")), r.get("source", "?"), r.get("statistic", ""))
            for key, r in settings]
    flagged = [i for i, (_, r) in enumerate(settings) if r.get("source") == "fallback"]
    return {"table": _table(["setting", "value", "source", "statistic"], rows, flagged=flagged),
            "fallbacks": [settings[i][0] for i in flagged]}


def _run_details(
    dataset: str, modality: str, store: TileStore, items: pd.DataFrame, skipped: pd.DataFrame,
    run_info: Mapping[str, Any], settings: Sequence[tuple[str, Mapping[str, Any]]] = (),
    train_record: Mapping[str, Any] | None = None, reference: Reference | None = None,
) -> dict[str, Any]:
    n_noise = int((items["cluster"] == -1).sum())
    facts = [
        ("dataset", dataset),
        ("modality", modality),
        ("tiles in the store", len(store)),
        ("tile size", f"{store.tile_size} x {store.tile_size}"
         + (" (colour)" if store.channels == 3 else "")
         + (", absorbance shown inverted (white field)" if bright_field(store) else "")),
        ("items on the map", len(items)),
        ("labelled items", int(items["label"].notna().sum())),
        ("distinct labels", int(items["label"].nunique())),
        ("clusters", int(items.loc[items["cluster"] >= 0, "cluster"].nunique())),
        ("noise items", _share(n_noise, len(items))),
        ("skipped inputs", len(skipped)),
    ]
    if reference is not None:
        facts.insert(1, ("projection", reference.onto))
    train_record = train_record or {}
    if "steps" in train_record:
        facts.append(("training steps run", f"{train_record['steps']} ({train_record.get('epochs', '?')} epochs)"))
    params = _flatten(run_info) + _flatten(store.tile_params, "tiles.")
    return {"facts": _table(["", "value"], facts),
            "params": _table(["parameter", "value"], params) if params else None,
            "settings": _settings(settings)}


def _metric_value(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return _text(value)
    if isinstance(value, int | np.integer):
        return str(value)
    if isinstance(value, float | np.floating):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return _text(value)


def _metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    known = dict(_METRICS)
    keys = [k for k, _ in _METRICS if k in metrics]
    keys += sorted(k for k, v in metrics.items() if k not in known and not isinstance(v, Mapping | list))
    if not keys:
        return {"empty": "No label agreement metrics were computed (no human labels?)."}
    note = "same, noise items left out"
    intervals = metrics.get("intervals") or {}

    def interval(key: str) -> str:
        return f"{intervals[key][0]:.3f} to {intervals[key][1]:.3f}" if key in intervals else ""

    rows = [
        (k, _metric_value(metrics[k]), interval(k), known.get(k, note if k.startswith("nonnoise_") else ""))
        for k in keys
    ]
    return {"table": _table(["metric", "value", "95 % interval", "meaning"], rows, numeric=["value"]),
            "n_boot": (metrics.get("evaluate_params") or {}).get("bootstrap", "") if intervals else None}


def _start_embedding(
    dataset: str, store: TileStore, items: pd.DataFrame, params: ReportParams, origin: str,
    source_root: Path | None, image_page: int, sounds: Sounds, workers: int = 1,
    levels: Sequence[int] | None = None, covariates: pd.DataFrame | None = None,
    reference: Reference | None = None,
) -> Callable[[], tuple[dict[str, Any], str]]:
    """The interactive map (and the static figure under it) plus the page-head resources it needs, started:
    returns the wait for them.

    The points' thumbnails and clips or crops are made by ``workers`` processes (1: here, when waited for)
    while the caller draws the sections that need none of them; the clips are kept in ``sounds`` for the
    tables that show them again, so those are drawn after the wait. ``levels``: the cluster ids the colours
    are spread over; ``covariates``: the items' metadata (indexed like ``items``); ``reference``: its points
    drawn grey behind (subsampled as the items are)."""
    shown = subsample_per_cluster(items, params.max_points)
    note = (
        f"Showing {len(shown)} of {len(items)} points: subsampled per cluster (max_points = "
        f"{params.max_points}, seed {SUBSAMPLE_SEED})."
        if len(shown) < len(items)
        else f"All {len(items)} points shown. Noise and unlabelled items are grey."
    )
    if shown.empty:
        return lambda: ({"note": note, "problems": [], "map": None}, "")
    shown_covariates = None if covariates is None else covariates.loc[shown.index].reset_index(drop=True)
    shown = shown.reset_index(drop=True)
    background = None if reference is None else subsample_per_cluster(reference.items, params.max_points)
    if background is not None:
        note += f" Light grey behind: {len(background)} of the reference's {len(reference.items)} items."
    rows = shown["tile_row"].to_numpy()
    audio = boxes = None
    if _has_audio(store, source_root):
        audio = sounds.times(rows)
    elif source_root is not None and {"xmin", "ymin", "xmax", "ymax"} <= set(store.index.columns):
        boxes = pd.concat([shown[["source"]],
                           store.index[["xmin", "ymin", "xmax", "ymax"]].iloc[rows].reset_index(drop=True)], axis=1)
    wait = media.start_point_media(store.path, rows, origin, bright_field(store), audio, boxes, source_root,
                                   image_page, workers)
    png = figures.embedding_scatter(
        shown["x"].to_numpy(), shown["y"].to_numpy(), shown["cluster"].to_numpy(), shown["label"].tolist(), levels,
        None if background is None else (background["x"].to_numpy(float), background["y"].to_numpy(float)),
    )
    static = _img(png, "2-D embedding coloured by cluster and by label")
    predicted = "predicted_label" in shown and shown["predicted_label"].notna().any()

    def finish() -> tuple[dict[str, Any], str]:
        made = wait()
        if made.clips is not None:
            sounds.keep(rows, made.clips)
        head, body = interactive.interactive_map(dataset, shown, made.thumbs, made.clips, made.crops, levels,
                                                 shown_covariates, background)
        return {"note": note, "problems": made.problems, "map": Markup(body), "static": static,
                "predicted": predicted}, head

    return finish


def _contingency(metrics: Mapping[str, Any], items: pd.DataFrame) -> dict[str, Any]:
    table = metrics.get("contingency") or {}
    labels, clusters, counts = table.get("labels"), table.get("clusters"), table.get("counts")
    if not (labels and clusters and counts):
        labelled = items.dropna(subset=["label"])
        if labelled.empty:
            return {"empty": "No labelled items: nothing to compare the clusters with."}
        cross = pd.crosstab(labelled["label"], labelled["cluster"])
        labels, clusters, counts = list(cross.index), list(cross.columns), cross.to_numpy()
    png = figures.contingency_heatmap(labels, clusters, np.asarray(counts))
    best = metrics.get("best_cluster_per_label") or []
    per_label = _table(
        ["label", "items", "best cluster", "purity", "recall"],
        [
            (r["label"], r["n"], "noise" if r["cluster"] == -1 else r["cluster"], f"{r['purity']:.2f}",
             f"{r['recall']:.2f}")
            for r in best
        ],
        numeric=["items", "purity", "recall"],
    ) if best else None
    return {"heatmap": _img(png, "contingency table of labels and clusters"), "per_label": per_label}


def contact_sheet(store: TileStore, items: pd.DataFrame, n_per_label: int, origin: str, cmap: str) -> bytes | None:
    """PNG of up to ``n_per_label`` random tiles (fixed seed) of every human label; None without labels."""
    labelled = items.dropna(subset=["label"])
    if labelled.empty:
        return None
    rng = np.random.default_rng(SUBSAMPLE_SEED)
    rows = []
    for label, group in labelled.groupby("label", sort=True):
        pick = np.sort(rng.choice(group["tile_row"].to_numpy(), min(n_per_label, len(group)), replace=False))
        rows.append((f"{label} ({len(group)})", _tiles(store, pick)))
    return figures.contact_sheet(rows, origin, cmap, GALLERY_PX)


def _labels(sheet: bytes | None) -> dict[str, Any]:
    if sheet is None:
        return {"empty": "No item has a human label."}
    return {"sheet": _img(sheet, "tiles per label", tiles=True)}


def _gallery(
    store: TileStore, items: pd.DataFrame, params: ReportParams, origin: str, cmap: str, sounds: Sounds
) -> dict[str, Any]:
    clustered = items[items["cluster"] >= 0]
    if clustered.empty:
        return {"empty": "HDBSCAN found no clusters: every item is noise."}
    groups = [
        (cluster, group, group.sort_values(["probability", "item_id"], ascending=[False, True]))
        for cluster, group in clustered.groupby("cluster", sort=True)
    ]
    clips, _ = sounds.clips([ranked["tile_row"].iloc[0] for _, _, ranked in groups])
    rows = []
    for (cluster, group, ranked), clip in zip(groups, clips, strict=True):
        best = ranked.head(params.n_examples)
        counts = group["label"].value_counts().head(3)
        top = ", ".join(f"{label} ({n})" for label, n in counts.items()) or "unlabelled"
        png = figures.tile_grid([_tiles(store, best["tile_row"])], origin, cmap, GALLERY_PX)
        row = [cluster, len(group), f"{group['probability'].mean():.2f}", top, Clip(clip) if clip else ""]
        rows.append([*row, _img(png, f"cluster {cluster} examples", tiles=True)])
    columns = ["cluster", "items", "mean probability", "top labels", "listen", "examples"]
    if not any(clips):
        columns.remove("listen")
        rows = [row[:4] + row[5:] for row in rows]
    return {"n_noise": int((items["cluster"] == -1).sum()), "listen": any(clips),
            "table": _table(columns, rows, numeric=["cluster", "items", "mean probability"])}


def _examples(
    examples_path: Path | None, params: ReportParams, origin: str, cmap: str, invert: bool = False
) -> dict[str, Any]:
    """Inputs and reconstructions, prior samples, interpolation (``[n, S, S]`` or ``[n, C, S, S]`` each);
    ``invert``: absorbance tiles, shown as ``1 - tile``."""
    if examples_path is None or not Path(examples_path).is_file():
        return {"empty": "No reconstructions or samples were written for this run."}
    with np.load(examples_path, allow_pickle=False) as npz:
        ex = {k: npz[k] for k in npz.files}
    for key in ("input", "recon", "prior_samples", "interpolation"):
        if key in ex and invert:
            ex[key] = 1.0 - np.asarray(ex[key], dtype=np.float32)
    out: dict[str, Any] = {}
    if "input" in ex and "recon" in ex:
        pairs = [
            row
            for a, b in zip(
                _chunks(ex["input"], params.n_examples), _chunks(ex["recon"], params.n_examples), strict=True
            )
            for row in (a, b)
        ]
        out["reconstructions"] = _img(figures.tile_grid(pairs, origin, cmap, DETAIL_PX),
                                      "inputs and reconstructions", True)
        out["held_out"] = bool(ex.get("held_out"))
        out["item_ids"] = ", ".join(str(i) for i in ex.get("item_id", []))
    if "prior_samples" in ex and len(ex["prior_samples"]):
        out["prior"] = _img(figures.tile_grid(_chunks(ex["prior_samples"], params.n_examples), origin, cmap,
                                              DETAIL_PX), "samples decoded from the prior", True)
    if "interpolation" in ex and len(ex["interpolation"]):
        out["interpolation"] = _img(figures.tile_grid([ex["interpolation"]], origin, cmap, DETAIL_PX),
                                    "latent interpolation", True)
    return out or {"empty": f"{examples_path.name} holds no known arrays."}


def _anomalies(
    store: TileStore, items: pd.DataFrame, params: ReportParams, origin: str, cmap: str, sounds: Sounds
) -> dict[str, Any]:
    if "recon_error" not in items or items["recon_error"].isna().all():
        return {"empty": "The latents table has no reconstruction errors."}
    top = items.dropna(subset=["recon_error"]).nlargest(params.n_examples, "recon_error")
    table = _tile_table(
        store, top, ["rank", "item_id", "label", "source", "cluster", "recon_error"],
        [(rank, r.item_id, r.label, r.source, "noise" if r.cluster == -1 else r.cluster, f"{r.recon_error:.4g}")
         for rank, r in enumerate(top.itertuples(), start=1)],
        ["rank", "recon_error"], sounds, origin, cmap, at=1,
    )
    return {"n": len(top), "table": table}


def _mislabelled(
    store: TileStore, items: pd.DataFrame, metrics: Mapping[str, Any], params: ReportParams, origin: str, cmap: str,
    sounds: Sounds,
) -> dict[str, Any]:
    if "likely_mislabelled" not in metrics:
        return {"empty": "This run's evaluation did not look for mislabelled items."}
    flagged = pd.DataFrame(metrics["likely_mislabelled"], columns=["item_id", "cluster_label", "cluster_purity"])
    top = flagged.merge(items, on="item_id").head(params.n_examples)
    evaluate = metrics.get("evaluate_params") or {}
    out = {
        "n": metrics.get("n_likely_mislabelled", len(flagged)),
        "min_probability": evaluate.get("mislabelled_min_probability", "?"),
        "min_purity": evaluate.get("mislabelled_min_purity", "?"),
        "shown": len(top) if len(top) < len(flagged) else None,
        "table": None,
    }
    if not top.empty:
        out["table"] = _tile_table(
            store, top, ["item_id", "label", "cluster", "cluster's label", "its share", "membership"],
            [(r.item_id, r.label, r.cluster, r.cluster_label, f"{r.cluster_purity:.2f}", f"{r.probability:.2f}")
             for r in top.itertuples()],
            ["its share", "membership"], sounds, origin, cmap,
        )
    return out


def _label_next(
    store: TileStore, items: pd.DataFrame, metrics: Mapping[str, Any], params: ReportParams, origin: str, cmap: str,
    sounds: Sounds,
) -> dict[str, Any]:
    """The items to label next among those the classifier was not trained on: one of every cluster without
    a label, then the least certain predictions."""
    if "predicted_label" not in items or items["predicted_label"].isna().all():
        return {"empty": "No labels were predicted for this run (it needs latents and at least two labels)."}
    predicted = items[items["predicted_label"].notna()].reset_index(drop=True)
    labelled = predicted["labelled"].to_numpy()
    clusters = predicted["cluster"].to_numpy()
    rows = label_next(predicted["predicted_probability"].to_numpy(float), ~labelled, params.label_next, clusters,
                      predicted["probability"].to_numpy(float))
    top = predicted.iloc[rows]
    # label_next puts one item of each cluster without a label first
    n_unexplored = len(set(clusters[(clusters >= 0) & ~labelled]) - set(clusters[labelled]))
    if top.empty:
        return {"empty": "Every item's label was used to train the classifier: nothing is left to label next. "
                         "To see what a few labels would give, set evaluate.propagation_keep_percent (e.g. 1)."}
    out: dict[str, Any] = {"propagation": _propagation_text(metrics["propagation"]) if "propagation" in metrics
                           else "", "n": len(top)}
    out["table"] = _tile_table(
        store, top, ["item_id", "why", "predicted label", "probability", "cluster", "label"],
        [(r.item_id, "a cluster without labels" if rank < n_unexplored else "least certain", r.predicted_label,
          f"{r.predicted_probability:.2f}", r.cluster, r.label) for rank, r in enumerate(top.itertuples())],
        ["probability"], sounds, origin, cmap,
    )
    # the download: item_id,label first (what labels_corrections reads); label empty unless the item has one
    out["csv"] = [
        [r.item_id, "" if pd.isna(r.label) else str(r.label), r.predicted_label, f"{r.predicted_probability:.4f}",
         int(r.cluster), "" if pd.isna(r.source) else str(r.source)]
        for r in top.itertuples()
    ]
    return out


def _corrections(metrics: Mapping[str, Any]) -> dict[str, Any]:
    corrections = metrics.get("corrections")
    if not corrections:
        return {"applied": None}
    before = corrections["before"]
    rows = [(k, _metric_value(before.get(k)), _metric_value(metrics.get(k))) for k in _BEFORE_AFTER]
    problems = _table(["line", "item_id", "label", "problem"],
                      [(p["line"], p["item_id"], p["label"], p["problem"]) for p in corrections["problems"]])
    agreement = _table(["metric", "before", "after"], rows, numeric=["before", "after"])
    return {"applied": corrections, "agreement": agreement, "problems": problems if corrections["problems"] else None}


def _few_labels(metrics: Mapping[str, Any]) -> dict[str, Any]:
    curve = pd.DataFrame(metrics.get("few_label_curve") or [])
    if curve.empty:
        return {"empty": "No few-label classifier curve was computed for this run."}
    best = curve[curve["features"] == "latents"].groupby("fraction")["balanced_accuracy"].max()
    return {"summary": ", ".join(f"{100 * f:g} %: {a:.2f}" for f, a in best.items()),
            "figure": _img(figures.few_label_curve(curve), "balanced accuracy against the share of items labelled")}


def _training(curve_path: Path | None) -> dict[str, Any]:
    if curve_path is None or not Path(curve_path).is_file():
        return {"empty": "No training log was found for this run."}
    try:
        epochs = figures.per_epoch(pd.read_csv(curve_path))
    except pd.errors.EmptyDataError:
        epochs = pd.DataFrame()
    if epochs.empty:
        return {"empty": f"{curve_path.name} holds no per-epoch values."}
    return {"figure": _img(figures.training_curves(epochs), "training and validation loss per epoch")}


def _skipped(skipped: pd.DataFrame) -> dict[str, Any]:
    if skipped.empty:
        return {"empty": "No inputs were skipped."}
    cols = ["source", "item", "reason"]
    rows = skipped.reindex(columns=cols).head(SKIPPED_ROWS_MAX).itertuples(index=False)
    return {"n": len(skipped), "cut": len(skipped) > SKIPPED_ROWS_MAX, "table": _table(cols, rows)}


def refined_text(refined: Mapping[str, Any], path: str = "") -> str:
    """The clusters the cluster stage split again, in words: which (by their number before the split), how
    many items, into how many sub-clusters at what DBCV; nested splits in brackets."""
    parts = []
    for key, node in refined.items():
        name = f"{path}{key}"
        text = f"cluster {name} ({node['n_items']} items) into {node['n_clusters']} at DBCV {node['dbcv']:.2f}"
        if node.get("refined"):
            text += f" [{refined_text(node['refined'], f'{name}.')}]"
        parts.append(text)
    return "; ".join(parts)


def cluster_levels(clusters_path: Path) -> list[int]:
    """The cluster ids of a clustering table (noise left out): what its cluster colours are spread over."""
    ids = pd.read_parquet(clusters_path, columns=["cluster"])["cluster"].astype(int)
    return sorted(set(ids.tolist()) - {-1})


@dataclass(frozen=True)
class Reference:
    """The run a dataset was projected onto: its results folder, dataset name, items (item_id, x, y, cluster)
    and the projection's record (``projection.json``: reference, novelty_threshold, n_novel...)."""

    path: Path
    name: str
    items: pd.DataFrame
    record: Mapping[str, Any]

    @property
    def onto(self) -> str:
        return f"projected onto {self.name} ({self.path})"


def read_reference(reference_dir: Path, projection_path: Path) -> Reference:
    """The reference's map and clusters (its embedding.parquet and clusters.parquet) and the projected
    dataset's ``projection_path`` record (empty when absent); a missing table is a FileNotFoundError naming it."""
    reference_dir = Path(reference_dir).absolute()
    tables = [reference_dir / "embedding.parquet", reference_dir / "clusters.parquet"]
    for path in tables:
        if not path.is_file():
            raise FileNotFoundError(f"reference {reference_dir}: no {path.name} (the reference dataset's results "
                                    "folder holds embedding.parquet and clusters.parquet)")
    embedding = pd.read_parquet(tables[0], columns=["item_id", "x", "y"])
    clusters = pd.read_parquet(tables[1], columns=["item_id", "cluster"])
    for table in (embedding, clusters):
        table["item_id"] = table["item_id"].astype(str)
    items = embedding.merge(clusters, on="item_id", validate="one_to_one")
    items["cluster"] = items["cluster"].astype(int)
    record = _read_record(projection_path)
    recorded = record.get("reference")
    if recorded and Path(str(recorded)).resolve() != reference_dir.resolve():
        log.warning("%s names the reference %s, the report was given %s; the report's is shown", projection_path,
                    recorded, reference_dir)
    return Reference(reference_dir, str(record.get("reference_dataset") or reference_dir.name), items, record)


def _cluster_name(cluster: int) -> str:
    return "noise" if cluster == -1 else str(cluster)


def projection_counts(reference: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """Items per cluster (noise last), in the reference and in the new data: columns cluster (-1: noise),
    n_reference, share_reference, n_new, share_new and, with a ``novel`` column, n_novel (new items far from
    every reference cluster)."""
    ref = reference["cluster"].astype(int).value_counts()
    new = items["cluster"].astype(int).value_counts()
    ids = sorted(set(ref.index) | set(new.index), key=lambda k: (k == -1, k))
    table = pd.DataFrame({"cluster": ids})
    table["n_reference"] = ref.reindex(ids, fill_value=0).to_numpy()
    table["share_reference"] = table["n_reference"] / max(len(reference), 1)
    table["n_new"] = new.reindex(ids, fill_value=0).to_numpy()
    table["share_new"] = table["n_new"] / max(len(items), 1)
    if "novel" in items:
        novel = items.loc[items["novel"].astype(bool), "cluster"].astype(int).value_counts()
        table["n_novel"] = novel.reindex(ids, fill_value=0).to_numpy()
    return table


def _projection(
    store: TileStore, items: pd.DataFrame, reference: Reference, params: ReportParams, origin: str, cmap: str,
    sounds: Sounds, out_dir: Path,
) -> dict[str, Any]:
    """The new data against the reference: items per cluster in both (also written as PROJECTION_CSV next to
    the page) and the most novel items (highest novelty, else outlier score, among those flagged novel)."""
    counts = projection_counts(reference.items, items)
    with atomic_path(out_dir / PROJECTION_CSV) as tmp:
        counts.to_csv(tmp, index=False)
    columns = ["cluster", "reference items", "reference share", "new items", "new share"]
    rows = [[_cluster_name(r.cluster), r.n_reference, f"{r.share_reference:.1%}", r.n_new, f"{r.share_new:.1%}"]
            for r in counts.itertuples()]
    if "n_novel" in counts:
        columns.append("of them novel")
        rows = [[*row, n] for row, n in zip(rows, counts["n_novel"], strict=True)]
    out: dict[str, Any] = {
        "reference": reference.name, "path": str(reference.path), "n_reference": len(reference.items),
        "rule": _novelty_rule(reference.record), "csv": PROJECTION_CSV,
        "counts": _table(columns, rows, numeric=columns[1:]),
    }
    if "novel" not in items:
        out["novel_empty"] = "The clusters table has no novel column: novelty was not assessed."
        return out
    novel = items[items["novel"].astype(bool)]
    out["n_novel"] = len(novel)
    if novel.empty:
        out["novel_empty"] = "No item is novel: every one lies within the reference's clusters."
        return out
    keys = [c for c in ("novelty", "outlier_score") if c in novel and novel[c].notna().any()]
    top = novel.sort_values([*keys, "item_id"], ascending=[*(False for _ in keys), True]).head(params.n_examples)

    def score(row: Any, key: str) -> str:
        return f"{getattr(row, key):.3f}" if key in keys else "n/a"

    columns = ["rank", "item_id", "label", "source", "cluster", "novelty", "outlier score", "reconstruction error"]
    out["novel"] = _tile_table(
        store, top, columns,
        [(rank, r.item_id, r.label, r.source, _cluster_name(r.cluster), score(r, "novelty"),
          score(r, "outlier_score"), _setting_value(getattr(r, "recon_error", None)))
         for rank, r in enumerate(top.itertuples(), start=1)],
        columns[-3:], sounds, origin, cmap, at=1,
    )
    return out


def _novelty_rule(record: Mapping[str, Any]) -> str:
    """What made an item novel, from the projection's record: the thresholds it was held to."""
    threshold, quantile = record.get("recon_error_threshold"), record.get("novelty_quantile")
    if not isinstance(threshold, int | float) or not math.isfinite(threshold):
        return "not recorded"
    where = f" (the reference's {100 * quantile:g}th percentile; novelty is that percentile)" if quantile else ""
    return f"a reconstruction error above {threshold:.4g}{where}"


def _p_value(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.1e}"


def _independence_text(test: cov.Independence | None) -> str:
    if test is None:
        return ""
    if test.statistic is None:
        return f"Chi-square test of independence {test.note} ({test.n} clustered items)."
    text = (f"Chi-square test that the cluster composition does not depend on this column (noise left out, "
            f"{test.n} items): chi-square {test.statistic:.2f}, {test.dof} degrees of freedom, "
            f"p = {_p_value(test.p_value or 0.0)}")
    return text + (f"; {test.note}." if test.note else ".")


def _covariates(
    covariates: pd.DataFrame, items: pd.DataFrame, levels: Sequence[int], origin: str, out_dir: Path
) -> dict[str, Any]:
    """Every metadata column: its cluster abundance (figure, table, chi-square test, CSV next to the page), or
    why it is not shown."""
    palette = figures.cluster_colours([*levels, *items["cluster"].astype(int).tolist()])
    shown: list[dict[str, Any]] = []
    hidden: list[tuple[str, str, str]] = []
    for c in cov.summarise(covariates, items["cluster"]):
        if c.table is None or c.csv is None:
            hidden.append((c.name, c.values, c.note))
            continue
        cov.write_csv(c.table, out_dir / c.csv)
        names = [cov.cluster_column(k) for k in c.clusters]
        shares = c.table[[f"share_{n}" for n in names]].to_numpy(float)
        png = figures.cluster_shares(c.table.iloc[:, 0].astype(str).tolist(), shares, c.table["n_items"].tolist(),
                                     c.clusters, palette, c.name, c.kind == cov.BINNED and cov.downward(c.name))
        head = [c.table.columns[0], "items", *("noise" if k == -1 else f"cluster {k}" for k in c.clusters)]
        rows = [[r[0], r[1], *(_share(int(n), int(r[1])) for n in r[2:])]
                for r in c.table[[c.table.columns[0], "n_items", *(f"n_{n}" for n in names)]].itertuples(index=False)]
        shown.append({
            "name": c.name, "kind": c.kind, "note": c.note, "values_are": c.values, "csv": c.csv,
            "n_missing": c.n_missing, "test": _independence_text(c.test),
            "figure": _img(png, f"cluster shares by {c.name}"),
            "table": _table(head, rows, numeric=head[1:]),
        })
    about = (f"Numbers and dates with more than {cov.MAX_LEVELS} distinct values are cut into {cov.N_BINS} "
             "equal-width bins between their smallest and largest value (empty bins kept); other columns with 2 to "
             f"{cov.MAX_CATEGORIES} values are shown value by value. Shares count every item of the bin or value, "
             "noise included. The chi-square test (scipy's chi2_contingency) asks whether the cluster composition "
             "depends on the column, on the counts of clustered items per bin or value and cluster (noise, empty "
             f"rows and empty clusters left out); it is marked approximate when over "
             f"{cov.MAX_SMALL_EXPECTED:.0%} of the expected counts are below {cov.MIN_EXPECTED}.")
    return {"origin": origin, "n_items": len(items), "shown": shown, "about": about,
            "not_shown": _table(["column", "values", "why not shown"], hidden) if hidden else None}


def render_page(context: Mapping[str, Any]) -> str:
    """The page from the template; ``context`` holds each section's content under its id (see SECTIONS).
    An optional section (OPTIONAL_SECTIONS) without content is left out, from the page and its contents."""
    sections = [(sid, name) for sid, name in SECTIONS if sid not in OPTIONAL_SECTIONS or context.get(sid)]
    return _ENV.get_template(TEMPLATE).render(
        sections=sections, version=__version__, max_skipped=SKIPPED_ROWS_MAX, contact_sheet_file=CONTACT_SHEET_FILE,
        **context,
    )


def build_report(
    dataset: str,
    tiles_dir: Path,
    latents_path: Path,
    embedding_path: Path,
    clusters_path: Path,
    metrics_path: Path,
    examples_path: Path | None,
    training_curve_path: Path | None,
    params: ReportParams,
    out_dir: Path,
    run_info: dict[str, Any] | None = None,
    source_root: Path | None = None,
    predicted_path: Path | None = None,
    image_page: int = 0,
    train_params_path: Path | None = None,
    settings_path: Path | None = None,
    workers: int = 1,
    metadata_path: Path | None = None,
    table_covariates: pd.DataFrame | None = None,
    reference_dir: Path | None = None,
) -> Path:
    """Write ``out_dir/index.html`` (atomically) and return its path.

    ``source_root`` is the folder the items' ``source`` paths are relative to; with it, clicking an
    audio point on the map plays its call, and hovering an image point shows its original crop (from page
    ``image_page`` of a multi-page TIFF). ``predicted_path``: the evaluate stage's predicted_labels.csv.
    ``train_params_path`` and ``settings_path`` (the train stage's params.json and the settings stage's
    settings.json, for the settings table) default to where the results grammar puts them, next to the
    tile store: ``{dataset}/models/params.json`` and ``{dataset}/settings.json``; absent files are skipped.
    ``workers``: processes that make the map's thumbnails and clips or crops (1: all here, no pool); the page
    is the same whatever the number. They are spawned, so a script that asks for more than one needs the
    ``if __name__ == "__main__":`` guard (each worker imports the main module).

    ``metadata_path``: a CSV keyed by recording or image file (see :mod:`quagga.report.covariates`); its
    columns get a Covariates section (tables as ``covariate-<column>.csv`` next to the page) and colour the map.
    ``table_covariates``: more covariates per item (indexed by item_id): the extra columns of the call or box
    table and each call's duration (:func:`quagga.report.covariates.item_covariates`); shown like the metadata's.
    ``reference_dir``: the results folder of the run this dataset was projected onto (its embedding.parquet
    and clusters.parquet; the projection's record is ``projection.json`` next to the tile store): the map
    shows the reference's items behind, clusters take the reference's colours, and a section compares the
    cluster counts (``projection-clusters.csv``) and shows the most novel items.
    """
    store = TileStore(tiles_dir)
    modality = str(store.meta.get("modality", ""))
    origin, cmap = figures.tile_display(modality)
    results = Path(tiles_dir).parent
    train_record = _read_record(Path(train_params_path) if train_params_path else results / TRAIN_PARAMS_FILE)
    settings = found_settings(store, train_record, Path(embedding_path),
                              Path(settings_path) if settings_path else results / SETTINGS_FILE)
    fallbacks = [key for key, record in settings if record.get("source") == "fallback"]
    items = join_items(store, Path(latents_path), Path(embedding_path), Path(clusters_path))
    items = with_predictions(items, Path(predicted_path) if predicted_path else None)
    origins, parts = [], []
    if metadata_path is not None:
        parts.append(cov.join_metadata(items["source"], cov.read_metadata(metadata_path), metadata_path))
        origins.append(f"of the metadata {Path(metadata_path).name} (joined to the items by file: the same relative "
                       "path, else the same base name)")
    if table_covariates is not None and len(table_covariates.columns):
        extra = table_covariates.reindex(items["item_id"].astype(str).to_numpy())
        extra.index = items.index
        parts.append(extra.drop(columns=[c for c in extra.columns if any(c in p.columns for p in parts)]))
        origins.append("the annotation or box table has besides times, boxes and labels (joined by its row)")
    covariates = pd.concat(parts, axis=1) if parts else None
    reference = None if reference_dir is None else read_reference(Path(reference_dir), results / PROJECTION_FILE)
    levels = cluster_levels(reference.path / "clusters.parquet" if reference is not None else Path(clusters_path))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = json.loads(Path(metrics_path).read_text())
    skipped = store.skipped
    log.info("report for %s: %d items, %d skipped", dataset, len(items), len(skipped))
    sounds = Sounds(store, source_root)
    finish_map = _start_embedding(dataset, store, items, params, origin, source_root, image_page, sounds, workers,
                                  levels, covariates, reference)
    sheet = contact_sheet(store, items, params.n_examples, origin, cmap)
    # the HDBSCAN setting the cluster stage chose without labels, next to the configured candidates
    selection = read_table_params(clusters_path)
    info = {**(run_info or {}), "cluster_selected": selection.get("selected")}
    if selection.get("refined"):
        info["cluster_refined"] = refined_text(selection["refined"])
    # the sections without sound clips, drawn while the workers make the map's media
    context = {
        "dataset": dataset,
        "n_examples": params.n_examples,
        "overview": _overview(items, metrics, skipped, fallbacks, selection.get("other_granularity"),
                              float(selection.get("noise_assigned") or 0.0), reference),
        "covariates": None if covariates is None else _covariates(covariates, items, levels, " and ".join(origins),
                                                                  out_dir),
        "metrics": _metrics(metrics),
        "contingency": _contingency(metrics, items),
        "corrections": _corrections(metrics),
        "few_labels": _few_labels(metrics),
        "labels": _labels(sheet),
        "examples": _examples(Path(examples_path) if examples_path else None, params, origin, cmap,
                              bright_field(store)),
        "training": _training(Path(training_curve_path) if training_curve_path else None),
        "skipped": _skipped(skipped),
        "summary": _run_details(dataset, modality, store, items, skipped, info, settings, train_record, reference),
    }
    embedding, head = finish_map()
    page = render_page({
        **context,
        "head": Markup(head),  # Bokeh's inline resources: trusted, not data
        "embedding": embedding,
        # the sections that play items' clips: after the map's, which they reuse
        "projection": None if reference is None else _projection(store, items, reference, params, origin, cmap,
                                                                 sounds, out_dir),
        "mislabelled": _mislabelled(store, items, metrics, params, origin, cmap, sounds),
        "label_next": _label_next(store, items, metrics, params, origin, cmap, sounds),
        "gallery": _gallery(store, items, params, origin, cmap, sounds),
        "anomalies": _anomalies(store, items, params, origin, cmap, sounds),
    })
    if sheet is not None:
        with atomic_path(out_dir / CONTACT_SHEET_FILE) as tmp_sheet:
            Path(tmp_sheet).write_bytes(sheet)
    path = out_dir / "index.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    log.info("wrote %s (%.0f kB)", path, path.stat().st_size / 1024)
    return path
