"""Assemble a dataset's report: one self-contained HTML page.

All tables are joined on ``item_id``. Figures are inline base64 PNGs and the style sheet is inline, so
the page can be mailed or archived as one file and references nothing outside itself. Every string that
comes from data or config (labels, file names, parameters, reasons) goes through ``html.escape``: a
hostile label is shown as text and never run. Only ``Markup`` built here from escaped parts is trusted.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from quagga import __version__
from quagga.params import ReportParams
from quagga.report import figures, interactive
from quagga.tables import atomic_path, read_table_params
from quagga.tiles.store import TileStore

log = logging.getLogger(__name__)

SUBSAMPLE_SEED = 0  # the scatter's subsample is the same on every run
SKIPPED_ROWS_MAX = 500  # a longer skipped list is cut here; the full list stays in the store's skipped.csv
GALLERY_PX = 64  # tile side in galleries and tables
CONTACT_SHEET_FILE = "contact_sheet.png"  # next to index.html: the tiles of every label, to check by eye
DETAIL_PX = 128  # tile side for reconstructions, prior samples and interpolations

SECTIONS: tuple[tuple[str, str], ...] = (
    ("summary", "Run summary"),
    ("metrics", "Label agreement"),
    ("embedding", "Embedding"),
    ("contingency", "Labels by cluster"),
    ("mislabelled", "Likely mislabelled items"),
    ("few_labels", "Few-label classifier"),
    ("labels", "Tiles per label"),
    ("gallery", "Cluster gallery"),
    ("examples", "Reconstructions and samples"),
    ("anomalies", "Most anomalous items"),
    ("training", "Training curves"),
    ("skipped", "Skipped inputs"),
)

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

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }
nav a { margin-right: 1em; } .note { color: #555; font-style: italic; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: middle; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; } img.tiles { image-rendering: pixelated; }
"""


class Markup(str):
    """HTML built here from escaped parts; any other string is escaped before it reaches the page."""


def _text(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str)
    return str(value)


def _esc(value: object) -> str:
    return value if isinstance(value, Markup) else html.escape(_text(value))


def _p(text: object, cls: str = "") -> Markup:
    return Markup(f'<p class="{cls}">{_esc(text)}</p>' if cls else f"<p>{_esc(text)}</p>")


def _img(png: bytes, alt: str, tiles: bool = False) -> Markup:
    data = base64.b64encode(png).decode("ascii")
    cls = ' class="tiles"' if tiles else ""
    return Markup(f'<img{cls} src="data:image/png;base64,{data}" alt="{html.escape(alt)}">')


def _table(columns: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[str] = ()) -> Markup:
    """An HTML table; cells are escaped unless they are ``Markup``; ``numeric`` columns align right."""
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    right = [c in numeric for c in columns]
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if r else ''}>{_esc(v)}</td>" for v, r in zip(row, right, strict=True))
        + "</tr>"
        for row in rows
    )
    return Markup(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


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
    """One row per item on the map: tile row, label, source, x, y, cluster, probability, recon_error."""
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
    clusters = pd.read_parquet(clusters_path, columns=["item_id", "cluster", "probability"])
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


def _tiles(store: TileStore, rows: Sequence[int]) -> np.ndarray:
    """``[n, S, S]`` float32 tiles read from the memory map (only these rows are touched)."""
    return np.asarray(store.tiles[np.asarray(rows, dtype=int), 0], dtype=np.float32)


def _has_audio(store: TileStore, source_root: Path | None) -> bool:
    return source_root is not None and {"source", "onset_s", "offset_s"} <= set(store.index.columns)


def _clips(store: TileStore, rows: Sequence[int], source_root: Path | None) -> tuple[list[str], list[str]]:
    """Ogg clip data URIs of the audio items at tile ``rows`` ('' each for images or without audio),
    and the problems met (one per unreadable recording)."""
    if source_root is None or not _has_audio(store, source_root):
        return [""] * len(rows), []
    times = store.index.iloc[np.asarray(rows, dtype=int)][["source", "onset_s", "offset_s"]]
    return interactive.audio_clips(times.reset_index(drop=True), Path(source_root))


def _player(clip: str) -> Markup | str:
    return Markup(f'<audio controls preload="none" src="{clip}"></audio>') if clip else ""


def _chunks(arr: np.ndarray, size: int) -> list[np.ndarray]:
    return [arr[i : i + size] for i in range(0, len(arr), max(size, 1))]


def _summary(
    dataset: str,
    modality: str,
    store: TileStore,
    items: pd.DataFrame,
    skipped: pd.DataFrame,
    run_info: Mapping[str, Any],
) -> Markup:
    n_noise = int((items["cluster"] == -1).sum())
    facts = [
        ("dataset", dataset),
        ("modality", modality),
        ("tiles in the store", len(store)),
        ("tile size", f"{store.tile_size} x {store.tile_size}"),
        ("items on the map", len(items)),
        ("labelled items", int(items["label"].notna().sum())),
        ("distinct labels", int(items["label"].nunique())),
        ("clusters", int(items.loc[items["cluster"] >= 0, "cluster"].nunique())),
        ("noise items", f"{n_noise} ({n_noise / max(len(items), 1):.1%})"),
        ("skipped inputs", len(skipped)),
    ]
    params = _flatten(run_info) + _flatten(store.tile_params, "tiles.")
    return Markup(
        _table(["", "value"], facts)
        + "<h3>Parameters and versions</h3>"
        + (_table(["parameter", "value"], params) if params else _p("No parameters were recorded.", "note"))
    )


def _metric_value(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return _text(value)
    if isinstance(value, int | np.integer):
        return str(value)
    if isinstance(value, float | np.floating):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return _text(value)


def _metrics(metrics: Mapping[str, Any]) -> Markup:
    known = dict(_METRICS)
    keys = [k for k, _ in _METRICS if k in metrics]
    keys += sorted(k for k, v in metrics.items() if k not in known and not isinstance(v, Mapping | list))
    if not keys:
        return _p("No label agreement metrics were computed (no human labels?).", "note")
    note = "same, noise items left out"
    intervals = metrics.get("intervals") or {}

    def interval(key: str) -> str:
        return f"{intervals[key][0]:.3f} to {intervals[key][1]:.3f}" if key in intervals else ""

    rows = [
        (k, _metric_value(metrics[k]), interval(k), known.get(k, note if k.startswith("nonnoise_") else ""))
        for k in keys
    ]
    table = _table(["metric", "value", "95 % interval", "meaning"], rows, numeric=["value"])
    if not intervals:
        return table
    n_boot = (metrics.get("evaluate_params") or {}).get("bootstrap", "")
    return Markup(
        table
        + _p(
            f"Intervals: percentile bootstrap over the items ({n_boot} resamples), noise counted as a "
            "cluster. Two runs whose intervals overlap are not shown to differ.",
            "note",
        )
    )


def _embedding(
    dataset: str, store: TileStore, items: pd.DataFrame, params: ReportParams, origin: str,
    source_root: Path | None,
) -> tuple[Markup, str]:
    """The interactive map (and the static figure under it) plus the page-head resources it needs."""
    shown = subsample_per_cluster(items, params.max_points)
    note = (
        _p(
            f"Showing {len(shown)} of {len(items)} points: subsampled per cluster (max_points = "
            f"{params.max_points}, seed {SUBSAMPLE_SEED}).",
            "note",
        )
        if len(shown) < len(items)
        else _p(f"All {len(items)} points shown. Noise and unlabelled items are grey.", "note")
    )
    if shown.empty:
        return note, ""
    shown = shown.reset_index(drop=True)
    thumbs = [interactive.thumbnail_uri(tile, origin) for tile in _tiles(store, shown["tile_row"].tolist())]
    clips, crops, problems = None, None, []
    rows = shown["tile_row"].to_numpy()
    if _has_audio(store, source_root):
        clips, problems = _clips(store, rows, source_root)
    elif source_root is not None and {"xmin", "ymin", "xmax", "ymax"} <= set(store.index.columns):
        boxes = store.index[["xmin", "ymin", "xmax", "ymax"]].iloc[rows].reset_index(drop=True)
        crops, problems = interactive.image_crops(pd.concat([shown[["source"]], boxes], axis=1), source_root)
    head, body = interactive.interactive_map(dataset, shown, thumbs, clips, crops)
    warnings = "".join(_p(problem, "note") for problem in problems)
    png = figures.embedding_scatter(
        shown["x"].to_numpy(), shown["y"].to_numpy(), shown["cluster"].to_numpy(), shown["label"].tolist()
    )
    static = _img(png, "2-D embedding coloured by cluster and by label")
    return Markup(note + warnings + body + "<h3>Static view</h3>" + static), head


def _contingency(metrics: Mapping[str, Any], items: pd.DataFrame) -> Markup:
    table = metrics.get("contingency") or {}
    labels, clusters, counts = table.get("labels"), table.get("clusters"), table.get("counts")
    if not (labels and clusters and counts):
        labelled = items.dropna(subset=["label"])
        if labelled.empty:
            return _p("No labelled items: nothing to compare the clusters with.", "note")
        cross = pd.crosstab(labelled["label"], labelled["cluster"])
        labels, clusters, counts = list(cross.index), list(cross.columns), cross.to_numpy()
    png = figures.contingency_heatmap(labels, clusters, np.asarray(counts))
    best = metrics.get("best_cluster_per_label") or []
    per_label = (
        _p("Each label's best cluster: the one holding most of its items.", "note")
        + _table(
            ["label", "items", "best cluster", "purity", "recall"],
            [
                (r["label"], r["n"], "noise" if r["cluster"] == -1 else r["cluster"],
                 f"{r['purity']:.2f}", f"{r['recall']:.2f}")
                for r in best
            ],
            numeric=["items", "purity", "recall"],
        )
        if best
        else ""
    )
    return Markup(
        _p(
            "Counts of items per human label (rows) and cluster (columns); colour is the share of the row.",
            "note",
        )
        + _img(png, "contingency table of labels and clusters")
        + per_label
    )


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


def _labels(sheet: bytes | None, n_per_label: int) -> Markup:
    if sheet is None:
        return _p("No item has a human label.", "note")
    return Markup(
        _p(f"Up to {n_per_label} randomly chosen tiles of every human label (count in brackets), to check "
           f"by eye that the tiles show what they should. Also saved as {CONTACT_SHEET_FILE} next to this page.",
           "note")
        + _img(sheet, "tiles per label", tiles=True)
    )


def _gallery(
    store: TileStore, items: pd.DataFrame, params: ReportParams, origin: str, cmap: str, source_root: Path | None
) -> Markup:
    clustered = items[items["cluster"] >= 0]
    if clustered.empty:
        return _p("HDBSCAN found no clusters: every item is noise.", "note")
    groups = [
        (cluster, group, group.sort_values(["probability", "item_id"], ascending=[False, True]))
        for cluster, group in clustered.groupby("cluster", sort=True)
    ]
    clips, _ = _clips(store, [ranked["tile_row"].iloc[0] for _, _, ranked in groups], source_root)
    rows = []
    for (cluster, group, ranked), clip in zip(groups, clips, strict=True):
        best = ranked.head(params.n_examples)
        counts = group["label"].value_counts().head(3)
        top = ", ".join(f"{label} ({n})" for label, n in counts.items()) or "unlabelled"
        png = figures.tile_grid([_tiles(store, best["tile_row"])], origin, cmap, GALLERY_PX)
        row = (cluster, len(group), f"{group['probability'].mean():.2f}", top, _player(clip))
        rows.append((*row, _img(png, f"cluster {cluster} examples", tiles=True)))
    columns = ["cluster", "items", "mean probability", "top labels", "listen", "examples"]
    if not any(clips):
        columns.remove("listen")
        rows = [row[:4] + row[5:] for row in rows]
    n_noise = int((items["cluster"] == -1).sum())
    listen = " The player holds the first example (the cluster's most typical call)." if any(clips) else ""
    return Markup(
        _p(
            f"Up to {params.n_examples} members per cluster, highest membership probability first. "
            f"{n_noise} noise items are not shown.{listen}",
            "note",
        )
        + _table(columns, rows, numeric=["cluster", "items", "mean probability"])
    )


def _examples(examples_path: Path | None, params: ReportParams, origin: str, cmap: str) -> Markup:
    if examples_path is None or not Path(examples_path).is_file():
        return _p("No reconstructions or samples were written for this run.", "note")
    parts: list[str] = []
    with np.load(examples_path, allow_pickle=False) as npz:
        ex = {k: npz[k] for k in npz.files}
    if "input" in ex and "recon" in ex:
        pairs = [
            row
            for a, b in zip(
                _chunks(ex["input"], params.n_examples), _chunks(ex["recon"], params.n_examples), strict=True
            )
            for row in (a, b)
        ]
        ids = ", ".join(str(i) for i in ex.get("item_id", []))
        parts += [
            "<h3>Inputs and reconstructions</h3>",
            _p(
                "Rows alternate: inputs, then their reconstructions (posterior mean)."
                + (" The inputs are held-out validation tiles, never trained on." if ex.get("held_out") else "")
                + (f" Items: {ids}." if ids else ""),
                "note",
            ),
            _img(figures.tile_grid(pairs, origin, cmap, DETAIL_PX), "inputs and reconstructions", True),
        ]
    if "prior_samples" in ex and len(ex["prior_samples"]):
        parts += [
            "<h3>Samples from the prior</h3>",
            _img(
                figures.tile_grid(_chunks(ex["prior_samples"], params.n_examples), origin, cmap, DETAIL_PX),
                "samples decoded from the prior",
                True,
            ),
        ]
    if "interpolation" in ex and len(ex["interpolation"]):
        parts += [
            "<h3>Interpolation</h3>",
            _p("Decoded along a straight line in latent space between two items.", "note"),
            _img(
                figures.tile_grid([ex["interpolation"]], origin, cmap, DETAIL_PX),
                "latent interpolation",
                True,
            ),
        ]
    return Markup("".join(parts)) if parts else _p(f"{examples_path.name} holds no known arrays.", "note")


def _anomalies(
    store: TileStore, items: pd.DataFrame, params: ReportParams, origin: str, cmap: str, source_root: Path | None
) -> Markup:
    if "recon_error" not in items or items["recon_error"].isna().all():
        return _p("The latents table has no reconstruction errors.", "note")
    top = items.dropna(subset=["recon_error"]).nlargest(params.n_examples, "recon_error")
    tiles = _tiles(store, top["tile_row"])
    clips, _ = _clips(store, top["tile_row"].to_numpy(), source_root)
    rows = [
        (
            rank,
            _img(figures.tile_grid([tile[None]], origin, cmap, GALLERY_PX), f"item {r.item_id}", True),
            _player(clip),
            r.item_id,
            r.label,
            r.source,
            "noise" if r.cluster == -1 else r.cluster,
            f"{r.recon_error:.4g}",
        )
        for rank, (tile, clip, r) in enumerate(zip(tiles, clips, top.itertuples(), strict=True), start=1)
    ]
    columns = ["rank", "tile", "sound", "item_id", "label", "source", "cluster", "recon_error"]
    if not any(clips):
        columns.remove("sound")
        rows = [row[:2] + row[3:] for row in rows]
    return Markup(
        _p(
            f"The {len(rows)} items the model reconstructs worst: candidates for rare call types, "
            "artefacts or segmentation errors.",
            "note",
        )
        + _table(columns, rows, numeric=["rank", "recon_error"])
    )


def _mislabelled(
    store: TileStore,
    items: pd.DataFrame,
    metrics: Mapping[str, Any],
    params: ReportParams,
    origin: str,
    cmap: str,
    source_root: Path | None,
) -> Markup:
    if "likely_mislabelled" not in metrics:
        return _p("This run's evaluation did not look for mislabelled items.", "note")
    flagged = pd.DataFrame(metrics["likely_mislabelled"], columns=["item_id", "cluster_label", "cluster_purity"])
    top = flagged.merge(items, on="item_id").head(params.n_examples)
    evaluate = metrics.get("evaluate_params") or {}
    intro = _p(
        f"{metrics.get('n_likely_mislabelled', len(flagged))} items sit firmly (HDBSCAN membership >= "
        f"{evaluate.get('mislabelled_min_probability', '?')}) in a cluster where another label holds >= "
        f"{evaluate.get('mislabelled_min_purity', '?')} of the labelled items. Each is a labelling slip or a "
        "real variant worth a second look"
        + (f"; the first {len(top)} are shown." if len(top) < len(flagged) else "."),
        "note",
    )
    if top.empty:
        return intro
    clips, _ = _clips(store, top["tile_row"].to_numpy(), source_root)
    tiles = _tiles(store, top["tile_row"])
    rows = [
        (
            _img(figures.tile_grid([tile[None]], origin, cmap, GALLERY_PX), f"item {r.item_id}", True),
            _player(clip),
            r.item_id,
            r.label,
            r.cluster,
            r.cluster_label,
            f"{r.cluster_purity:.2f}",
            f"{r.probability:.2f}",
        )
        for tile, clip, r in zip(tiles, clips, top.itertuples(), strict=True)
    ]
    columns = ["tile", "sound", "item_id", "label", "cluster", "cluster's label", "its share", "membership"]
    if not any(clips):
        columns.remove("sound")
        rows = [row[:1] + row[2:] for row in rows]
    return Markup(intro + _table(columns, rows, numeric=["its share", "membership"]))


def _few_labels(metrics: Mapping[str, Any]) -> Markup:
    curve = pd.DataFrame(metrics.get("few_label_curve") or [])
    if curve.empty:
        return _p("No few-label classifier curve was computed for this run.", "note")
    best = curve[curve["features"] == "latents"].groupby("fraction")["balanced_accuracy"].max()
    summary = ", ".join(f"{100 * f:g} %: {a:.2f}" for f, a in best.items())
    return Markup(
        _p(
            "A classifier trained on a few labelled items predicts the labels of the rest: logistic "
            "regression and kNN on the latents, and the same on the raw pixels reduced by PCA to as many "
            f"dimensions. Best balanced accuracy on the latents by share labelled: {summary}.",
            "note",
        )
        + _img(figures.few_label_curve(curve), "balanced accuracy against the share of items labelled")
    )


def _training(curve_path: Path | None) -> Markup:
    if curve_path is None or not Path(curve_path).is_file():
        return _p("No training log was found for this run.", "note")
    try:
        epochs = figures.per_epoch(pd.read_csv(curve_path))
    except pd.errors.EmptyDataError:
        epochs = pd.DataFrame()
    if epochs.empty:
        return _p(f"{curve_path.name} holds no per-epoch values.", "note")
    return _img(figures.training_curves(epochs), "training and validation loss per epoch")


def _skipped(skipped: pd.DataFrame) -> Markup:
    if skipped.empty:
        return _p("No inputs were skipped.", "note")
    note = (
        _p(
            f"First {SKIPPED_ROWS_MAX} of {len(skipped)} shown; the full list is in the tile store's "
            "skipped.csv.",
            "note",
        )
        if len(skipped) > SKIPPED_ROWS_MAX
        else Markup("")
    )
    cols = ["source", "item", "reason"]
    rows = skipped.reindex(columns=cols).head(SKIPPED_ROWS_MAX).itertuples(index=False)
    return Markup(note + _table(cols, rows))


def _page(dataset: str, sections: Mapping[str, Markup], head: str = "") -> str:
    title = html.escape(f"quagga report: {dataset}")
    nav = " ".join(f'<a href="#{sid}">{html.escape(name)}</a>' for sid, name in SECTIONS)
    body = "\n".join(
        f'<section id="{sid}"><h2>{html.escape(name)}</h2>\n{sections[sid]}</section>'
        for sid, name in SECTIONS
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
        f"<style>{_CSS}</style>\n{head}\n</head>\n<body>\n<h1>{title}</h1>\n<nav>{nav}</nav>\n{body}\n"
        f'<footer><p class="note">Written by quagga {html.escape(__version__)}.</p></footer>\n'
        "</body>\n</html>\n"
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
) -> Path:
    """Write ``out_dir/index.html`` (atomically) and return its path.

    ``source_root`` is the folder the items' ``source`` paths are relative to; with it, clicking an
    audio point on the map plays its call, and hovering an image point shows its original crop.
    """
    store = TileStore(tiles_dir)
    modality = str(store.meta.get("modality", ""))
    origin, cmap = figures.tile_display(modality)
    items = join_items(store, Path(latents_path), Path(embedding_path), Path(clusters_path))
    metrics = json.loads(Path(metrics_path).read_text())
    skipped = store.skipped
    log.info("report for %s: %d items, %d skipped", dataset, len(items), len(skipped))
    embedding, head = _embedding(dataset, store, items, params, origin, source_root)
    sheet = contact_sheet(store, items, params.n_examples, origin, cmap)
    sections = {
        # the HDBSCAN setting the cluster stage chose without labels, next to the configured candidates
        "summary": _summary(dataset, modality, store, items, skipped,
                            {**(run_info or {}), "cluster_selected": read_table_params(clusters_path).get("selected")}),
        "metrics": _metrics(metrics),
        "embedding": embedding,
        "contingency": _contingency(metrics, items),
        "mislabelled": _mislabelled(store, items, metrics, params, origin, cmap, source_root),
        "few_labels": _few_labels(metrics),
        "labels": _labels(sheet, params.n_examples),
        "gallery": _gallery(store, items, params, origin, cmap, source_root),
        "examples": _examples(Path(examples_path) if examples_path else None, params, origin, cmap),
        "anomalies": _anomalies(store, items, params, origin, cmap, source_root),
        "training": _training(Path(training_curve_path) if training_curve_path else None),
        "skipped": _skipped(skipped),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if sheet is not None:
        with atomic_path(out_dir / CONTACT_SHEET_FILE) as tmp_sheet:
            Path(tmp_sheet).write_bytes(sheet)
    path = out_dir / "index.html"
    page = _page(dataset, sections, head)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    log.info("wrote %s (%.0f kB)", path, path.stat().st_size / 1024)
    return path
