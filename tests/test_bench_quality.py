"""bench/quality.py's own logic: which folders it understands, the config it writes, the label-split table."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import quality  # noqa: E402 - bench/ is not a package


def test_layout_tells_audio_from_images(tmp_path: Path) -> None:
    (tmp_path / "annotations.csv").write_text("wav_file,onset_s,offset_s,label\n")
    assert quality.layout(tmp_path) == ("audio", "annotations.csv")
    (tmp_path / "annotations.csv").unlink()
    (tmp_path / "boxes.csv").write_text("image,label,xmin,ymin,xmax,ymax\n")
    assert quality.layout(tmp_path) == ("images", "boxes.csv")
    (tmp_path / "boxes.csv").unlink()
    with pytest.raises(SystemExit, match="no annotations.csv"):
        quality.layout(tmp_path)


def test_build_config_keeps_dataset_settings_and_replaces_paths(tmp_path: Path) -> None:
    data = tmp_path / "mybirds"
    data.mkdir()
    (data / "annotations.csv").write_text("wav_file,onset_s,offset_s,label\n")
    base = tmp_path / "base.yaml"
    base.write_text("seed: 3\ndatasets:\n  other:\n    modality: audio\n    audio:\n      recordings: /elsewhere\n"
                    "      spectrogram: {n_fft: 512}\n    train: {max_epochs: 2}\n")
    config = quality.build_config(data, "mybirds", base, tmp_path / "results")
    dataset = config["datasets"]["mybirds"]
    assert config["seed"] == 3 and config["run_datasets"] == ["mybirds"]
    assert dataset["train"] == {"max_epochs": 2} and dataset["audio"]["spectrogram"] == {"n_fft": 512}
    assert Path(dataset["audio"]["annotations"]).name == "annotations.csv"
    assert (quality.ROOT / dataset["audio"]["recordings"]).resolve() == data.resolve()


def test_label_splits_names_what_tells_clusters_apart() -> None:
    # label "a" comes in two clusters: right after a "b" (1 ms gap), or after an "a" and a 350 ms pause
    rows = [("b", 0.0, 0.05, 0), ("a", 0.051, 0.15, 1), ("a", 0.5, 0.56, 2), ("b", 0.7, 0.75, 0)] * 10
    index = pd.DataFrame(
        [(f"{i}", f"f{i // 4}.wav", lab, on, off) for i, (lab, on, off, _) in enumerate(rows)],
        columns=["item_id", "source", "label", "onset_s", "offset_s"],
    )
    clusters = pd.DataFrame({"item_id": index["item_id"], "cluster": [c for *_, c in rows]})
    splits = {r["cluster"]: r for r in quality.label_splits(index, clusters)}
    assert set(splits) == {1, 2}  # label b sits in one cluster: not a split
    assert splits[1]["previous"] == "b" and splits[1]["gap_ms"] == pytest.approx(1.0)
    assert splits[1]["duration_ms"] == pytest.approx(99.0)
    assert splits[2]["previous"] == "a" and splits[2]["gap_ms"] == pytest.approx(350.0)
    assert splits[1]["n"] == splits[2]["n"] == 10 and splits[1]["previous_share"] == 1.0


def test_stage_figures_sum_the_shards_and_keep_the_largest_memory(tmp_path: Path) -> None:
    import stages  # noqa: PLC0415 - bench/ is not a package

    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for rule, name, s, rss, cpu in (("train", "birds", 100.0, 900.0, 180.0), ("tiles_merge", "birds", 1.0, 50.0, 0.5),
                                    ("tiles_shard/birds", "0", 10.0, 300.0, 9.0),
                                    ("tiles_shard/birds", "1", 12.0, 310.0, 11.0)):
        path = tmp_path / "benchmarks" / rule / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + f"{s}\t0:00:10\t{rss}\t0\t0\t0\t0\t0\t0\t{cpu}\n")
    assert stages.stage_figures(tmp_path, "birds", "train") == {"wall_s": 100.0, "cpu_s": 180.0, "peak_rss_mib": 900.0}
    assert stages.stage_figures(tmp_path, "birds", "tiles") == {"wall_s": 23.0, "cpu_s": 20.5, "peak_rss_mib": 310.0}
    assert stages.stage_figures(tmp_path, "birds", "report") is None
