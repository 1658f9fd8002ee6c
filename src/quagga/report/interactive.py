"""The interactive map: a Bokeh scatter of the 2-D embedding that shows each tile and plays each sound.

Everything rides inside the page (Bokeh's JavaScript inline, thumbnails as JPEG data URIs, sound clips
as Ogg Opus data URIs), so the file works offline and can be archived or mailed. What a person can do:

- colour the points by cluster, human label, anomaly score or any other column (a drop-down);
- hover a point to see its tile, label, cluster and item id;
- click an audio point to hear the call (with a little context on either side) in the player below;
- select points with the lasso or box tool and download the selection as CSV (``item_id,label,...``: edit
  the labels and give the file back as ``labels_corrections``; the page defines ``quaggaDownloadCsv``);
- with predicted labels (the evaluate stage's label propagation), colour by predicted label or its probability.

Strings from the data (labels, file names) reach the page only as data: Bokeh escapes ``@field``
values in tooltips, and the selection list is filled with ``textContent``, never ``innerHTML``.
"""

from __future__ import annotations

import base64
import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from bokeh.embed import components
from bokeh.layouts import column, row
from bokeh.models import (
    BoxSelectTool,
    Button,
    ColumnDataSource,
    CustomJS,
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
from PIL import Image
from scipy.signal import resample_poly

from quagga.audio.io import AudioInfo, audio_info, read_block
from quagga.evaluate.corrections import NO_LABEL
from quagga.images.io import ImageReadError, read_pixels

log = logging.getLogger(__name__)

THUMB_PX = 64  # thumbnail side: enough to recognise a call or a particle, small enough for 10k points
THUMB_QUALITY = 75  # JPEG quality of thumbnails
CROP_PX = 96  # longest side of an image item's original crop (colour, as in the source image)
CROP_MARGIN = 0.15  # context around the box, as a share of its longer side
CLIP_CONTEXT_S = 0.1  # sound before and after each call, so its onset and decay are heard
CLIP_MAX_S = 3.0  # longer calls are cut: the page stays small, the start is what people listen for
NOISE_COLOUR = "#b0b0b0"
MAX_CATEGORIES = 40  # a column with more distinct values is not offered as a categorical colouring
PLAYER_ID = "quagga-player"
# Clips are Ogg Opus at 48 kHz (Opus's full band): libsndfile's compression level 0.95 is about 33 kbit/s,
# about 2 kB for a typical call. Vorbis needs 4x that on noisy field audio, and noise is what fields sound like.
CLIP_RATE = 48000
OPUS_COMPRESSION = 0.95
# Bokeh's JavaScript, inline: core, WebGL (smooth with thousands of points) and widgets; no tables or MathJax
BOKEH_RESOURCES = Resources(mode="inline", components=["bokeh", "bokeh-gl", "bokeh-widgets"])


def _palette(n: int) -> list[str]:
    """``n`` distinguishable colours (tab10, then tab20, then a sampled rainbow)."""
    if n <= 10:
        return [to_hex(c) for c in colormaps["tab10"].colors[:n]]
    if n <= 20:
        return [to_hex(c) for c in colormaps["tab20"].colors[:n]]
    return [to_hex(colormaps["turbo"](v)) for v in np.linspace(0.05, 0.95, n)]


def categorical_colours(
    values: Sequence[object], grey: Sequence[object] = (), levels: Sequence[str] | None = None
) -> list[str]:
    """One colour per distinct value (sorted as text); missing values and ``grey`` ones are grey.

    ``levels``: the values to spread the palette over (default: those present), so that two colourings
    (human and predicted labels) give a label the same colour.
    """
    series = pd.Series(list(values), dtype="object")
    missing = series.isna() | series.isin(list(grey))
    levels = sorted(set(levels) if levels is not None else {str(v) for v in series[~missing]})
    lookup = dict(zip(levels, _palette(len(levels)), strict=True))
    return [NOISE_COLOUR if m else lookup[str(v)] for v, m in zip(series, missing, strict=True)]


def numeric_colours(values: Sequence[float]) -> list[str]:
    """Viridis by rank (robust to a few huge scores); missing values are grey."""
    x = pd.Series(values, dtype="float64")
    ranks = x.rank(pct=True)
    cmap = colormaps["viridis"]
    return [NOISE_COLOUR if np.isnan(r) else to_hex(cmap(float(r))) for r in ranks]


def thumbnail_uri(tile: np.ndarray, origin: str) -> str:
    """A tile as a small JPEG data URI: grey for ``[S, S]`` or ``[1, S, S]``, colour (RGB) for ``[3, S, S]``;
    spectrograms flipped so low frequencies are at the bottom."""
    image = np.asarray(tile, dtype=np.float32)
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    if image.ndim == 3 and image.shape[0] == 3:
        image = np.moveaxis(image, 0, -1)  # channels last, as PIL wants them
    elif image.ndim != 2:
        raise ValueError(f"tile of shape {np.shape(tile)}: expected [S, S] or [C, S, S] with C = 1 or 3")
    if origin == "lower":
        image = image[::-1]
    pixels = np.ascontiguousarray(np.clip(np.round(image * 255), 0, 255).astype(np.uint8))
    picture = Image.fromarray(pixels)  # uint8: "L" for grey, "RGB" for channels last
    picture = picture.resize((THUMB_PX, THUMB_PX), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    picture.save(buf, format="JPEG", quality=THUMB_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def crop_uri(pixels: np.ndarray, box: Sequence[float]) -> str:
    """The box ``(xmin, ymin, xmax, ymax)`` of a decoded image, with a margin, as a colour JPEG data URI.

    8-bit images are shown as they are; deeper or float images are stretched over the crop's range.
    """
    height, width = pixels.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    margin = CROP_MARGIN * max(x1 - x0, y1 - y0)
    xa, ya = max(0, int(x0 - margin)), max(0, int(y0 - margin))
    xb, yb = min(width, int(np.ceil(x1 + margin))), min(height, int(np.ceil(y1 + margin)))
    crop = pixels[ya : max(yb, ya + 1), xa : max(xb, xa + 1)]
    if crop.ndim == 3:
        crop = crop[..., :3] if crop.shape[-1] >= 3 else crop[..., 0]  # drop alpha
    if crop.dtype != np.uint8:
        values = crop.astype(np.float32)
        lo, hi = float(values.min()), float(values.max())
        crop = np.round(255 * (values - lo) / (hi - lo)) if hi > lo else np.zeros_like(values)
    picture = Image.fromarray(np.ascontiguousarray(crop.astype(np.uint8)))
    picture.thumbnail((CROP_PX, CROP_PX), Image.Resampling.LANCZOS)
    if max(picture.size) < CROP_PX:  # small particles: enlarge, pixels stay visible
        scale = CROP_PX / max(picture.size)
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.NEAREST)
    buf = io.BytesIO()
    picture.save(buf, format="JPEG", quality=THUMB_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def image_crops(items: pd.DataFrame, source_root: Path, page: int = 0) -> tuple[list[str], list[str]]:
    """Original-crop URIs for ``items`` (columns source, xmin, ymin, xmax, ymax) and the problems met.

    ``page`` is the page of a multi-page TIFF the tiles were cut from (``images.page``). Each source image
    is decoded once. One that cannot be read gives empty crops for its items and one
    problem line; the map is still drawn.
    """
    crops = [""] * len(items)
    problems: list[str] = []
    boxes = items[["xmin", "ymin", "xmax", "ymax"]].to_numpy(float)
    for source, rows in items.groupby("source", sort=False).indices.items():
        try:
            pixels = read_pixels(source_root / str(source), page)
        except ImageReadError as exc:
            problems.append(f"{source}: no original crops ({exc})")
            log.warning("%s: no original crops (%s)", source, exc)
            continue
        for i in rows:
            crops[i] = crop_uri(pixels, boxes[i])
    return crops, problems


def audio_clip_uri(path: Path, onset_s: float, offset_s: float) -> str:
    """The call with ``CLIP_CONTEXT_S`` around it, mixed to mono, as an Ogg Opus data URI."""
    return _clip_uri(audio_info(path), onset_s, offset_s)


def _clip_uri(recording: AudioInfo, onset_s: float, offset_s: float) -> str:
    """:func:`audio_clip_uri` of a recording whose header is read: reads only the frames it needs (any
    format quagga tiles, EvTAF .cbin included), so hour-long recordings are never loaded whole."""
    stop_s = min(offset_s + CLIP_CONTEXT_S, onset_s + CLIP_MAX_S)
    block = read_block(recording, onset_s - CLIP_CONTEXT_S, stop_s, recording.sample_rate)
    mono, rate = block.samples, recording.sample_rate
    if not len(mono):
        mono = np.zeros(1, np.float32)
    if rate != CLIP_RATE:
        common = math.gcd(rate, CLIP_RATE)
        mono = resample_poly(mono, CLIP_RATE // common, rate // common)
    peak = float(np.abs(mono).max()) if len(mono) else 0.0
    if peak > 0:
        mono = mono * (0.8 / peak)  # faint calls audible, headroom for the codec; the map shows loudness
    buf = io.BytesIO()
    sf.write(buf, mono, CLIP_RATE, format="OGG", subtype="OPUS", compression_level=OPUS_COMPRESSION)
    return "data:audio/ogg;base64," + base64.b64encode(strip_opus_tags_padding(buf.getvalue())).decode("ascii")


def _ogg_crc(data: bytes) -> int:
    """Ogg's page checksum: CRC-32, polynomial 0x04C11DB7, not reflected, initial value 0."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def strip_opus_tags_padding(ogg: bytes) -> bytes:
    """The Ogg Opus file without the zero padding libsndfile puts in its comment header.

    libsndfile pads the OpusTags packet to about 790 bytes, which is most of a short call's clip (the
    audio itself is 1-1.5 kB). RFC 7845 (section 5.2) lets padding after the comment list be dropped;
    the page is rebuilt with its new segment table and checksum. Anything unexpected (tags spread over
    several pages, a malformed header) returns the file unchanged.
    """
    pos = 0
    while pos + 27 <= len(ogg) and ogg[pos : pos + 4] == b"OggS":
        n_segments = ogg[pos + 26]
        lacing = ogg[pos + 27 : pos + 27 + n_segments]
        start = pos + 27 + n_segments
        end = start + sum(lacing)
        body = ogg[start:end]
        if body.startswith(b"OpusTags"):
            if not lacing or lacing[-1] == 255:  # the packet continues on the next page
                return ogg
            try:
                length = 12 + int.from_bytes(body[8:12], "little")  # magic, vendor length, vendor
                for _ in range(int.from_bytes(body[length : length + 4], "little")):
                    length += 4 + int.from_bytes(body[length + 4 : length + 8], "little")
                length += 4  # the comment count itself
            except IndexError:
                return ogg
            if length > len(body):
                return ogg
            segments = bytes([255] * (length // 255) + [length % 255])
            page = bytearray(ogg[pos : pos + 26] + bytes([len(segments)]) + segments + body[:length])
            page[22:26] = b"\0\0\0\0"
            page[22:26] = _ogg_crc(bytes(page)).to_bytes(4, "little")
            return ogg[:pos] + bytes(page) + ogg[end:]
        pos = end
    return ogg


def audio_clips(items: pd.DataFrame, source_root: Path) -> tuple[list[str], list[str]]:
    """Clip URIs for ``items`` (columns source, onset_s, offset_s) and the problems met, one per file.

    Each recording's header is read once. One that cannot be read gives empty clips for its calls and one
    problem line; the map is still drawn.
    """
    clips = [""] * len(items)
    problems: list[str] = []
    onsets, offsets = items["onset_s"].to_numpy(float), items["offset_s"].to_numpy(float)
    for source, rows in items.groupby("source", sort=False).indices.items():
        path = source_root / str(source)
        try:
            recording = audio_info(path)
            for i in rows:
                clips[i] = _clip_uri(recording, onsets[i], offsets[i])
        except (OSError, RuntimeError, ValueError, sf.LibsndfileError) as exc:
            problems.append(f"{source}: no sound clips ({exc})")
            log.warning("%s: no sound clips (%s)", path, exc)
    return clips, problems


_PLAY_JS = """
const i = source.selected.indices.length ? source.selected.indices[source.selected.indices.length - 1] : -1;
const player = document.getElementById(player_id);
if (i < 0 || !player || !source.data.audio[i]) { return; }
player.src = source.data.audio[i];
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


def map_data(
    items: pd.DataFrame, thumbs: list[str], clips: list[str] | None, crops: list[str] | None = None
) -> tuple[dict, list[str]]:
    """Column data of the scatter and the colourings offered (first one shown)."""
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
    levels = sorted({str(v) for column in names for v in column.dropna()})
    colourings = {
        "cluster": categorical_colours(items["cluster"].tolist(), grey=[-1]),
        "label": categorical_colours(items["label"].tolist(), levels=levels),
    }
    if predicted:
        colourings["predicted"] = categorical_colours(items["predicted_label"].tolist(), levels=levels)
        data["predicted"] = [str(v) for v in items["predicted_label"].astype("object").fillna(NO_LABEL)]
    for score in ("recon_error", "probability", "predicted_probability"):
        if score in items and items[score].notna().any():
            colourings[score] = numeric_colours(items[score].tolist())
    if 1 < items["source"].nunique() <= MAX_CATEGORIES:
        colourings["source"] = categorical_colours(items["source"].tolist())
    for name, colours in colourings.items():
        data[f"colour_{name}"] = colours
    data["colour"] = list(colourings["cluster"])
    return data, list(colourings)


def interactive_map(
    dataset: str, items: pd.DataFrame, thumbs: list[str], clips: list[str] | None, crops: list[str] | None = None
) -> tuple[str, str]:
    """(head, body) HTML of the map: Bokeh's inline resources and the plot with its controls.

    ``crops`` (images): the original crop, in colour, shown beside the normalised tile on hover.
    """
    data, colourings = map_data(items, thumbs, clips, crops)
    source = ColumnDataSource(data=data, name="points")
    has_crops = crops is not None and any(crops)
    original = '<img src="@crop" style="max-width:128px;max-height:128px;border:1px solid #888" alt="original">'
    tooltip = (
        f'<div style="width:{270 if has_crops else 150}px"><img src="@thumb" width="128" height="128" '
        'style="image-rendering:pixelated;border:1px solid #888" alt="tile">'
        + (original if has_crops else "")
        + "<div><b>@label</b> &middot; cluster @cluster</div>"
        + ("<div>predicted: @predicted</div>" if "predicted" in data else "")
        + '<div style="font-size:80%;word-break:break-all">@item_id</div></div>'
    )
    plot = figure(
        name="map", width=720, height=620, title=None, match_aspect=True,
        tools="pan,wheel_zoom,reset,save", active_scroll="wheel_zoom", output_backend="webgl",
    )
    plot.xaxis.axis_label, plot.yaxis.axis_label = "UMAP 1", "UMAP 2"
    points = plot.scatter(
        "x", "y", source=source, size=7, fill_color="colour", line_color="colour", fill_alpha=0.8,
        nonselection_fill_alpha=0.15, nonselection_line_alpha=0.15,
    )
    plot.add_tools(
        HoverTool(renderers=[points], tooltips=tooltip, limit=1),  # one tile, not a stack in dense clusters
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
        "<p>Hover a point to see its tile"
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
    body = f'{div}\n{player}\n<div id="quagga-selection"><p>0 selected</p></div>\n{script}'
    return BOKEH_RESOURCES.render(), body
