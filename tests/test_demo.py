"""The demo data: deterministic, well-formed, and its labels point at real calls and real particles."""

from __future__ import annotations

import hashlib
import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from skimage import io

from quagga.demo import generate_demo_data, write_particles

RAVEN_COLUMNS = [
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
    "Begin File",
    "File Offset (s)",
    "call_type",
]
CALL_TYPES = {"snort", "soft_snort", "squeal", "whinny"}
PARTICLE_TYPES = {"dust", "pollen", "tephra", "fibre"}
# folder -> core, depth range, glacial (dust-rich) section and volcanic (tephra) layer, in m
CORES = {
    "particles": ("A", (0, 100), (40, 65), (28.2, 28.7)),
    "particles-core-b": ("B", (0, 60), (22, 36), (15.4, 15.8)),
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("demo")
    return out, generate_demo_data(out, seed=0)


@pytest.fixture(scope="module")
def selections(demo: tuple[Path, dict[str, int]]) -> pd.DataFrame:
    table = pd.read_csv(demo[0] / "audio" / "selections.txt", sep="\t")
    table["duration"] = table["End Time (s)"] - table["Begin Time (s)"]
    return table


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def test_same_seed_gives_identical_files_and_another_seed_differs(
    demo: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    root, counts = demo
    assert generate_demo_data(tmp_path / "again", seed=0) == counts
    generate_demo_data(tmp_path / "other", seed=1)
    reference = _hashes(root)
    assert _hashes(tmp_path / "again") == reference
    other = _hashes(tmp_path / "other")
    assert other.keys() == reference.keys()
    data = [name for name in reference if name.endswith((".wav", ".png"))]
    assert len(data) == 5 + 480 + 140 + 6 and all(other[name] != reference[name] for name in data)
    tables = [name for name in reference if name.endswith("metadata.csv")]
    assert len(tables) == 3 and all(other[name] != reference[name] for name in tables)


def test_more_spawned_generators_leave_the_first_three_as_they_were() -> None:
    """The reference data (audio, particles, fields) keep their generators when new parts spawn more."""
    before, after = np.random.default_rng(0).spawn(3), np.random.default_rng(0).spawn(6)
    for old, new in zip(before, after, strict=False):
        np.testing.assert_array_equal(old.integers(0, 2**63, 8), new.integers(0, 2**63, 8))


def test_reference_particles_come_from_the_second_spawned_generator(
    demo: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    """The reference particles still get the generator they got before (child 1 of spawn(3)), so their first
    images equal the old code path's."""
    write_particles(tmp_path, np.random.default_rng(0).spawn(3)[1], {"dust": 3})
    written = _hashes(tmp_path)
    assert written.keys() == {"dust_0000.png", "dust_0001.png", "dust_0002.png", "labels.csv"}
    reference = _hashes(demo[0] / "images" / "particles")
    assert all(reference[name] == digest for name, digest in written.items() if name.endswith(".png"))


def test_returned_counts_match_tables(demo: tuple[Path, dict[str, int]], selections: pd.DataFrame) -> None:
    root, counts = demo
    assert counts == {
        "calls": len(selections),
        "particles": len(pd.read_csv(root / "images" / "particles" / "labels.csv")),
        "field_particles": len(pd.read_csv(root / "images" / "fields" / "boxes.csv")),
        "particles_core_b": len(pd.read_csv(root / "images" / "particles-core-b" / "labels.csv")),
    }


def test_five_one_minute_mono_16_bit_recordings(demo: tuple[Path, dict[str, int]]) -> None:
    wavs = sorted((demo[0] / "audio").glob("*.wav"))
    assert [w.name for w in wavs] == [f"rec_{k:02d}.wav" for k in range(5)]
    for wav in wavs:
        info = sf.info(wav)
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (22050, 1, "PCM_16", 60 * 22050)


def test_selection_table_follows_raven_multi_file_convention(demo: tuple[Path, dict[str, int]]) -> None:
    text = pd.read_csv(demo[0] / "audio" / "selections.txt", sep="\t", dtype=str)
    assert list(text.columns) == RAVEN_COLUMNS
    for column in ["Begin Time (s)", "End Time (s)", "File Offset (s)"]:
        assert text[column].map(lambda v: re.fullmatch(r"\d+\.\d{4}", v) is not None).all(), column
    table = text.astype({"Selection": int, "Channel": int, "Begin Time (s)": float, "File Offset (s)": float})
    assert table["Selection"].tolist() == list(range(1, len(table) + 1))
    assert (table["View"] == "Spectrogram 1").all() and (table["Channel"] == 1).all()
    file_index = table["Begin File"].str.extract(r"rec_(\d\d)\.wav", expand=False).astype(int)
    np.testing.assert_allclose(table["Begin Time (s)"], 60 * file_index + table["File Offset (s)"], atol=2e-4)
    assert table["Begin Time (s)"].is_monotonic_increasing  # time order over files


def test_calls_are_plentiful_short_inside_their_files_and_apart(selections: pd.DataFrame) -> None:
    counts = selections["call_type"].value_counts()
    assert set(counts.index) == CALL_TYPES and counts.min() >= 30, counts.to_dict()
    assert selections.groupby("Begin File").size().between(45, 60).all()
    assert (selections["duration"] > 0.05).all() and (selections["duration"] <= 1.5).all()
    offsets = selections["File Offset (s)"]
    assert (offsets >= 0).all() and (offsets + selections["duration"] <= 60).all()
    for _, calls in selections.groupby("Begin File"):
        gaps = calls["Begin Time (s)"].to_numpy()[1:] - calls["End Time (s)"].to_numpy()[:-1]
        assert gaps.min() >= 0.25 - 2e-4
    low, high = selections["Low Freq (Hz)"], selections["High Freq (Hz)"]
    assert (low > 0).all() and (low < high).all() and (high <= 11025).all()


def test_call_types_differ_as_described(selections: pd.DataFrame) -> None:
    median = selections.groupby("call_type")[["duration", "Low Freq (Hz)"]].median()
    assert median.loc["soft_snort", "duration"] < median.loc["snort", "duration"]
    assert median.loc["snort", "duration"] < median.loc["squeal", "duration"]
    assert median.loc["squeal", "duration"] < median.loc["whinny", "duration"]
    assert median.loc["whinny", "Low Freq (Hz)"] < median.loc["squeal", "Low Freq (Hz)"]


def test_each_call_is_louder_than_the_background_just_before_it(
    demo: tuple[Path, dict[str, int]], selections: pd.DataFrame
) -> None:
    ratios = []
    for name, calls in selections.groupby("Begin File"):
        audio, rate = sf.read(demo[0] / "audio" / name)
        for onset, duration in zip(calls["File Offset (s)"], calls["duration"], strict=True):
            start, stop = int(onset * rate), int((onset + duration) * rate)
            ratios.append(_rms(audio[start:stop]) / _rms(audio[start - int(0.2 * rate) : start]))
    ratios = np.array(ratios)
    assert (ratios > 1).all(), f"{(ratios <= 1).sum()} calls are not louder than the 0.2 s before them"
    assert np.median(ratios) > 3  # typical SNR near 15-20 dB, the faintest calls close to the noise


def test_particle_labels_point_at_existing_images_of_four_classes(demo: tuple[Path, dict[str, int]]) -> None:
    folder = demo[0] / "images" / "particles"
    labels = pd.read_csv(folder / "labels.csv")
    assert list(labels.columns) == ["file", "label"]
    counts = labels["label"].value_counts()
    assert set(counts.index) == PARTICLE_TYPES and counts.min() >= 100, counts.to_dict()
    assert labels["file"].is_unique and all((folder / f).is_file() for f in labels["file"])
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(labels["file"])


def test_single_particles_are_dark_on_bright_and_crops_follow_size(demo: tuple[Path, dict[str, int]]) -> None:
    folder = demo[0] / "images" / "particles"
    labels = pd.read_csv(folder / "labels.csv")
    sizes: dict[str, list[int]] = {label: [] for label in PARTICLE_TYPES}
    for name, label in zip(labels["file"], labels["label"], strict=True):
        image = io.imread(folder / name)
        assert image.dtype == np.uint8 and image.ndim == 2, name
        border = np.concatenate([image[:2], image[-2:], image[:, :2].T, image[:, -2:].T], axis=None)
        assert image[2:-2, 2:-2].mean() < border.mean(), name
        assert image.min() < np.median(border) - 20, name  # the particle stands out from the noise
        assert np.median(border) > 150, name  # bright background
        sizes[label].append(max(image.shape))
    median = {label: np.median(s) for label, s in sizes.items()}
    assert median["dust"] < median["tephra"] < median["fibre"]
    assert median["dust"] < median["pollen"] < median["fibre"]


def test_field_boxes_are_inside_apart_and_darker_than_the_background(
    demo: tuple[Path, dict[str, int]],
) -> None:
    folder = demo[0] / "images" / "fields"
    boxes = pd.read_csv(folder / "boxes.csv")
    assert list(boxes.columns) == ["image", "label", "xmin", "ymin", "xmax", "ymax"]
    assert sorted(boxes["image"].unique()) == [f"field_{k:02d}.png" for k in range(6)]
    assert set(boxes["label"]) == PARTICLE_TYPES
    for name, group in boxes.groupby("image"):
        image = io.imread(folder / name)
        assert image.shape == (768, 1024) and image.dtype == np.uint8
        assert 25 <= len(group) <= 35
        assert (group["xmin"] >= 0).all() and (group["ymin"] >= 0).all()
        assert (group["xmax"] <= 1024).all() and (group["ymax"] <= 768).all()
        assert (group["xmin"] < group["xmax"]).all() and (group["ymin"] < group["ymax"]).all()
        inside = np.zeros(image.shape, dtype=int)
        for x0, y0, x1, y1 in group[["xmin", "ymin", "xmax", "ymax"]].itertuples(index=False):
            inside[y0:y1, x0:x1] += 1
            box = image[y0:y1, x0:x1]
            ring = image[max(y0 - 3, 0) : y1 + 3, max(x0 - 3, 0) : x1 + 3]
            ring_mean = (ring.sum() - box.sum(dtype=float)) / (ring.size - box.size)
            assert box.mean() < ring_mean, (name, x0, y0)
        assert inside.max() == 1, f"{name}: boxes overlap"
        assert image[inside == 1].mean() < image[inside == 0].mean() - 10


def test_recording_metadata_gives_individual_day_and_site_of_every_recording(
    demo: tuple[Path, dict[str, int]],
) -> None:
    folder = demo[0] / "audio"
    meta = pd.read_csv(folder / "metadata.csv", dtype=str)
    assert list(meta.columns) == ["file", "individual", "day", "site"]
    assert meta["file"].tolist() == sorted(p.name for p in folder.glob("*.wav"))
    assert set(meta["individual"]) == {"A", "B", "C"} and meta["site"].nunique() == 2
    days = [date.fromisoformat(day) for day in meta["day"]]
    assert days == sorted(days) and (days[-1] - days[0]).days < 14


@pytest.mark.parametrize("folder", CORES)
def test_particle_metadata_gives_core_and_depth_of_every_image_once(
    demo: tuple[Path, dict[str, int]], folder: str
) -> None:
    core, (top, bottom), _, _ = CORES[folder]
    labels = pd.read_csv(demo[0] / "images" / folder / "labels.csv")
    meta = pd.read_csv(demo[0] / "images" / folder / "metadata.csv")
    assert list(meta.columns) == ["file", "core", "depth_m"]
    assert meta["file"].is_unique and meta["file"].tolist() == labels["file"].tolist()
    assert (meta["core"] == core).all()
    assert meta["depth_m"].between(top, bottom).all() and meta["depth_m"].max() - meta["depth_m"].min() > 0.9 * bottom


@pytest.mark.parametrize("folder", CORES)
def test_class_mix_changes_with_depth_like_an_ice_core(demo: tuple[Path, dict[str, int]], folder: str) -> None:
    """Dust dominates the glacial section and is rare elsewhere; most tephra lies in one thin ash layer."""
    _, _, glacial, volcanic = CORES[folder]
    table = pd.read_csv(demo[0] / "images" / folder / "labels.csv").merge(
        pd.read_csv(demo[0] / "images" / folder / "metadata.csv"), on="file", validate="one_to_one"
    )
    dust = table["label"] == "dust"
    in_glacial = table["depth_m"].between(*glacial)
    assert dust[in_glacial].mean() > 0.5 and dust[~in_glacial].mean() < 0.1
    tephra = table.loc[table["label"] == "tephra", "depth_m"]
    assert tephra.between(*volcanic).mean() > 0.8
    for label in PARTICLE_TYPES - {"dust", "tephra"}:  # the other classes are spread over the whole core
        depths = table.loc[table["label"] == label, "depth_m"]
        assert depths.quantile(0.9) - depths.quantile(0.1) > 0.6 * table["depth_m"].max(), label


def test_core_b_holds_the_reference_classes_and_novel_bubbles(demo: tuple[Path, dict[str, int]]) -> None:
    folder = demo[0] / "images" / "particles-core-b"
    labels = pd.read_csv(folder / "labels.csv")
    assert list(labels.columns) == ["file", "label"]
    assert labels["label"].value_counts().to_dict() == {**dict.fromkeys(PARTICLE_TYPES, 30), "bubble": 20}
    assert "bubble" not in set(pd.read_csv(demo[0] / "images" / "particles" / "labels.csv")["label"])
    assert labels["file"].is_unique and sorted(p.name for p in folder.glob("*.png")) == sorted(labels["file"])
    assert all(
        re.fullmatch(rf"{label}_\d{{4}}\.png", f) for f, label in zip(labels["file"], labels["label"], strict=True)
    )


def test_bubbles_are_dark_rings_with_a_centre_brighter_than_the_background(
    demo: tuple[Path, dict[str, int]],
) -> None:
    folder = demo[0] / "images" / "particles-core-b"
    labels = pd.read_csv(folder / "labels.csv")
    brighter = {}
    for name, label in zip(labels["file"], labels["label"], strict=True):
        image = io.imread(folder / name).astype(float)
        background = np.median(np.concatenate([image[:2], image[-2:], image[:, :2].T, image[:, -2:].T], axis=None))
        rows, cols = np.nonzero(image < background - 20)  # the dark parts of the particle
        assert len(rows) > 0, name
        centre = image[(rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2]
        brighter[name] = (label, centre > background)
    assert all(bright for label, bright in brighter.values() if label == "bubble")
    assert not any(bright for label, bright in brighter.values() if label == "pollen")  # pollen: dark centre
