"""The map's thumbnails, clips and crops made by worker processes are those made in one process, byte for
byte; one worker (``--threads 1``) starts no process at all, and more never start more than asked."""

from __future__ import annotations

import base64
import io
import json
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

from quagga import pool
from quagga.cli import main
from quagga.params import ReportParams
from quagga.report import build_report, media
from quagga.tables import write_json, write_table
from quagga.tiles.store import TileItem, TileStore, write_store

N = 40
RECORDINGS = {"a.flac": (44100, 2), "b.wav": (8000, 1), "c.wav": (48000, 1)}  # rate, channels
IMAGES = ("f0.png", "f1.png", "f2.png")


def _tables(root: Path, ids: list[str], rng: np.random.Generator) -> None:
    """Latents, embedding, clusters (three and some noise) and metrics of the items ``ids``."""
    clusters = np.arange(len(ids)) % 3
    clusters[::7] = -1
    xy = rng.normal(size=(len(ids), 2)) + 5 * clusters[:, None]
    write_table(pd.DataFrame({"item_id": ids, "z_0": xy[:, 0], "recon_error": rng.random(len(ids))}),
                root / "latents.parquet")
    write_table(pd.DataFrame({"item_id": ids, "x": xy[:, 0], "y": xy[:, 1]}), root / "embedding.parquet")
    write_table(pd.DataFrame({"item_id": ids, "cluster": clusters, "probability": rng.random(len(ids))}),
                root / "clusters.parquet")
    write_json({"v_measure": 0.5, "n_items": len(ids)}, root / "metrics.json")


def _kwargs(root: Path, name: str, sources: Path) -> dict[str, Any]:
    return {"dataset": name, "tiles_dir": root / "tiles", "latents_path": root / "latents.parquet",
            "embedding_path": root / "embedding.parquet", "clusters_path": root / "clusters.parquet",
            "metrics_path": root / "metrics.json", "examples_path": None, "training_curve_path": None,
            "params": ReportParams(n_examples=4), "out_dir": root / "report", "source_root": sources}


def _audio_run(root: Path) -> dict[str, Any]:
    """Calls in three recordings (44.1 kHz stereo FLAC, 8 kHz and 48 kHz WAV: resampled or not) and in one
    that is missing."""
    rng = np.random.default_rng(0)
    (root / "audio").mkdir(parents=True)
    for name, (rate, channels) in RECORDINGS.items():
        sf.write(root / "audio" / name, 0.1 * rng.standard_normal((8 * rate, channels)), rate)
    sources = [*RECORDINGS, "gone.wav"]
    ids = [f"call{i:02d}" for i in range(N)]
    items = []
    for i, item_id in enumerate(ids):
        onset = float(rng.uniform(0, 7))
        items.append(TileItem(item_id, rng.random((16, 16)), {
            "label": f"type{i % 3}", "source": sources[i % 4],
            "onset_s": onset, "offset_s": onset + float(rng.uniform(0.05, 0.4))}))
    write_store(root / "tiles", items, {"bench": True}, "audio")
    _tables(root, ids, rng)
    return _kwargs(root, "calls", root / "audio")


def _image_run(root: Path) -> dict[str, Any]:
    """Colour absorbance tiles (shown inverted) of particles in three images and in one that is missing."""
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    for name in IMAGES:
        Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(root / "images" / name)
    sources = [*IMAGES, "gone.png"]
    ids = [f"cell{i:02d}" for i in range(N)]
    items = []
    for i, item_id in enumerate(ids):
        x, y = rng.integers(0, 100), rng.integers(0, 70)
        items.append(TileItem(item_id, rng.random((3, 16, 16)), {
            "label": f"type{i % 3}", "source": sources[i % 4], "xmin": x, "ymin": y, "xmax": x + 15,
            "ymax": y + 12}))
    write_store(root / "tiles", items, {"intensity": "absorbance"}, "images")
    _tables(root, ids, rng)
    return _kwargs(root, "cells", root / "images")


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of a few points, so that a recording's calls are shared among several workers."""
    monkeypatch.setattr(media, "MIN_CHUNK", 3)


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _audio_run(tmp_path_factory.mktemp("audio"))


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _image_run(tmp_path_factory.mktemp("images"))


def _media(run: dict[str, Any], workers: int) -> media.PointMedia:
    store = TileStore(run["tiles_dir"])
    rows = np.arange(len(store))[::-1]  # not the store's order
    index = store.index.iloc[rows].reset_index(drop=True)
    audio = index[["source", "onset_s", "offset_s"]] if "onset_s" in index else None
    boxes = index[["source", "xmin", "ymin", "xmax", "ymax"]] if "xmin" in index else None
    origin = "lower" if audio is not None else "upper"
    return media.start_point_media(store.path, rows, origin, audio is None, audio, boxes, run["source_root"],
                                   workers=workers)()


def test_workers_make_the_same_thumbnails_and_clips(audio_run: dict[str, Any]) -> None:
    here, pooled = _media(audio_run, 1), _media(audio_run, 2)
    assert pooled == here and pooled.crops is None
    store = TileStore(audio_run["tiles_dir"])
    tiles = np.asarray(store.tiles[::-1], dtype=np.float32)[:, 0]
    assert here.thumbs == [media.thumbnail_uri(tile, "lower") for tile in tiles]
    gone = store.index["source"].iloc[::-1].to_numpy() == "gone.wav"
    assert gone.sum() == N // 4 and not any(np.asarray(here.clips)[gone])
    assert all(clip.startswith("data:audio/ogg;base64,") for clip in np.asarray(here.clips)[~gone])
    assert len(here.problems) == 1 and here.problems[0].startswith("gone.wav: no sound clips")


def test_workers_make_the_same_thumbnails_and_crops(image_run: dict[str, Any]) -> None:
    here, pooled = _media(image_run, 1), _media(image_run, 3)
    assert pooled == here and pooled.clips is None
    tiles = 1.0 - np.asarray(TileStore(image_run["tiles_dir"]).tiles[::-1], dtype=np.float32)
    assert here.thumbs == [media.thumbnail_uri(tile, "upper") for tile in tiles]
    assert sum(crop == "" for crop in here.crops) == N // 4
    assert len(here.problems) == 1 and here.problems[0].startswith("gone.png: no original crops")


@pytest.mark.parametrize("make", [_audio_run, _image_run], ids=["audio", "images"])
def test_the_page_shows_the_same_media_with_workers(make: Any, tmp_path: Path) -> None:
    """Every picture and clip of the page (the map's and the tables'), in order; Bokeh's element ids
    differ from build to build, the rest does not."""
    run = make(tmp_path)
    pages = [build_report(**{**run, "out_dir": tmp_path / f"out{workers}"}, workers=workers).read_text("utf-8")
             for workers in (1, 2)]
    uris = [re.findall(r"data:[a-z]+/[a-z]+;base64,[A-Za-z0-9+/=]+", page) for page in pages]
    assert uris[0] == uris[1]
    assert sum(uri.startswith("data:image/jpeg") for uri in uris[0]) >= N
    assert len(pages[0]) == len(pages[1])


def test_clips_are_the_same_from_run_to_run(audio_run: dict[str, Any]) -> None:
    """The Ogg stream's serial number is fixed (FFmpeg's bit-exact mode), so the same call gives the same clip."""
    path = Path(audio_run["source_root"]) / "a.flac"
    first, again = media.audio_clip_uri(path, 1.0, 1.2), media.audio_clip_uri(path, 1.0, 1.2)
    assert first == again
    ogg = base64.b64decode(first.split(",", 1)[1])
    decoded, rate = sf.read(io.BytesIO(ogg))  # checksums right: the pages decode
    assert rate == media.CLIP_RATE and len(decoded) == round((0.2 + 2 * media.CLIP_CONTEXT_S) * rate)


def test_a_recording_that_fails_partway_gives_no_clips_after_the_failure(
    audio_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut in pieces of 2 calls, a recording whose 5th call cannot be read loses the calls after it, as one
    pass over its calls would; it is reported once."""
    index = TileStore(audio_run["tiles_dir"]).index
    calls = index[["source", "onset_s", "offset_s"]]
    bad = float(calls.loc[calls["source"] == "a.flac", "onset_s"].iloc[4])
    clip_uri = media._clip_uri

    def failing(recording: Any, onset_s: float, offset_s: float) -> str:
        if onset_s == bad:
            raise RuntimeError("cannot read audio at this call")
        return clip_uri(recording, onset_s, offset_s)

    monkeypatch.setattr(media, "_clip_uri", failing)
    whole = media.audio_clips(calls, audio_run["source_root"])
    in_pieces = media._start([media._clip_batch(calls, audio_run["source_root"], 2)], 1)()[0]
    assert in_pieces == whole
    clips, problems = whole
    a = np.flatnonzero(calls["source"] == "a.flac")
    assert all(clips[i] for i in a[:4]) and not any(clips[i] for i in a[4:])
    assert [p.split(":")[0] for p in problems] == ["a.flac", "gone.wav"]


class _CountingPool(ProcessPoolExecutor):
    """A process pool that records how many workers it was asked for and how many it started."""

    asked: list[int] = []
    started: list[int] = []

    def __init__(self, max_workers: int, **kwargs: Any):
        _CountingPool.asked.append(max_workers)
        super().__init__(max_workers, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._processes is not None:
            _CountingPool.started.append(len(self._processes))
        super().shutdown(wait, cancel_futures=cancel_futures)


def _results(run: dict[str, Any]) -> list[str]:
    root = Path(run["tiles_dir"]).parent
    return ["report", "--dataset", run["dataset"], "--results", str(root), "--params", json.dumps({"n_examples": 4}),
            "--source-root", str(run["source_root"]), "--out", str(root / "report")]


def test_one_thread_starts_no_worker_process(audio_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pool(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("--threads 1 started a process pool")

    monkeypatch.setattr(pool, "ProcessPoolExecutor", no_pool)
    assert main([*_results(audio_run), "--threads", "1"]) == 0
    assert main(_results(audio_run)) == 0  # the default is 1
    assert multiprocessing.active_children() == []


def test_more_threads_start_at_most_that_many_workers(audio_run: dict[str, Any],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool, "ProcessPoolExecutor", _CountingPool)
    monkeypatch.setattr(_CountingPool, "asked", [])
    monkeypatch.setattr(_CountingPool, "started", [])
    omp = os.environ.get("OMP_NUM_THREADS")
    assert main([*_results(audio_run), "--threads", "2"]) == 0
    assert _CountingPool.asked == [2] and 1 <= _CountingPool.started[0] <= 2
    assert os.environ.get("OMP_NUM_THREADS") == omp  # the workers' setting is not left behind
    with pytest.raises(SystemExit):
        main([*_results(audio_run), "--threads", "0"])


def test_workers_run_their_libraries_on_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    batch = media._Batch([(os.getenv, ("OMP_NUM_THREADS",)), (os.getenv, ("NUMBA_NUM_THREADS",))], list)
    assert media._start([batch], 2)() == [["1", "1"]]
    assert os.environ["OMP_NUM_THREADS"] == "8" and "NUMBA_NUM_THREADS" not in os.environ  # as they were here
