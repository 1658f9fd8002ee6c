"""Audio front end: reading any format, call tiles, energy segmentation, and bad input skipped, not fatal."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from quagga.audio import iter_audio_tiles
from quagga.audio.io import AudioReadError, audio_info, read_audio, read_block
from quagga.audio.settings import SEGMENT_FALLBACK
from quagga.audio.spectrogram import BlockSpectrogram, call_tile, spectrogram_db
from quagga.params import AudioParams, SpectrogramParams
from quagga.tiles.store import Skipped, TileItem

SR = 16000
SPEC = SpectrogramParams(sample_rate=SR, n_fft=512, hop_length=128, fmin=100.0, fmax=7000.0, db_min=-90.0,
                         db_max=-10.0, tile_duration_s=1.0, tile_size=64, n_mels=64, scale="mel", time_stretch="none")
SEGMENT = replace(SEGMENT_FALLBACK, n_fft=256, hop_length=64, fmin=300.0, fmax=7000.0, max_duration_s=0.8)
KOUMURA = Path(__file__).resolve().parents[3] / "shared" / "data" / "koumura-bird0"


def _tone(freq: float, dur: float, amp: float) -> np.ndarray:
    t = np.arange(int(dur * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t) * np.hanning(len(t))).astype(np.float32)


def _recording(calls: list[tuple[float, float, float, float]], length_s: float = 4.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = (0.003 * rng.standard_normal(int(length_s * SR))).astype(np.float32)
    for onset, dur, freq, amp in calls:
        i = int(onset * SR)
        y[i : i + int(dur * SR)] += _tone(freq, dur, amp)
    return y


def _raven(path: Path, rows: list[tuple[str, float, float, str]]) -> None:
    header = "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tBegin File\tFile Offset (s)\tcall_type\n"
    lines = [f"{i}\tSpectrogram 1\t1\t{on + 100}\t{off + 100}\t{f}\t{on}\t{lab}\n"
             for i, (f, on, off, lab) in enumerate(rows, 1)]
    path.write_text(header + "".join(lines))


GOOD_ROWS = [("a.wav", 0.5, 0.8, "low"), ("a.wav", 2.0, 2.6, "high"), ("b.flac", 1.0, 1.4, "mid")]


@pytest.fixture()
def good(tmp_path: Path) -> Path:
    """Two good recordings: a 16-bit WAV with two calls and a stereo FLAC (call on channel 0) with one."""
    sf.write(tmp_path / "a.wav", _recording([(0.5, 0.3, 1000, 0.5), (2.0, 0.6, 3000, 0.05)]), SR,
             subtype="PCM_16")
    stereo = np.stack([_recording([(1.0, 0.4, 2000, 0.3)]), np.zeros(4 * SR, np.float32)], axis=1)
    sf.write(tmp_path / "b.flac", stereo, SR)
    return tmp_path


def _params(**kw: object) -> AudioParams:
    kw = {"spectrogram": SPEC, "segment": SEGMENT, **kw}
    return AudioParams(recordings=".", annotations="table.txt", annotation_format="raven",
                       label_column="call_type", **kw)  # type: ignore[arg-type]


def _run(folder: Path, extra_rows: list[tuple[str, float, float, str]], **kw: object) -> tuple[list, dict]:
    _raven(folder / "table.txt", GOOD_ROWS + extra_rows)
    out = list(iter_audio_tiles(_params(**kw), folder))
    return [o for o in out if isinstance(o, TileItem)], {o.item: o for o in out if isinstance(o, Skipped)}


def _write_truncated(path: Path) -> None:
    sf.write(path, _recording([(0.5, 0.2, 1000, 0.5)], length_s=2.0), SR, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # an interrupted copy: header says 2 s, 1 s is there


def _write_nan(path: Path) -> None:
    bad = _recording([(0.5, 0.2, 1000, 0.5)], length_s=1.0)
    bad[int(0.6 * SR)] = np.nan
    sf.write(path, bad, SR, subtype="FLOAT")


def _write_clipped(path: Path) -> None:
    y = _recording([(0.5, 0.2, 1000, 3.0)], length_s=1.0)  # 10 dB too hot for the recorder
    sf.write(path, np.clip(y, -1, 1), SR, subtype="PCM_16")


# (file written, its annotated call, expected reason): each bad input of the issue, next to two good files
BAD_INPUTS = {
    "corrupt header": (lambda p: p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage"), (0.1, 0.2),
                       "cannot read audio"),
    "zero-length file": (lambda p: p.write_bytes(b""), (0.1, 0.2), "cannot read audio"),
    "zero samples": (lambda p: sf.write(p, np.zeros(0, np.float32), SR), (0.1, 0.2), "no samples (zero length)"),
    "truncated": (_write_truncated, (1.2, 1.4), "outside the recording (0-0.999 s; the file is truncated"),
    "all silent": (lambda p: sf.write(p, np.zeros(SR, np.float32), SR), (0.1, 0.2),
                   "audio is silent (all samples zero)"),
    "NaN in the call": (_write_nan, (0.5, 0.7), "of the call's samples are NaN or Inf"),
    "clipped": (_write_clipped, (0.5, 0.7), "clipped: "),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_a_bad_recording_is_skipped_with_its_reason_and_the_rest_is_tiled(good: Path, case: str) -> None:
    write, (onset, offset), reason = BAD_INPUTS[case]
    write(good / "bad.wav")
    tiles, skipped = _run(good, [("bad.wav", onset, offset, "x")])
    assert [t.meta["label"] for t in tiles] == ["low", "high", "mid"]
    assert list(skipped) == ["table.txt line 5"]
    assert skipped["table.txt line 5"].source == "bad.wav"
    assert reason in skipped["table.txt line 5"].reason


@pytest.mark.parametrize(("row", "reason"), [
    (("a.wav", 3.0, 2.9, "low"), "offset 2.9 s <= onset 3 s"),
    (("a.wav", 3.5, 9.0, "low"), "call 3.5-9 s outside the recording (0-4.000 s)"),
    (("a.wav", -0.5, 0.2, "low"), "outside the recording"),
    (("missing.wav", 0.1, 0.2, "low"), "recording not found"),
])
def test_a_bad_annotation_row_is_skipped_with_its_reason_and_the_rest_is_tiled(
    good: Path, row: tuple[str, float, float, str], reason: str
) -> None:
    tiles, skipped = _run(good, [row])
    assert [t.meta["label"] for t in tiles] == ["low", "high", "mid"]
    assert reason in skipped["table.txt line 5"].reason and skipped["table.txt line 5"].source == row[0]


def test_clipping_and_nan_only_cost_the_calls_they_touch(good: Path) -> None:
    y = _recording([(0.5, 0.2, 1000, 0.5), (1.5, 0.2, 1000, 3.0), (2.5, 0.2, 1000, 0.5)])
    y = np.clip(y, -1, 1)
    y[int(2.6 * SR)] = np.inf
    sf.write(good / "mixed.wav", y, SR, subtype="FLOAT")
    rows = [("mixed.wav", 0.5, 0.7, "ok"), ("mixed.wav", 1.5, 1.7, "hot"), ("mixed.wav", 2.5, 2.7, "inf")]
    tiles, skipped = _run(good, rows)
    assert [t.meta["label"] for t in tiles] == ["low", "high", "mid", "ok"]
    assert "clipped: " in skipped["table.txt line 6"].reason
    assert "NaN or Inf" in skipped["table.txt line 7"].reason
    # a looser limit keeps the hot call, and records how much of it was clipped
    tiles, _ = _run(good, rows, max_clipped_fraction=1.0)
    hot = next(t for t in tiles if t.meta["label"] == "hot")
    assert 0.05 < hot.meta["clipped_fraction"] < 0.9


def test_channel_beyond_the_file_is_named(good: Path) -> None:
    tiles, skipped = _run(good, [], channel="1")
    assert tiles == []  # b.flac has 2 channels, but its channel 1 is silent
    assert "channel 1 requested but the file has 1 channel(s)" in skipped["table.txt line 2"].reason
    assert "silent" in skipped["table.txt line 4"].reason


@pytest.mark.parametrize(("fmt", "subtype", "atol"), [
    ("WAV", "PCM_U8", 1e-2), ("WAV", "PCM_16", 1e-4), ("WAV", "PCM_24", 1e-6), ("WAV", "PCM_32", 1e-7),
    ("WAV", "FLOAT", 0), ("WAV", "DOUBLE", 0), ("FLAC", "PCM_24", 1e-6), ("OGG", "VORBIS", None),
    ("MP3", "MPEG_LAYER_III", None),
])
def test_reads_every_format(tmp_path: Path, fmt: str, subtype: str, atol: float | None) -> None:
    y = _tone(1000, 1.0, 0.5)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, y, SR, format=fmt, subtype=subtype)
    got = read_audio(path, SR)
    if atol is None:  # lossy codecs: same length (give or take codec padding) and the same energy
        assert abs(len(got) - len(y)) < 0.05 * SR and abs(np.std(got) - np.std(y)) < 0.05 * np.std(y)
    else:
        np.testing.assert_allclose(got, y, atol=atol)


def test_read_audio_mixes_selects_and_resamples(tmp_path: Path) -> None:
    stereo = np.stack([np.full(8000, 0.5, np.float32), np.full(8000, -0.1, np.float32)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, 8000, subtype="FLOAT")
    np.testing.assert_allclose(read_audio(tmp_path / "s.wav", 8000, "mix")[:10], 0.2, atol=1e-6)
    np.testing.assert_allclose(read_audio(tmp_path / "s.wav", 8000, "1")[:10], -0.1, atol=1e-6)
    assert len(read_audio(tmp_path / "s.wav", 16000, "0")) == 16000
    with pytest.raises(AudioReadError, match="channel 2 requested"):
        read_audio(tmp_path / "s.wav", 8000, "2")


def test_blocks_read_only_their_span_and_tiles_do_not_depend_on_the_block_size(good: Path) -> None:
    info = audio_info(good / "a.wav")
    block = read_block(info, 1.0, 1.5, SR)
    assert block.start_s == 1.0 and len(block.samples) == SR // 2
    np.testing.assert_allclose(block.samples, read_audio(good / "a.wav", SR)[SR : SR + SR // 2])
    whole, _ = _run(good, [])
    small, _ = _run(good, [], block_s=1.0)  # one block per call instead of one per file
    for a, b in zip(whole, small, strict=True):
        assert a.item_id == b.item_id
        # blocks start at other sample offsets, so noise pixels differ; the call and the floor do not
        assert np.corrcoef(a.tile.ravel(), b.tile.ravel())[0, 1] > 0.95
        assert np.abs(a.tile - b.tile).mean() < 0.02


def test_tile_keeps_duration_pitch_and_loudness(good: Path) -> None:
    tiles, _ = _run(good, [])
    low, high = tiles[0].tile, tiles[1].tile
    # duration: a 0.3 s call covers 0.3 of a 1 s tile; the rest is background padding
    active = (low - low[:, :3].mean(axis=1, keepdims=True)).max(axis=0) > 0.1
    assert abs(active.sum() / 64 - 0.3) < 0.08
    # pitch: the 3 kHz call's energy sits in higher mel rows than the 1 kHz call's
    assert np.argmax(high.sum(axis=1)) > np.argmax(low.sum(axis=1)) + 5
    # loudness survives the fixed dB bounds: the 0.5-amplitude call is brighter at its peak
    assert low.max() > high.max()
    # per_tile normalisation stretches each tile to [0, 1], so the faint call reaches 1 too
    stretched, _ = _run(good, [], spectrogram=replace(SPEC, normalize="per_tile"))
    assert stretched[1].tile.max() == pytest.approx(1.0) and stretched[1].tile.min() == pytest.approx(0.0)


def test_time_stretch_widens_short_calls() -> None:
    spec = BlockSpectrogram(_recording([(1.0, 0.09, 1500, 0.5)]), SPEC)
    bg = spec.background()
    plain = call_tile(spec, bg, 1.0, 1.09, SPEC)
    stretched = call_tile(spec, bg, 1.0, 1.09, replace(SPEC, time_stretch="sqrt"))
    filled = call_tile(spec, bg, 1.0, 1.09, replace(SPEC, time_stretch="full"))

    floor = plain[:, :2].mean(axis=1, keepdims=True)  # background columns of the unstretched tile

    def width(tile: np.ndarray) -> int:
        return int(((tile - floor).max(axis=0) > 0.1).sum())

    assert width(plain) == pytest.approx(0.09 * 64, abs=2)
    assert width(stretched) == pytest.approx(np.sqrt(0.09) * 64, abs=3)  # sqrt(0.09 s / 1 s) of the tile
    assert width(filled) == 64  # the whole tile


def test_linear_scale_and_noise_reduction() -> None:
    y = _recording([(1.0, 0.3, 2000, 0.05)]) + 0.02 * np.random.default_rng(1).standard_normal(4 * SR).astype(
        np.float32)
    linear = replace(SPEC, scale="linear", fmin=1000.0, fmax=3000.0)
    spec = spectrogram_db(y, linear)
    assert spec.shape[0] == 65  # 31.25 Hz bins from 1000 to 3000 Hz, both included
    assert np.argmax(spec[:, int(1.15 * SR / 128)]) == pytest.approx(32, abs=1)  # the 2 kHz bin
    quiet = spectrogram_db(y, replace(linear, noise_reduce=True))
    noise_frames = slice(int(2.0 * SR / 128), int(3.5 * SR / 128))
    call = (32, int(1.15 * SR / 128))

    def contrast(s: np.ndarray) -> float:  # the call above the noise, in dB
        return float(s[call] - np.median(s[:, noise_frames]))

    assert np.median(quiet[:, noise_frames]) < np.median(spec[:, noise_frames]) - 6  # noise floor lowered
    assert contrast(quiet) > contrast(spec) + 6  # and the call stands out more


def test_padding_is_background_not_zero() -> None:
    spec = BlockSpectrogram(_recording([(1.0, 0.2, 1500, 0.5)]), SPEC)
    bg = spec.background()
    tile = call_tile(spec, bg, 1.0, 1.2, SPEC)
    np.testing.assert_allclose(tile[:, 0], np.clip((bg - SPEC.db_min) / (SPEC.db_max - SPEC.db_min), 0, 1), atol=1e-5)
    assert tile[:, 0].mean() > 0.05


def test_full_scale_sine_is_near_zero_db() -> None:
    t = np.arange(SR) / SR
    spec = spectrogram_db(np.sin(2 * np.pi * 1000 * t).astype(np.float32), SPEC)
    assert -6 < spec[:, 10:-10].max() < 1


def test_energy_segmentation_finds_calls_and_labels_them_by_overlap(good: Path) -> None:
    _raven(good / "table.txt", GOOD_ROWS)
    params = _params(segments="energy")
    out = list(iter_audio_tiles(params, good))
    tiles = [o for o in out if isinstance(o, TileItem)]
    assert [(t.meta["source"], t.meta["label"]) for t in tiles] == [("a.wav", "low"), ("a.wav", "high"),
                                                                    ("b.flac", "mid")]
    for tile, (_, onset, offset, _) in zip(tiles, GOOD_ROWS, strict=True):
        # the Hann-shaped tones are quiet at their ends: found calls sit inside the annotated span
        assert onset - 0.02 < tile.meta["onset_s"] < onset + 0.1
        assert offset - 0.1 < tile.meta["offset_s"] < offset + 0.02
    # without annotations: the same calls, unlabelled; a silent file is listed as skipped
    sf.write(good / "silent.wav", np.zeros(SR, np.float32), SR)
    out = list(iter_audio_tiles(replace(params, annotations=None), good))
    assert [o.meta["label"] for o in out if isinstance(o, TileItem)] == [None, None, None]
    assert [(o.source, o.item) for o in out if isinstance(o, Skipped)] == [("silent.wav", "block 0-1 s")]


def test_energy_segmentation_of_a_long_file_in_blocks_finds_calls_across_block_edges(tmp_path: Path) -> None:
    calls = [(k * 2.0 + 0.3, 0.25, 1500, 0.3) for k in range(15)] + [(9.9, 0.25, 1500, 0.3)]  # one spans 10 s
    sf.write(tmp_path / "long.wav", _recording(calls, length_s=30.0), SR, subtype="PCM_16")
    params = AudioParams(recordings="long.wav", annotations=None, segments="energy", block_s=10.0,
                         spectrogram=SPEC, segment=SEGMENT)
    tiles = [o for o in iter_audio_tiles(params, tmp_path) if isinstance(o, TileItem)]
    assert len(tiles) == 16  # each call once: none lost or doubled at the block edges
    assert any(t.meta["onset_s"] < 10.0 < t.meta["offset_s"] for t in tiles)


@pytest.mark.slow
@pytest.mark.skipif(not (KOUMURA / "annotations.csv").is_file(), reason="koumura-bird0 not in ../shared/data")
def test_koumura_bird0_every_syllable_becomes_a_tile() -> None:
    from quagga.audio.settings import resolve_audio_settings
    from quagga.config import load_config, stage_section
    from quagga.params import from_dict

    root = Path(__file__).resolve().parents[2]
    config = load_config(root / "config" / "koumura-bird0.yaml")  # the shipped preset: every tile setting auto
    params, _ = resolve_audio_settings(from_dict(AudioParams, stage_section(config, "koumura-bird0", "tiles")), root)
    out = list(iter_audio_tiles(params, root))
    tiles = [o for o in out if isinstance(o, TileItem)]
    assert len(tiles) == 7652 and len(out) == 7652
    labels = [t.meta["label"] for t in tiles]
    assert sorted(set(labels)) == [str(k) for k in range(9)] and labels.count("0") == 1930
    # loudness is kept: calls are brighter than the padding, which is the cage's noise floor
    stack = np.stack([t.tile for t in tiles[:500]])
    assert 0.02 < stack[:, :, :4].mean() < 0.3 and stack.max(axis=(1, 2)).mean() > 0.6


def _same_items(a: list, b: list) -> bool:
    """Same items in the same order: skips by (source, item, reason), tiles by id, meta and pixels."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, Skipped) or isinstance(y, Skipped):
            if x != y:
                return False
        elif (x.item_id, x.meta) != (y.item_id, y.meta) or not np.array_equal(x.tile, y.tile):
            return False
    return True


@pytest.mark.parametrize("segments", ["annotations", "energy"])
def test_shards_together_are_the_whole_run_and_table_level_skips_come_once(good: Path, segments: str) -> None:
    sf.write(good / "c.wav", _recording([(1.0, 0.3, 1500, 0.4)], seed=1), SR)
    _raven(good / "table.txt", GOOD_ROWS + [("gone.wav", 0.1, 0.2, "x"), ("c.wav", 1.0, 1.3, "low")])
    params = _params(segments=segments)
    whole = list(iter_audio_tiles(params, good))
    for n in (1, 2, 3, 5):
        shards = [list(iter_audio_tiles(params, good, shard=(k, n))) for k in range(n)]
        assert _same_items([item for shard in shards for item in shard], whole), n
    if segments == "energy":  # annotated calls of a recording that is not there: a table-level problem
        gone = [s for s in whole if isinstance(s, Skipped) and s.source == "gone.wav"]
        assert gone and all(s in shards[0] for s in gone)
        assert not any(isinstance(s, Skipped) and s.source == "gone.wav" for shard in shards[1:] for s in shard)
    assert sum(isinstance(i, TileItem) for i in whole) >= 4
