"""What the map shows of each point: a thumbnail of its tile, and its sound clip (audio) or original crop (images).

Each is a data URI (JPEG thumbnails and crops, Ogg Opus clips), so the page needs nothing beside itself.
A point's media depend only on its own tile or recording, so :func:`start_point_media` cuts the points into
chunks and shares them among ``workers`` processes (started with 'spawn': nothing is forked from a
process that holds threads, and each worker runs its libraries on one thread); with ``workers=1`` they are
made here, in order, with no pool. A recording's header is read once, here, for all its calls (a chunk
holds consecutive calls of one or more recordings); an image is decoded once (its boxes are never split
among chunks). The URIs are the same, byte for byte, whatever the number of workers (and from run to run:
see :func:`opus_ogg`); so are the problems reported.

Encoding the clips is most of an audio report's time: libopus (PyAV) costs about 10 ms of CPU per second of
sound at complexity 6 (libsndfile's Opus, used before, about 55 ms at the same size).
"""

from __future__ import annotations

import base64
import functools
import io
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image
from scipy.signal import firwin, resample_poly

from quagga.pool import submit_tasks

if TYPE_CHECKING:
    from quagga.audio.io import AudioInfo

log = logging.getLogger(__name__)

THUMB_PX = 64  # thumbnail side: enough to recognise a call or a particle, small enough for 10k points
THUMB_QUALITY = 75  # JPEG quality of thumbnails
CROP_PX = 96  # longest side of an image item's original crop (colour, as in the source image)
CROP_MARGIN = 0.15  # context around the box, as a share of its longer side
CLIP_CONTEXT_S = 0.1  # sound before and after each call, so its onset and decay are heard
CLIP_MAX_S = 3.0  # longer calls are cut: the page stays small, the start is what people listen for
# Clips are Ogg Opus at 48 kHz (Opus's full band: a 16 kHz whistle is kept), 20 kbit/s, encoded with libopus
# through PyAV at complexity 6: about 1.2-1.6 kB and 3-4 ms of CPU for a typical call. libsndfile's Opus (used
# before) took 20-33 ms for the same size (its low bit rates run the slower SILK+CELT hybrid); complexity 10 at
# 32 kbit/s takes 7-10 ms and makes noisy clips 1.3x larger. Vorbis needs 4x the bytes on noisy field audio,
# and noise is what fields sound like. 10,000 clips fit a 40 MB page (bench/report.py).
CLIP_RATE = 48000
CLIP_BITRATE = 20000
OPUS_COMPLEXITY = 6
THUMB_BLOCK = 256  # tiles read from the store at once for thumbnails (16 MB at 128 x 128 in float32)
CHUNKS_PER_WORKER = 4  # chunks per worker: small enough to balance the load, large enough to amortise a task
MIN_CHUNK = 64  # the fewest points in a chunk: a worker costs a second or two of imports to start
_READ_ERRORS = (OSError, RuntimeError, ValueError, sf.LibsndfileError)  # a recording that cannot give a clip


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


def audio_clip_uri(path: Path, onset_s: float, offset_s: float) -> str:
    """The call with ``CLIP_CONTEXT_S`` around it, mixed to mono, as an Ogg Opus data URI."""
    from quagga.audio.io import audio_info

    return _clip_uri(audio_info(path), onset_s, offset_s)


def _clip_uri(recording: AudioInfo, onset_s: float, offset_s: float) -> str:
    """:func:`audio_clip_uri` of a recording whose header is read: reads only the frames it needs (any
    format quagga tiles, EvTAF .cbin included), so hour-long recordings are never loaded whole."""
    from quagga.audio.io import read_block

    stop_s = min(offset_s + CLIP_CONTEXT_S, onset_s + CLIP_MAX_S)
    block = read_block(recording, onset_s - CLIP_CONTEXT_S, stop_s, recording.sample_rate)
    mono, rate = block.samples, recording.sample_rate
    if not len(mono):
        mono = np.zeros(1, np.float32)
    if rate != CLIP_RATE:
        common = math.gcd(rate, CLIP_RATE)
        up, down = CLIP_RATE // common, rate // common
        mono = resample_poly(mono, up, down, window=_resample_filter(up, down, np.dtype(mono.dtype).str))
    peak = float(np.abs(mono).max()) if len(mono) else 0.0
    if peak > 0:
        mono = mono * (0.8 / peak)  # faint calls audible, headroom for the codec; the map shows loudness
    return "data:audio/ogg;base64," + base64.b64encode(opus_ogg(mono)).decode("ascii")


@functools.lru_cache(maxsize=8)
def _resample_filter(up: int, down: int, dtype: str) -> np.ndarray:
    """The low-pass filter ``resample_poly`` designs for ``up``/``down`` (its default Kaiser window, in the
    samples' dtype), designed once per rate instead of once per clip (half of a clip's resampling time)."""
    rate = max(up, down)
    return firwin(2 * 10 * rate + 1, 1.0 / rate, window=("kaiser", 5.0)).astype(dtype)


def opus_ogg(mono: np.ndarray) -> bytes:
    """``mono`` (float, at ``CLIP_RATE``) as an Ogg Opus file, byte for byte the same for the same samples.

    FFmpeg's bit-exact mode writes a fixed stream serial number and no version tag; the frame's time stamp
    starting at 0 makes the last page's granule position end the stream at the last sample (RFC 7845), so
    players and libsndfile trim the encoder's padding.
    """
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="ogg", options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream("libopus", rate=CLIP_RATE, layout="mono")
        stream.bit_rate = CLIP_BITRATE
        stream.codec_context.options = {"compression_level": str(OPUS_COMPLEXITY)}
        samples = np.ascontiguousarray(mono, dtype=np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = CLIP_RATE, 0, Fraction(1, CLIP_RATE)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


# --- chunks: what one task of a worker does (module-level functions, so a spawned worker can find them) ---


def _thumbnail_chunk(tiles_dir: str, rows: np.ndarray, origin: str, invert: bool) -> list[str]:
    """Thumbnails of the tiles at store ``rows``, read from the memory map a block at a time (``invert``:
    shown as ``1 - tile``)."""
    from quagga.tiles.store import TileStore

    memmap = TileStore(tiles_dir).tiles
    uris: list[str] = []
    for block in _split(np.asarray(rows, dtype=int), THUMB_BLOCK):
        tiles = np.asarray(memmap[block], dtype=np.float32)
        if invert:
            tiles = 1.0 - tiles
        uris += [thumbnail_uri(tile, origin) for tile in tiles]
    return uris


def _clip_chunk(pieces: list[tuple[AudioInfo, np.ndarray, np.ndarray]]) -> list[tuple[list[str], str | None]]:
    """Per piece (a recording, onsets and offsets of some of its calls): the clips made, up to the first
    call that could not be read, and that error (None when all were made)."""
    out: list[tuple[list[str], str | None]] = []
    for recording, onsets, offsets in pieces:
        clips: list[str] = []
        try:
            for onset_s, offset_s in zip(onsets, offsets, strict=True):
                clips.append(_clip_uri(recording, onset_s, offset_s))
        except _READ_ERRORS as exc:
            out.append((clips, str(exc)))
        else:
            out.append((clips, None))
    return out


def _crop_chunk(pieces: list[tuple[str, int, np.ndarray]]) -> list[tuple[list[str], str | None]]:
    """Per piece (an image, its page, boxes): the crops, or none and why the image could not be read."""
    from quagga.images.io import ImageReadError, read_pixels

    out: list[tuple[list[str], str | None]] = []
    for path, page, boxes in pieces:
        try:
            pixels = read_pixels(Path(path), page)
        except ImageReadError as exc:
            out.append(([], str(exc)))
            continue
        out.append(([crop_uri(pixels, box) for box in boxes], None))
    return out


# --- batches: the chunks of one kind of media and how their results are put back in the points' order ---


@dataclass
class _Batch:
    """Tasks ``(function, args)`` and ``merge``, which turns their results (in task order) into the answer."""

    tasks: list[tuple[Callable[..., Any], tuple[Any, ...]]] = field(default_factory=list)
    merge: Callable[[list[Any]], Any] = list


def _split(rows: np.ndarray, size: int) -> list[np.ndarray]:
    return [rows[i : i + size] for i in range(0, len(rows), max(size, 1))]


def _pack(pieces: Sequence[tuple[int, Any]], size: int) -> list[list[Any]]:
    """Consecutive ``(n_items, piece)`` packed into tasks of at most ``size`` items (a larger piece alone)."""
    tasks: list[list[Any]] = []
    held = size
    for n, piece in pieces:
        if held + n > size:
            tasks.append([])
            held = 0
        tasks[-1].append(piece)
        held += n
    return tasks


def _thumbnail_batch(tiles_dir: Path, rows: Sequence[int], origin: str, invert: bool, size: int) -> _Batch:
    chunks = _split(np.asarray(rows, dtype=int), size)
    return _Batch([(_thumbnail_chunk, (str(tiles_dir), chunk, origin, invert)) for chunk in chunks],
                  lambda results: [uri for chunk in results for uri in chunk])


def _clip_batch(items: pd.DataFrame, source_root: Path, size: int) -> _Batch:
    """Clips of ``items`` (columns source, onset_s, offset_s): each recording's header read here, once; its
    calls cut into pieces of at most ``size``. Merged as one pass over the calls would give them: a
    recording's calls after the first that cannot be read get no clip, and the recording one problem line."""
    from quagga.audio.io import audio_info

    clips = [""] * len(items)
    onsets, offsets = items["onset_s"].to_numpy(float), items["offset_s"].to_numpy(float)
    groups = items.groupby("source", sort=False).indices
    problem: dict[object, str] = {}
    pieces: list[tuple[int, Any]] = []
    owners: list[tuple[object, Path, np.ndarray]] = []  # per piece: the recording and the calls' positions
    for source, rows in groups.items():
        path = source_root / str(source)
        try:
            recording = audio_info(path)
        except _READ_ERRORS as exc:
            problem[source] = f"{source}: no sound clips ({exc})"
            log.warning("%s: no sound clips (%s)", path, exc)
            continue
        for part in _split(rows, size):
            pieces.append((len(part), (recording, onsets[part], offsets[part])))
            owners.append((source, path, part))

    def merge(results: list[list[tuple[list[str], str | None]]]) -> tuple[list[str], list[str]]:
        made = [piece for chunk in results for piece in chunk]
        for (source, path, part), (uris, error) in zip(owners, made, strict=True):
            if source in problem:  # an earlier piece of this recording failed: no clips after it
                continue
            clips_part = part[: len(uris)]
            for i, uri in zip(clips_part, uris, strict=True):
                clips[i] = uri
            if error is not None:
                problem[source] = f"{source}: no sound clips ({error})"
                log.warning("%s: no sound clips (%s)", path, error)
        return clips, [problem[source] for source in groups if source in problem]

    return _Batch([(_clip_chunk, (task,)) for task in _pack(pieces, size)], merge)


def _crop_batch(items: pd.DataFrame, source_root: Path, page: int, size: int) -> _Batch:
    """Crops of ``items`` (columns source, xmin, ymin, xmax, ymax): each image decoded once, in one task."""
    crops = [""] * len(items)
    boxes = items[["xmin", "ymin", "xmax", "ymax"]].to_numpy(float)
    groups = list(items.groupby("source", sort=False).indices.items())
    pieces = [(len(rows), (str(source_root / str(source)), page, boxes[rows])) for source, rows in groups]

    def merge(results: list[list[tuple[list[str], str | None]]]) -> tuple[list[str], list[str]]:
        problems: list[str] = []
        made = [piece for chunk in results for piece in chunk]
        for (source, rows), (uris, error) in zip(groups, made, strict=True):
            if error is not None:
                problems.append(f"{source}: no original crops ({error})")
                log.warning("%s: no original crops (%s)", source, error)
            for i, uri in zip(rows, uris, strict=False):
                crops[i] = uri
        return crops, problems

    return _Batch([(_crop_chunk, (task,)) for task in _pack(pieces, size)], merge)


# --- running the batches: here, or in a pool of worker processes ---


def _start(batches: Sequence[_Batch], workers: int) -> Callable[[], list[Any]]:
    """The batches' tasks started by :func:`quagga.pool.submit_tasks` (``workers=1``: run here when waited for);
    returns the wait, which gives each batch's merged answer."""
    tasks = [task for batch in batches for task in batch.tasks]
    pending = submit_tasks(tasks, workers)

    def wait() -> list[Any]:
        results = pending.results()
        answers, start = [], 0
        for batch in batches:
            answers.append(batch.merge(results[start : start + len(batch.tasks)]))
            start += len(batch.tasks)
        return answers

    return wait


def _chunk_size(n: int, workers: int) -> int:
    """Items per task: all of them in one on one worker; else about CHUNKS_PER_WORKER tasks per worker, of
    at least MIN_CHUNK items (a small map starts few workers, or none)."""
    return max(n, 1) if workers <= 1 else max(MIN_CHUNK, math.ceil(n / (workers * CHUNKS_PER_WORKER)))


# --- what the report calls ---


@dataclass(frozen=True)
class PointMedia:
    """The map's media, one entry per point: thumbnails; clips (audio) and crops (images) or None; the
    problems met (one line per recording or image that could not be read)."""

    thumbs: list[str]
    clips: list[str] | None
    crops: list[str] | None
    problems: list[str]


def start_point_media(
    tiles_dir: Path, rows: Sequence[int], origin: str, invert: bool = False, audio: pd.DataFrame | None = None,
    boxes: pd.DataFrame | None = None, source_root: Path | None = None, page: int = 0, workers: int = 1,
) -> Callable[[], PointMedia]:
    """Thumbnails of the store's tiles at ``rows`` and, with ``source_root``, clips of ``audio`` (columns
    source, onset_s, offset_s) or crops of ``boxes`` (columns source, xmin, ymin, xmax, ymax), one row per
    point, started in ``workers`` processes (1: made here, when waited for, no pool) while the caller goes
    on with the rest of the page; returns the wait for them. ``invert``: tiles shown as ``1 - tile``."""
    size = _chunk_size(len(rows), workers)
    batches = [_thumbnail_batch(tiles_dir, rows, origin, invert, size)]
    kind = None
    if source_root is not None and audio is not None:
        kind = "clips"
        batches.append(_clip_batch(audio.reset_index(drop=True), Path(source_root), size))
    elif source_root is not None and boxes is not None:
        kind = "crops"
        batches.append(_crop_batch(boxes.reset_index(drop=True), Path(source_root), page, size))
    wait = _start(batches, workers)

    def made() -> PointMedia:
        thumbs, *extra = wait()
        media, problems = extra[0] if extra else (None, [])
        return PointMedia(thumbs, media if kind == "clips" else None, media if kind == "crops" else None, problems)

    return made


def audio_clips(items: pd.DataFrame, source_root: Path, workers: int = 1) -> tuple[list[str], list[str]]:
    """Clip URIs for ``items`` (columns source, onset_s, offset_s) and the problems met, one per file.

    Each recording's header is read once. One that cannot be read gives empty clips for its calls and one
    problem line; the map is still drawn.
    """
    batch = _clip_batch(items, Path(source_root), _chunk_size(len(items), workers))
    return _start([batch], workers)()[0]


def image_crops(items: pd.DataFrame, source_root: Path, page: int = 0, workers: int = 1) -> tuple[list[str], list[str]]:
    """Original-crop URIs for ``items`` (columns source, xmin, ymin, xmax, ymax) and the problems met.

    ``page`` is the page of a multi-page TIFF the tiles were cut from (``images.page``). Each source image
    is decoded once. One that cannot be read gives empty crops for its items and one
    problem line; the map is still drawn.
    """
    batch = _crop_batch(items, Path(source_root), page, _chunk_size(len(items), workers))
    return _start([batch], workers)()[0]
