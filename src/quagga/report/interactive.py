"""The interactive map: a Bokeh scatter of the 2-D embedding that shows each tile and plays each sound.

Everything rides inside the page (Bokeh's JavaScript inline, thumbnails as JPEG data URIs, sound clips
as Ogg Opus data URIs: see :mod:`quagga.report.media`, in a JSON block read at the first hover), so the
file works offline and can be archived or mailed. What a person can do:

- colour the points by cluster, human label, anomaly score, covariate (the metadata's columns) or any other
  column (a drop-down);
- hover a point to see its tile, label, cluster, covariates and item id;
- click an audio point to hear the call (with a little context on either side) in the player below;
- select points with the lasso or box tool and download the selection as CSV (``item_id,label,...``: edit
  the labels and give the file back as ``labels_corrections``; the page defines ``quaggaDownloadCsv``);
- with predicted labels (the evaluate stage's label propagation), colour by predicted label or its probability;
- for a dataset projected onto a reference, see its points over the reference's (light grey, behind), its
  clusters in the reference's colours.

Strings from the data (labels, file names) reach the page only as data: Bokeh escapes ``@field``
values in tooltips, and the selection list is filled with ``textContent``, never ``innerHTML``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from bokeh.embed import components
from bokeh.layouts import column, row
from bokeh.models import (
    BoxSelectTool,
    Button,
    ColumnDataSource,
    CustomJS,
    CustomJSHover,
    Div,
    HoverTool,
    LassoSelectTool,
    Select,
    TapTool,
)
from bokeh.plotting import figure
from bokeh.resources import Resources
from matplotlib import colormaps
from matplotlib.colors import to_hex

from quagga.evaluate.corrections import NO_LABEL
from quagga.report.covariates import value_text
from quagga.report.figures import BACKGROUND_COLOUR, cluster_colours

# the points' media (thumbnails, clips, crops) are made in quagga.report.media; the names stay importable here
from quagga.report.media import CLIP_CONTEXT_S as CLIP_CONTEXT_S
from quagga.report.media import CLIP_MAX_S as CLIP_MAX_S
from quagga.report.media import CLIP_RATE as CLIP_RATE
from quagga.report.media import CROP_PX as CROP_PX
from quagga.report.media import THUMB_PX as THUMB_PX
from quagga.report.media import audio_clip_uri as audio_clip_uri
from quagga.report.media import audio_clips as audio_clips
from quagga.report.media import crop_uri as crop_uri
from quagga.report.media import image_crops as image_crops
from quagga.report.media import thumbnail_uri as thumbnail_uri

log = logging.getLogger(__name__)

NOISE_COLOUR = "#b0b0b0"
MAX_CATEGORIES = 40  # a column with more distinct values is not offered as a categorical colouring
PLAYER_ID = "quagga-player"
# Bokeh's JavaScript, inline: core, WebGL (smooth with thousands of points) and widgets; no tables or MathJax
BOKEH_RESOURCES = Resources(mode="inline", components=["bokeh", "bokeh-gl", "bokeh-widgets"])


def _palette(n: int) -> list[str]:
    """``n`` distinguishable colours (tab10, then tab20, then a sampled rainbow)."""
    if n <= 10:
        return [to_hex(c) for c in colormaps["tab10"].colors[:n]]
    if n <= 20:
        return [to_hex(c) for c in colormaps["tab20"].colors[:n]]
    return [to_hex(colormaps["turbo"](v)) for v in np.linspace(0.05, 0.95, n)]


def categorical_colours(values: Sequence[object], levels: Sequence[str] | None = None) -> list[str]:
    """One colour per distinct value (sorted as text); missing values are grey (cluster colours, noise grey,
    come from :func:`quagga.report.figures.cluster_colours`).

    ``levels``: the values to spread the palette over (default: those present), so that two colourings
    (human and predicted labels) give a label the same colour.
    """
    series = pd.Series(list(values), dtype="object")
    missing = series.isna()
    levels = sorted(set(levels) if levels is not None else {str(v) for v in series[~missing]})
    lookup = dict(zip(levels, _palette(len(levels)), strict=True))
    return [NOISE_COLOUR if m else lookup[str(v)] for v, m in zip(series, missing, strict=True)]


def numeric_colours(values: Sequence[float]) -> list[str]:
    """Viridis by rank (robust to a few huge scores); missing values are grey."""
    x = pd.Series(values, dtype="float64")
    ranks = x.rank(pct=True).to_numpy()
    rgba = colormaps["viridis"](np.nan_to_num(ranks))  # one look-up for all (what each value alone gives)
    return [NOISE_COLOUR if np.isnan(r) else to_hex(c) for r, c in zip(ranks, rgba, strict=True)]


# The points' thumbnails, clips and crops ride in a JSON block of their own, parsed when the first point is
# hovered or played, not in the plot's data, which Bokeh decodes before it draws: a 10,000-call page (39 MB,
# nearly all media) is drawn in 1.7 s instead of 3.1 s (bench/report.py).
MEDIA_ID = "quagga-media"
MEDIA = ("thumb", "audio", "crop")
_MEDIA_JS = f"""<script>
window.quaggaMedia = (kind, i) => {{
  if (!window.quaggaMediaData) {{
    window.quaggaMediaData = JSON.parse(document.getElementById('{MEDIA_ID}').textContent);
  }}
  return window.quaggaMediaData[kind][i] || '';
}};
</script>"""
_MEDIA_URI_JS = "return window.quaggaMedia(kind, value);"  # a tooltip's @thumb / @crop: the row's data URI

_PLAY_JS = """
const i = source.selected.indices.length ? source.selected.indices[source.selected.indices.length - 1] : -1;
const player = document.getElementById(player_id);
const clip = i < 0 ? '' : window.quaggaMedia('audio', i);
if (!player || !clip) { return; }
player.src = clip;
document.getElementById(player_id + '-item').textContent = source.data.item_id[i];
player.play();
"""

_COLOUR_JS = """
source.data.colour = source.data['colour_' + select.value];
source.change.emit();
"""

_SELECTION_JS = """
const idx = source.selected.indices;
const list = document.getElementById('quagga-selection');
list.textContent = '';
const head = document.createElement('p');
head.textContent = idx.length + ' selected' + (idx.length > 200 ? ' (first 200 listed)' : '');
list.appendChild(head);
const ul = document.createElement('ul');
for (const i of idx.slice(0, 200)) {
  const li = document.createElement('li');
  li.textContent = source.data.item_id[i] + ' | label: ' + source.data.label[i]
    + ' | cluster: ' + source.data.cluster[i];
  ul.appendChild(li);
}
list.appendChild(ul);
"""

_EXPORT_JS = """
const idx = source.selected.indices;
const d = source.data;
const rows = idx.map((i) => [d.item_id[i], d.label[i], d.cluster[i], d.source[i], d.x[i], d.y[i]]);
window.quaggaDownloadCsv(dataset + '-selection.csv', ['item_id', 'label', 'cluster', 'source', 'x', 'y'], rows);
"""


def _covariate_text(covariates: pd.DataFrame) -> list[str]:
    """Every point's covariates as one line of text (``name: value``, missing ones left out), for the tooltip."""
    cells = [[f"{name}: {value_text(v)}" for v in covariates[name].astype("object")] for name in covariates.columns]
    present = [covariates[name].notna().to_numpy() for name in covariates.columns]
    return [" · ".join(cell[i] for cell, has in zip(cells, present, strict=True) if has[i])
            for i in range(len(covariates))]


def map_data(
    items: pd.DataFrame, thumbs: list[str], clips: list[str] | None, crops: list[str] | None = None,
    levels: Sequence[int] | None = None, covariates: pd.DataFrame | None = None,
) -> tuple[dict, list[str]]:
    """Column data of the scatter and the colourings offered (first one shown).

    ``levels``: the cluster ids the cluster colours are spread over (default: those present; see
    :func:`quagga.report.figures.cluster_colours`). ``covariates``: the items' metadata columns (row by row),
    offered as colourings (numbers and dates by rank, text with at most ``MAX_CATEGORIES`` values by value)
    and shown in the tooltip.
    """
    label = items["label"].astype("object").where(items["label"].notna(), NO_LABEL)
    data: dict[str, list] = {
        "x": items["x"].astype(float).tolist(),
        "y": items["y"].astype(float).tolist(),
        "item_id": items["item_id"].astype(str).tolist(),
        "label": [str(v) for v in label],
        "cluster": items["cluster"].astype(int).tolist(),
        "source": items["source"].astype("object").where(items["source"].notna(), "").astype(str).tolist(),
        "thumb": thumbs,
        "audio": clips if clips is not None else [""] * len(items),
        "crop": crops if crops is not None else [""] * len(items),
    }
    predicted = "predicted_label" in items and items["predicted_label"].notna().any()
    names = [items["label"], items["predicted_label"]] if predicted else [items["label"]]
    label_levels = sorted({str(v) for column in names for v in column.dropna()})
    clusters = items["cluster"].astype(int)
    palette = cluster_colours([*(levels if levels is not None else []), *clusters.tolist()])
    colourings = {
        "cluster": [palette[k] for k in clusters],
        "label": categorical_colours(items["label"].tolist(), levels=label_levels),
    }
    if predicted:
        colourings["predicted"] = categorical_colours(items["predicted_label"].tolist(), levels=label_levels)
        data["predicted"] = [str(v) for v in items["predicted_label"].astype("object").fillna(NO_LABEL)]
    for score in ("recon_error", "probability", "predicted_probability"):
        if score in items and items[score].notna().any():
            colourings[score] = numeric_colours(items[score].tolist())
    if 1 < items["source"].nunique() <= MAX_CATEGORIES:
        colourings["source"] = categorical_colours(items["source"].tolist())
    if covariates is not None:
        data["covariates"] = _covariate_text(covariates)
        for name in covariates.columns:
            values = covariates[name]
            key = str(name) if str(name) not in colourings else f"{name} (metadata)"
            if pd.api.types.is_datetime64_any_dtype(values):
                values = (values - pd.Timestamp(0)) / pd.Timedelta(1, "s")
            if pd.api.types.is_numeric_dtype(values) and values.notna().any():
                colourings[key] = numeric_colours(values.astype(float).tolist())
            elif 1 < values.nunique() <= MAX_CATEGORIES:
                colourings[key] = categorical_colours(values.astype("object").tolist())
    for name, colours in colourings.items():
        data[f"colour_{name}"] = colours
    data["colour"] = list(colourings["cluster"])
    return data, list(colourings)


def interactive_map(
    dataset: str, items: pd.DataFrame, thumbs: list[str], clips: list[str] | None, crops: list[str] | None = None,
    levels: Sequence[int] | None = None, covariates: pd.DataFrame | None = None,
    background: pd.DataFrame | None = None,
) -> tuple[str, str]:
    """(head, body) HTML of the map: Bokeh's inline resources and the plot with its controls.

    ``crops`` (images): the original crop, in colour, shown beside the normalised tile on hover. ``levels``
    and ``covariates``: see :func:`map_data`. ``background``: a reference's points (columns x, y), drawn
    light grey behind the items, neither hovered nor selected.
    """
    data, colourings = map_data(items, thumbs, clips, crops, levels, covariates)
    media = {kind: data.pop(kind) for kind in MEDIA}
    rows = list(range(len(items)))
    data.update(thumb=rows, crop=rows)  # the tooltip's pictures by row (the player takes the selected row)
    source = ColumnDataSource(data=data, name="points")
    has_crops = crops is not None and any(crops)
    original = '<img src="@crop{uri}" style="max-width:128px;max-height:128px;border:1px solid #888" alt="original">'
    tooltip = (
        f'<div style="width:{270 if has_crops else 150}px"><img src="@thumb{{uri}}" width="128" height="128" '
        'style="image-rendering:pixelated;border:1px solid #888" alt="tile">'
        + (original if has_crops else "")
        + "<div><b>@label</b> &middot; cluster @cluster</div>"
        + ("<div>predicted: @predicted</div>" if "predicted" in data else "")
        + ('<div style="font-size:80%">@covariates</div>' if "covariates" in data else "")
        + '<div style="font-size:80%;word-break:break-all">@item_id</div></div>'
    )
    plot = figure(
        name="map", width=720, height=620, title=None, match_aspect=True,
        tools="pan,wheel_zoom,reset,save", active_scroll="wheel_zoom", output_backend="webgl",
    )
    plot.xaxis.axis_label, plot.yaxis.axis_label = "UMAP 1", "UMAP 2"
    if background is not None:
        behind = ColumnDataSource(data={"x": background["x"].astype(float).tolist(),
                                        "y": background["y"].astype(float).tolist()}, name="reference")
        plot.scatter("x", "y", source=behind, size=5, fill_color=BACKGROUND_COLOUR, line_color=None)
    points = plot.scatter(
        "x", "y", source=source, size=7, fill_color="colour", line_color="colour", fill_alpha=0.8,
        nonselection_fill_alpha=0.15, nonselection_line_alpha=0.15,
    )
    plot.add_tools(
        HoverTool(renderers=[points], tooltips=tooltip, limit=1,  # one tile, not a stack in dense clusters
                  formatters={f"@{kind}": CustomJSHover(args={"kind": kind}, code=_MEDIA_URI_JS)
                              for kind in ("thumb", "crop")}),
        LassoSelectTool(renderers=[points]),
        BoxSelectTool(renderers=[points]),
    )
    has_audio = clips is not None and any(clips)
    if has_audio:
        plot.add_tools(TapTool(renderers=[points], callback=CustomJS(
            args={"source": source, "player_id": PLAYER_ID}, code=_PLAY_JS)))
    select = Select(title="Colour by", value=colourings[0], options=colourings, name="colour-by", width=200)
    select.js_on_change("value", CustomJS(args={"source": source, "select": select}, code=_COLOUR_JS))
    source.selected.js_on_change("indices", CustomJS(args={"source": source}, code=_SELECTION_JS))
    export = Button(label="Download selection as CSV", name="export", width=200)
    export.js_on_event("button_click", CustomJS(args={"source": source, "dataset": dataset}, code=_EXPORT_JS))
    hint = Div(text=(
        ("<p>Light grey: the reference's items, with the new items on top in the reference's cluster "
         "colours.</p>" if background is not None else "")
        + "<p>Hover a point to see its tile"
        + (" (left) and the original crop (right). " if has_crops else ". ")
        + ("Click an audio point to hear it. " if has_audio else "")
        + "Select with the lasso or box tool (toolbar), then download the selection; to correct labels, edit "
        "its label column and give the file back as labels_corrections (section Correcting labels).</p>"
    ), width=200)
    script, div = components(row(plot, column(select, export, hint)))
    player = (
        f'<p>Now playing: <span id="{PLAYER_ID}-item">(click a point)</span></p>'
        f'<audio id="{PLAYER_ID}" controls preload="none"></audio>'
        if has_audio else ""
    )
    media_json = json.dumps(media, separators=(",", ":")).replace("</", "<\\/")  # no "</script>" inside
    body = (f'{div}\n{player}\n<div id="quagga-selection"><p>0 selected</p></div>\n'
            f'<script type="application/json" id="{MEDIA_ID}">{media_json}</script>\n{_MEDIA_JS}\n{script}')
    return BOKEH_RESOURCES.render(), body
