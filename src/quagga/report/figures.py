"""Report figures: pure functions from arrays and tables to PNG bytes.

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas, never through pyplot, so
no global backend state is touched and nothing has to be closed. Tile mosaics skip the figure machinery
altogether: grey tiles are coloured with the colormap, colour tiles (``[3, S, S]``) drawn as RGB, and the
mosaic written as one image, which keeps the page small.
PNG metadata is stripped, so the page carries no URL, not even matplotlib's own.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

DPI = 90
LEGEND_MAX = 20  # more categories than this: no legend, it would hide the points
ANNOTATE_MAX_CELLS = 600  # contingency cells above this: colour only, numbers would not fit
NOISE_COLOUR = "#b0b0b0"
BACKGROUND_COLOUR = "#e2e2e2"  # a reference's points behind a projected dataset's
_TAB20 = matplotlib.colormaps["tab20"]
_PALETTE = [_TAB20(i) for i in (*range(0, 20, 2), *range(1, 20, 2))]  # strong colours first, then pale
_PNG_META = {"Software": None}


def cluster_colours(levels: Iterable[int]) -> dict[int, str]:
    """Each cluster id's colour (noise grey): the palette spread over ``levels`` in numeric order (tab10's
    strong colours, then tab20's pale ones, beyond 20 a sampled rainbow).

    The colour of cluster k depends only on k and ``levels``; a projected dataset passes its reference's
    cluster ids, so its clusters look as they do in the reference's report.
    """
    ids = sorted({int(k) for k in levels} - {-1})
    if len(ids) <= len(_PALETTE):
        colours = [to_hex(c) for c in _PALETTE[: len(ids)]]
    else:
        colours = [to_hex(matplotlib.colormaps["turbo"](v)) for v in np.linspace(0.05, 0.95, len(ids))]
    return {-1: NOISE_COLOUR, **dict(zip(ids, colours, strict=True))}


def tile_display(modality: str) -> tuple[str, str]:
    """(origin, colormap) for a modality: spectrograms put low frequencies at the bottom."""
    return ("lower", "magma") if modality == "audio" else ("upper", "gray")


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata=_PNG_META)
    return buf.getvalue()


def _plain(text: object) -> str:
    """Text for matplotlib: dollar signs escaped so a label is never parsed as mathtext."""
    return str(text).replace("$", r"\$")


def tile_batch(tiles: np.ndarray) -> np.ndarray:
    """Tiles as a batch: ``[n, S, S]`` (grey) or ``[n, 3, S, S]`` (colour).

    Accepts one tile ``[S, S]``, a grey batch ``[n, S, S]`` or a store batch ``[n, C, S, S]`` with C = 1
    (grey, the channel dropped) or C = 3 (RGB). Any other channel count is refused.
    """
    arr = np.asarray(tiles, dtype=np.float32)
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim == 3:
        return arr
    if arr.ndim == 4 and arr.shape[1] in (1, 3):
        return arr[:, 0] if arr.shape[1] == 1 else arr
    raise ValueError(f"tiles of shape {arr.shape}: expected [S, S], [n, S, S] or [n, C, S, S] with C = 1 or 3")


def _shrink(tiles: np.ndarray, max_px: int) -> np.ndarray:
    """Block-average tiles (``[n, S, S]`` or ``[n, C, S, S]``) by an integer factor so a side is at most
    about ``max_px``."""
    factor = max(1, math.ceil(tiles.shape[-1] / max_px))
    if factor == 1:
        return tiles
    side = tiles.shape[-1] // factor * factor
    t = tiles[..., :side, :side]
    lead = t.shape[:-2]
    return t.reshape(*lead, side // factor, factor, side // factor, factor).mean(axis=(-3, -1))


def tile_rgb(tile: np.ndarray, origin: str = "upper", cmap: str = "gray") -> np.ndarray:
    """One tile as an ``[S, S, 3]`` uint8 picture: a grey ``[S, S]`` tile through ``cmap``, a colour
    ``[3, S, S]`` tile as its own RGB (channels last). ``origin="lower"`` puts row 0 at the bottom."""
    t = np.clip(np.asarray(tile, dtype=np.float32), 0, 1)
    if origin == "lower":
        t = t[..., ::-1, :]
    if t.ndim == 3:
        return np.round(255 * np.moveaxis(t, 0, -1)).astype(np.uint8)
    return matplotlib.colormaps[cmap](t, bytes=True)[..., :3]


def _mosaic(rows: Sequence[np.ndarray], origin: str, cmap: str, max_px: int, gap: int) -> np.ndarray:
    """RGB uint8 mosaic: each entry of ``rows`` (see :func:`tile_batch`, values in [0, 1]) is a row of
    tiles on white; grey and colour rows may be mixed."""
    shrunk = [_shrink(tile_batch(r), max_px) for r in rows]
    side = max(r.shape[-1] for r in shrunk)
    n_cols = max(1, max(len(r) for r in shrunk))
    height = len(shrunk) * (side + gap) - gap
    width = n_cols * (side + gap) - gap
    rgb = np.full((max(height, 1), max(width, 1), 3), 255, dtype=np.uint8)
    for i, row in enumerate(shrunk):
        for j, tile in enumerate(row):
            t = tile_rgb(tile, origin, cmap)
            y, x = i * (side + gap), j * (side + gap)
            rgb[y : y + t.shape[0], x : x + t.shape[1]] = t
    return rgb


def tile_grid(
    rows: Sequence[np.ndarray], origin: str = "upper", cmap: str = "gray", max_px: int = 64, gap: int = 2
) -> bytes:
    """One PNG mosaic: each entry of ``rows`` (``[n, S, S]`` grey or ``[n, C, S, S]`` with C = 1 or 3,
    values in [0, 1]) is a row of tiles; colour tiles are drawn as RGB, grey ones through ``cmap``.

    Rows may differ in length (the rest is left white). ``origin="lower"`` flips each tile so that
    row 0 of a spectrogram (the lowest frequency) is drawn at the bottom.
    """
    buf = io.BytesIO()
    matplotlib.image.imsave(buf, _mosaic(rows, origin, cmap, max_px, gap), format="png", metadata=_PNG_META)
    return buf.getvalue()


def contact_sheet(
    rows: Sequence[tuple[str, np.ndarray]], origin: str = "upper", cmap: str = "gray", max_px: int = 64
) -> bytes:
    """A titled mosaic with one row of tiles per group; ``rows`` holds (row title, tiles as in :func:`tile_grid`).

    What a microscopist prints to check the tiles by eye: every label's tiles side by side, at one
    scale, named in the margin.
    """
    gap = 4
    mosaic = _mosaic([tiles for _, tiles in rows], origin, cmap, max_px, gap)
    height, width = mosaic.shape[:2]
    row_px = (height + gap) / max(len(rows), 1)
    margin_in = 2.2
    fig = Figure(figsize=(width / DPI + margin_in + 0.2, height / DPI + 0.5))
    ax = fig.add_axes((margin_in / fig.get_figwidth(), 0.1 / fig.get_figheight(),
                       width / DPI / fig.get_figwidth(), height / DPI / fig.get_figheight()))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([(i + 0.5) * row_px - gap / 2 for i in range(len(rows))], [_plain(t) for t, _ in rows])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return _png(fig)


def _scatter_panel(
    ax: Axes, x: np.ndarray, y: np.ndarray, cats: np.ndarray, order: list[str], grey: str, title: str,
    colours: Sequence[object] | None = None, background: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """The ``grey`` category (noise, unlabelled) drawn first and faint, the others on top, one colour each
    (``colours`` in ``order``, else the palette's in turn); ``background``: other points (x, y), light grey
    behind all."""
    size = float(np.clip(3000 / max(len(x), 1), 1, 20))
    if background is not None:
        bx, by = background
        ax.scatter(bx, by, s=float(np.clip(3000 / max(len(bx), 1), 1, 12)), c=BACKGROUND_COLOUR, linewidths=0,
                   label="reference", zorder=0)
    m = cats == grey
    if m.any():
        ax.scatter(x[m], y[m], s=size, c=NOISE_COLOUR, alpha=0.5, linewidths=0, label=_plain(grey))
    for i, c in enumerate(order):
        m = cats == c
        colour = colours[i] if colours is not None else _PALETTE[i % len(_PALETTE)]
        ax.scatter(x[m], y[m], s=size, color=colour, linewidths=0, label=_plain(c))
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(order) + 1 <= LEGEND_MAX:
        ax.legend(fontsize=7, markerscale=max(1.0, 16 / size) ** 0.5, frameon=False)


def embedding_scatter(
    x: np.ndarray, y: np.ndarray, clusters: Sequence[int], labels: Sequence[object],
    levels: Iterable[int] | None = None, background: tuple[np.ndarray, np.ndarray] | None = None,
) -> bytes:
    """Two panels of the 2-D embedding: coloured by HDBSCAN cluster (noise grey) and by human label.

    ``levels``: the cluster ids the colours are spread over (default: those present; see
    :func:`cluster_colours`); ``background``: a reference's points (x, y), drawn light grey behind.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    cl = np.asarray(clusters, dtype=int)
    present = sorted(set(cl.tolist()) - {-1})
    palette = cluster_colours(present if levels is None else [*levels, *present])
    cluster_cats = np.array(["noise" if c == -1 else f"cluster {c}" for c in cl], dtype=object)
    cluster_order = [f"cluster {c}" for c in present]
    lab = pd.Series(list(labels), dtype="string").fillna("unlabelled").to_numpy(dtype=object)
    label_order = sorted(set(lab.tolist()) - {"unlabelled"})
    fig = Figure(figsize=(11, 5), layout="constrained")
    left, right = fig.subplots(1, 2, sharex=True, sharey=True)
    _scatter_panel(left, x, y, cluster_cats, cluster_order, "noise", "HDBSCAN clusters",
                   [palette[c] for c in present], background)
    _scatter_panel(right, x, y, lab, label_order, "unlabelled", "Human labels", background=background)
    return _png(fig)


def _stacked(draw: Any, draw_counts: Any, pos: np.ndarray, shares: np.ndarray, n_items: Sequence[int],
             colours: Sequence[str], names: Sequence[str]) -> None:
    """Stacked share bars and the item-count bars beside them; ``draw`` is ``Axes.bar`` or ``Axes.barh``, whose
    positional arguments (position, length, thickness, base) are the same either way."""
    base = np.zeros(len(pos))
    for j, (colour, name) in enumerate(zip(colours, names, strict=True)):
        draw(pos, shares[:, j], 0.9, base, color=colour, label=_plain(name))
        base = base + shares[:, j]
    draw_counts(pos, n_items, 0.9, color="#555555")


def cluster_shares(
    rows: Sequence[str], shares: np.ndarray, n_items: Sequence[int], clusters: Sequence[int],
    colours: Mapping[int, str], value_name: str, downward: bool = False,
) -> bytes:
    """Each row's (a bin's or a value's) share of every cluster as stacked bars, with its item count in a
    narrow panel beside: a stratigraphy of the clusters along the covariate.

    ``shares``: ``[len(rows), len(clusters)]`` (an empty row: missing, drawn as nothing); ``clusters``: the
    ids of its columns (-1: noise), coloured by ``colours``. With ``downward``, the rows run down the
    vertical axis (depth increasing downward, as a core is drawn), bars horizontal; else along the x axis.
    """
    shares = np.nan_to_num(np.asarray(shares, dtype=float).reshape(len(rows), len(clusters)))
    pos = np.arange(len(rows))
    labels = [_plain(r) for r in rows]
    names = ["noise" if c == -1 else f"cluster {c}" for c in clusters]
    legend = len(clusters) <= LEGEND_MAX
    if downward:
        fig = Figure(figsize=(7.5 + (1.5 if legend else 0), 1.6 + 0.3 * len(rows)), layout="constrained")
        main, side = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [4, 1]})
        _stacked(main.barh, side.barh, pos, shares, n_items, [colours[c] for c in clusters], names)
        main.set_yticks(pos, labels, fontsize=7)
        main.invert_yaxis()
        main.set_ylabel(_plain(value_name))
        main.set_xlim(0, 1)
        main.xaxis.set_major_formatter(PercentFormatter(1.0))
        main.set_xlabel("share of items")
        side.set_xlabel("items")
    else:
        fig = Figure(figsize=(min(16, 3.5 + 0.55 * len(rows)) + (1.5 if legend else 0), 4.6), layout="constrained")
        side, main = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 4]})
        _stacked(main.bar, side.bar, pos, shares, n_items, [colours[c] for c in clusters], names)
        main.set_xticks(pos, labels, rotation=90 if max(map(len, labels), default=0) > 6 else 0, fontsize=7)
        main.set_xlabel(_plain(value_name))
        main.set_ylim(0, 1)
        main.yaxis.set_major_formatter(PercentFormatter(1.0))
        main.set_ylabel("share of items")
        side.set_ylabel("items")
    if legend:
        fig.legend(*main.get_legend_handles_labels(), fontsize=7, frameon=False, loc="outside right upper")
    return _png(fig)


def contingency_heatmap(labels: Sequence[object], clusters: Sequence[object], counts: np.ndarray) -> bytes:
    """Labels x clusters counts, coloured by the share of each label that falls in each cluster."""
    counts = np.asarray(counts, dtype=float).reshape(len(labels), len(clusters))
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    col_names = ["noise" if str(c) == "-1" else str(c) for c in clusters]
    fig = Figure(
        figsize=(min(16, 2.5 + 0.45 * len(clusters)), min(12, 1.5 + 0.35 * len(labels))), layout="constrained"
    )
    ax = fig.subplots()
    im = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(clusters)), [_plain(c) for c in col_names], rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), [_plain(v) for v in labels], fontsize=7)
    ax.set_xlabel("cluster")
    ax.set_ylabel("label")
    if counts.size <= ANNOTATE_MAX_CELLS:
        for (i, j), n in np.ndenumerate(counts):
            if n:
                ax.text(
                    j,
                    i,
                    f"{n:.0f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if shares[i, j] > 0.6 else "black",
                )
    fig.colorbar(im, ax=ax, label="share of label", shrink=0.8)
    return _png(fig)


def per_epoch(curve: pd.DataFrame) -> pd.DataFrame:
    """One row per epoch: Lightning's CSVLogger writes train and val values on separate, NaN-padded rows."""
    numeric = curve.apply(pd.to_numeric, errors="coerce")
    numeric = numeric.drop(columns=[c for c in numeric if c == "step" or c.endswith("_step")])
    if "epoch" not in numeric:
        numeric = numeric.assign(epoch=np.arange(len(numeric)))
    return numeric.dropna(subset=["epoch"]).groupby("epoch").mean().dropna(axis=1, how="all").sort_index()


def training_curves(epochs: pd.DataFrame) -> bytes:
    """Loss columns against epoch; any other logged values (KL, learning rate...) in a second panel."""
    losses = [c for c in epochs if "loss" in c]
    others = [c for c in epochs if c not in losses]
    panels = [p for p in (losses, others) if p]
    fig = Figure(figsize=(5.5 * max(len(panels), 1), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, max(len(panels), 1)))
    for ax, cols in zip(axes, panels, strict=False):
        for c in cols:
            s = epochs[c].dropna()
            ax.plot(s.index, s.to_numpy(), marker="o", markersize=3, label=_plain(c))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7, frameon=False)
    axes[0].set_ylabel("loss")
    return _png(fig)


def few_label_curve(curve: pd.DataFrame) -> bytes:
    """Balanced accuracy on the unlabelled rest against the share of items labelled (log scale).

    One line per feature set and classifier, with the spread over the labelled draws as error bars:
    the gap between the latent and pixel lines is what the autoencoder adds.
    """
    fig = Figure(figsize=(6.5, 4.0), layout="constrained")
    ax = fig.subplots()
    styles = {"latents": "-", "pixels_pca": ":"}
    for (features, classifier), part in curve.groupby(["features", "classifier"], sort=False):
        ax.errorbar(
            100 * part["fraction"],
            part["balanced_accuracy"],
            yerr=part["balanced_accuracy_sd"].fillna(0),
            linestyle=styles.get(str(features), "--"),
            marker="o",
            markersize=3,
            capsize=2,
            label=_plain(f"{features}, {classifier}"),
        )
    ax.set_xscale("log")
    ax.set_xticks([1, 2, 5, 10, 20, 50], labels=["1", "2", "5", "10", "20", "50"])
    ax.set_xlabel("items labelled (%)")
    ax.set_ylabel("balanced accuracy on the rest")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    return _png(fig)
