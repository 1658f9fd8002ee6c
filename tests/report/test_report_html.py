"""HTML report: complete, self-contained, escaped, and faithful to the tables it is built from."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from matplotlib.image import imread
from PIL import Image

from quagga.params import ReportParams
from quagga.report import build_report
from quagga.report.html import OPTIONAL_SECTIONS, SECTIONS, found_settings, refined_text, subsample_per_cluster
from quagga.tables import write_json, write_table
from quagga.tiles.store import Skipped, TileItem, TileStore, write_store

N = 60
HOSTILE_LABEL = "<script>alert(1)</script>"
HOSTILE_FILE = '"><img src=x onerror=alert(2)>.wav'
LABELS = ["trill", "chirp", HOSTILE_LABEL]
METRICS = {
    "homogeneity": 0.8123,
    "completeness": 0.7456,
    "v_measure": 0.7775,
    "ari": 0.6543,
    "ami": 0.7001,
    "noise_fraction": 0.1,
    "n_clusters": 3,
    "n_labels": 3,
    "n_items": N,
    "n_unlabelled": 6,
    "nonnoise_v_measure": 0.9012,
    "contingency": {
        "labels": LABELS,
        "clusters": [-1, 0, 1, 2],
        "counts": [[2, 16, 0, 0], [2, 0, 16, 0], [2, 0, 0, 16]],
    },
    "best_cluster_per_label": [{"label": "chirp", "cluster": 1, "n": 3, "purity": 0.75, "recall": 1.0}],
    "intervals": {"v_measure": [0.7012, 0.8534]},
    "evaluate_params": {"bootstrap": 200, "mislabelled_min_probability": 0.9, "mislabelled_min_purity": 0.8},
    "n_likely_mislabelled": 1,
    "likely_mislabelled": [
        {"item_id": "item001", "label": "chirp", "cluster": 1, "cluster_label": HOSTILE_LABEL,
         "cluster_purity": 0.875, "probability": 0.96},
    ],
    "few_label_curve": [
        {"features": f, "classifier": c, "fraction": fr, "n_train": 3, "accuracy": 0.8,
         "accuracy_sd": 0.1, "balanced_accuracy": 0.7 + 0.1 * fr, "balanced_accuracy_sd": 0.05}
        for f in ("latents", "pixels_pca") for c in ("logistic", "knn") for fr in (0.05, 0.5)
    ],
}


def _make_inputs(root: Path, modality: str = "audio") -> dict[str, Any]:
    """A 60-tile store with its latents, embedding, clusters, metrics, examples and training log."""
    rng = np.random.default_rng(0)
    ids = [f"item{i:03d}" for i in range(N)]
    truth = np.arange(N) % 3
    labels: list[str | None] = [LABELS[t] for t in truth]
    for i in range(0, N, 10):
        labels[i] = None  # unlabelled items
    items: list[TileItem | Skipped] = []
    for i, item_id in enumerate(ids):
        tile = np.clip(rng.random((32, 32)) * 0.3 + 0.2 * truth[i], 0, 1)
        source = HOSTILE_FILE if i == 7 else f"rec{i % 4}.wav"
        onset = 0.1 + 0.4 * (i // 4)
        meta = {"label": labels[i], "source": source, "onset_s": onset, "offset_s": onset + 0.2}
        items.append(TileItem(item_id, tile, meta))
    items.append(Skipped(HOSTILE_FILE, "row 99", "cannot read audio"))
    items.append(Skipped("broken.wav", "row 100", "call shorter than one frame"))
    write_store(root / "tiles", items, {"n_fft": 512, "hop_length": 64}, modality)
    (root / "audio").mkdir()
    for k in range(4):  # 7 s recordings: a 1 kHz tone, so every call has sound
        seconds = np.arange(7 * 8000) / 8000
        sf.write(root / "audio" / f"rec{k}.wav", 0.3 * np.sin(2 * np.pi * 1000 * seconds), 8000)

    cluster = truth.copy()
    cluster[::9] = -1  # some noise
    centres = np.array([[0, 0], [5, 5], [-5, 5]])
    xy = centres[truth] + rng.normal(size=(N, 2))
    z = rng.normal(size=(N, 4))
    latents = pd.DataFrame(
        {
            "item_id": ids,
            **{f"z_{k}": z[:, k] for k in range(4)},
            "recon_error": rng.random(N),
            "neg_elbo": rng.random(N) + 1,
        }
    )
    write_table(latents, root / "latents.parquet")
    write_table(
        pd.DataFrame({"item_id": ids, "x": xy[:, 0], "y": xy[:, 1], "u_0": xy[:, 0], "u_1": xy[:, 1]}),
        root / "embedding.parquet",
    )
    write_table(
        pd.DataFrame(
            {"item_id": ids, "cluster": cluster, "probability": rng.random(N), "outlier_score": rng.random(N)}
        ),
        root / "clusters.parquet",
    )
    write_json(METRICS, root / "metrics.json")
    tiles = rng.random((4, 32, 32)).astype(np.float32)
    np.savez(
        root / "reconstructions.npz",
        item_id=np.array(ids[:4]),
        input=tiles,
        recon=tiles * 0.9,
        prior_samples=tiles[::-1],
        interpolation=np.linspace(0, 1, 6)[:, None, None] * np.ones((6, 32, 32)),
    )
    # Lightning's CSVLogger: train and val values on separate rows, the rest NaN
    curve = pd.DataFrame(
        {
            "epoch": [0, 0, 1, 1, 2, 2],
            "step": [9, 9, 19, 19, 29, 29],
            "train_loss": [3.0, np.nan, 2.0, np.nan, 1.5, np.nan],
            "val_loss": [np.nan, 3.2, np.nan, 2.4, np.nan, 1.9],
        }
    )
    curve.to_csv(root / "metrics.csv", index=False)
    return {
        "dataset": "demo <b>birds</b>",
        "tiles_dir": root / "tiles",
        "latents_path": root / "latents.parquet",
        "embedding_path": root / "embedding.parquet",
        "clusters_path": root / "clusters.parquet",
        "metrics_path": root / "metrics.json",
        "examples_path": root / "reconstructions.npz",
        "training_curve_path": root / "metrics.csv",
        "params": ReportParams(n_examples=5, max_points=10000),
        "out_dir": root / "report",
        "run_info": {"seed": 0, "config": "config/<evil>.yaml", "train": {"latent_dim": 4, "beta": 1.0}},
        "source_root": root / "audio" if modality == "audio" else None,
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("report")
    path = build_report(**_make_inputs(root))
    return path, path.read_text(encoding="utf-8")


def _section(page: str, sid: str) -> str:
    match = re.search(rf'<section id="{sid}">(.*?)</section>', page, re.S)
    assert match, sid
    return match.group(1)


def test_page_is_complete_and_self_contained(report: tuple[Path, str]) -> None:
    path, page = report
    assert path.name == "index.html" and path.is_file()
    assert not list(path.parent.glob(".*tmp*"))  # atomic write left no temporary file
    for sid, title in SECTIONS:  # a section shown only with a reference or metadata is left out
        assert (f'<section id="{sid}"><h2>{title}</h2>' in page) == (sid not in OPTIONAL_SECTIONS)
        assert (f'<a href="#{sid}">' in page) == (sid not in OPTIONAL_SECTIONS)
    scripts = re.findall(r"<script([^>]*)>", page, re.I)
    assert scripts and not any("src" in attrs for attrs in scripts)  # Bokeh's code inline, nothing fetched
    markup = re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.S | re.I)
    assert "http://" not in markup and "https://" not in markup and "<link" not in markup
    refs = re.findall(r'\b(?:src|href)="([^"]*)"', markup)
    srcs = re.findall(r'\bsrc="([^"]*)"', markup)
    embedded = ("data:image/png;base64,", "data:audio/ogg;base64,")
    assert all(r.startswith((*embedded, "#")) for r in refs)
    assert all(s.startswith(embedded) for s in srcs)
    # static scatter, heatmap, mislabelled tile + clip, few-label curve, contact sheet, 3 cluster rows with
    # a clip each, 3 example strips, 5 anomaly tiles with a clip each, training curves
    assert len(srcs) == 1 + 1 + 2 + 1 + 1 + 3 * 2 + 3 + 5 * 2 + 1
    # the map's data: a thumbnail per point and a sound clip per point whose recording exists (item 7's
    # is missing), the mislabelled item's clip, one per cluster and one per anomaly
    assert page.count("data:image/jpeg;base64,") == N
    assert page.count("data:audio/ogg;base64,") == N - 1 + 1 + 3 + 5


def test_hostile_strings_are_escaped(report: tuple[Path, str]) -> None:
    _, page = report
    assert HOSTILE_LABEL not in page and "<img src=x" not in page and "<evil>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;.wav" in _section(page, "skipped")
    assert "config/&lt;evil&gt;.yaml" in _section(page, "summary")
    assert "<title>quagga report: demo &lt;b&gt;birds&lt;/b&gt;</title>" in page


def test_summary_metrics_and_skipped_tables(report: tuple[Path, str]) -> None:
    _, page = report
    summary = _section(page, "summary")
    for cell in (
        "<td>audio</td>",
        "<td>60</td>",
        "<td>train.latent_dim</td>",
        "<td>tiles.n_fft</td>",
        "<td>512</td>",
    ):
        assert cell in summary
    assert re.search(r"<td>skipped inputs</td><td>2</td>", summary)
    metrics = _section(page, "metrics")
    for key in ("homogeneity", "completeness", "v_measure", "ari", "ami", "nonnoise_v_measure"):
        value = METRICS[key]
        assert isinstance(value, float)
        assert f"<td>{key}</td><td class=num>{value:.4f}</td>" in metrics
    assert "<td>n_clusters</td><td class=num>3</td>" in metrics and "contingency" not in metrics
    best = _section(page, "contingency")
    assert "<td>chirp</td><td class=num>3</td><td>1</td><td class=num>0.75</td><td class=num>1.00</td>" in best
    skipped = _section(page, "skipped")
    assert skipped.count("<tr>") == 3  # header + the two skipped inputs
    assert "<td>broken.wav</td><td>row 100</td><td>call shorter than one frame</td>" in skipped
    assert "<td>row 99</td><td>cannot read audio</td>" in skipped


def test_intervals_mislabelled_and_few_label_sections(report: tuple[Path, str]) -> None:
    _, page = report
    metrics = _section(page, "metrics")
    assert "<td>v_measure</td><td class=num>0.7775</td><td>0.701 to 0.853</td>" in metrics
    assert "200 resamples" in metrics
    flagged = _section(page, "mislabelled")
    assert re.findall(r"<td>(item\d{3})</td>", flagged) == ["item001"]
    assert flagged.count('<audio controls preload="none" src="data:audio/ogg;base64,') == 1
    assert "<td>chirp</td>" in flagged and "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in flagged
    assert "1 items sit firmly (HDBSCAN membership &gt;= 0.9)" in flagged
    few = _section(page, "few_labels")
    assert few.count("<img ") == 1 and "5 %: 0.70, 50 %: 0.75" in few


def test_gallery_and_anomalies_follow_the_tables(report: tuple[Path, str]) -> None:
    path, page = report
    gallery = _section(page, "gallery")
    assert gallery.count('alt="cluster ') == 3
    assert gallery.count("<audio controls") == 3 and "most typical call" in gallery
    anomalies = _section(page, "anomalies")
    latents = pd.read_parquet(path.parent.parent / "latents.parquet")
    worst = latents.nlargest(5, "recon_error")["item_id"].tolist()
    shown = re.findall(r"<td>(item\d{3})</td>", anomalies)
    assert shown == worst
    assert "All 60 points shown" in _section(page, "embedding")


def test_contact_sheet_per_label_is_written_next_to_the_page(report: tuple[Path, str]) -> None:
    path, page = report
    sheet = imread(path.parent / "contact_sheet.png")
    assert sheet.shape[0] > 3 * 32 and sheet.shape[1] > 5 * 32  # 3 labels: rows of n_examples (5) tiles of 32 px
    section = _section(page, "labels")
    assert "contact_sheet.png" in section and section.count("<img") == 1


def test_subsampling_note_and_missing_optional_inputs(tmp_path: Path) -> None:
    kwargs = _make_inputs(tmp_path, modality="image")
    (tmp_path / "empty.csv").write_text("")  # a training log cut off before its header
    kwargs.update(
        params=ReportParams(n_examples=3, max_points=20),
        examples_path=None,
        training_curve_path=tmp_path / "empty.csv",
    )
    write_json({"v_measure": 0.5}, kwargs["metrics_path"])  # no contingency: it is rebuilt from the tables
    page = build_report(**kwargs).read_text(encoding="utf-8")
    note = re.search(r"Showing (\d+) of 60 points: subsampled per cluster \(max_points = 20", page)
    assert note and int(note.group(1)) <= 20 + 4
    assert "No reconstructions or samples were written" in _section(page, "examples")
    assert "empty.csv holds no per-epoch values" in _section(page, "training")
    assert "<img" in _section(page, "contingency")
    assert "<td>image</td>" in _section(page, "summary")


def test_subsample_per_cluster_keeps_every_cluster() -> None:
    items = pd.DataFrame({"cluster": [0] * 90 + [1] * 9 + [-1] * 1, "v": range(100)})
    sub = subsample_per_cluster(items, 10, seed=3)
    assert set(sub["cluster"]) == {0, 1, -1}
    assert len(sub) <= 10 + 3 and (sub["cluster"] == 0).sum() == 9
    assert list(sub.index) == sorted(sub.index)
    pd.testing.assert_frame_equal(sub, subsample_per_cluster(items, 10, seed=3))
    assert subsample_per_cluster(items, 100) is items


def test_store_without_labels_and_unmatched_items(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    kwargs = _make_inputs(tmp_path)
    ids = [f"i{k}" for k in range(8)]
    items = [TileItem(i, np.full((32, 32), 0.5), {"source": "a.wav"}) for i in ids]
    write_store(kwargs["tiles_dir"], items, {"n_fft": 512}, "audio")  # no label column at all
    write_table(pd.DataFrame({"item_id": ids, "recon_error": np.arange(8.0)}), kwargs["latents_path"])
    write_table(pd.DataFrame({"item_id": ids[:6], "x": range(6), "y": range(6)}), kwargs["embedding_path"])
    clusters = pd.DataFrame({"item_id": ids, "cluster": [0, 0, 0, -1, 1, 1, 1, 1], "probability": 1.0})
    write_table(clusters, kwargs["clusters_path"])
    write_json({}, kwargs["metrics_path"])
    page = build_report(**kwargs).read_text(encoding="utf-8")
    assert "2 of 8 tiles have no embedding or cluster" in caplog.text
    assert re.search(r"<td>items on the map</td><td>6</td>", page)
    assert "No label agreement metrics were computed" in _section(page, "metrics")
    assert "No labelled items" in _section(page, "contingency")
    assert "No item has a human label" in _section(page, "labels")
    assert not (kwargs["out_dir"] / "contact_sheet.png").exists()
    assert re.findall(r"<td>(i\d)</td>", _section(page, "anomalies")) == ["i5", "i4", "i3", "i2", "i1"]


def with_predictions(kwargs: dict[str, Any], root: Path) -> dict[str, Any]:
    """``kwargs`` of _make_inputs plus the evaluate stage's predicted labels and corrections summary: every
    fourth item labelled for the classifier but none in cluster 2, probabilities falling with the item number
    (item059 least sure)."""
    ids = [f"item{i:03d}" for i in range(N)]
    truth = [LABELS[i % 3] for i in range(N)]
    predicted = pd.DataFrame({
        "item_id": ids, "label": [None if i % 10 == 0 else truth[i] for i in range(N)],
        "predicted_label": [LABELS[(i + (i == 58)) % 3] for i in range(N)],
        "probability": np.linspace(0.99, 0.3, N).round(4), "labelled": [i % 4 == 0 and i % 3 != 2 for i in range(N)],
    })
    predicted.loc[0, "label"] = "corrected"  # as a labels_corrections file left it
    predicted.to_csv(root / "predicted_labels.csv", index=False)
    metrics = {**METRICS, "propagation": {
        "classifier": "label_spreading", "features": "embedding",
        "cv_balanced_accuracy": {"label_spreading on embedding": 0.95, "knn on latents": 0.9},
        "n_labelled": 20, "n_predicted": N, "keep_percent": 30, "hidden": {"n": 34, "accuracy": 0.9,
                                                                            "balanced_accuracy": 0.88}}}
    metrics["corrections"] = {
        "file": "fix <b>.csv", "n_rows": 4, "n_changed": 1, "n_added": 0, "n_unchanged": 1, "n_problems": 2,
        "n_unknown_ids": 1, "before": {**{k: METRICS[k] for k in ("n_labels", "n_unlabelled")}, "v_measure": 0.7,
                                       "homogeneity": 0.8, "completeness": 0.6, "ari": 0.5, "ami": 0.6},
        "problems": [{"line": "3", "item_id": "item005", "label": "", "problem": "empty label: kept"},
                     {"line": "", "item_id": HOSTILE_LABEL, "label": "x", "problem": "item_id not in the tile store"}],
    }
    write_json(metrics, root / "metrics.json")
    params = ReportParams(n_examples=5, label_next=4)
    return {**kwargs, "predicted_path": root / "predicted_labels.csv", "params": params}


def label_next_ids(root: Path) -> list[str]:
    """What the label-next list of ``with_predictions`` holds: cluster 2's most typical item, then the least
    certain of the items not labelled."""
    clusters = pd.read_parquet(root / "clusters.parquet")
    typical = clusters[clusters["cluster"] == 2].sort_values("probability")["item_id"].iloc[-1]
    unlabelled = [f"item{i:03d}" for i in range(N - 1, -1, -1) if not (i % 4 == 0 and i % 3 != 2)]
    return [typical, *[i for i in unlabelled if i != typical][:3]]


@pytest.fixture(scope="module")
def predicted_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    root = tmp_path_factory.mktemp("predicted")
    return build_report(**with_predictions(_make_inputs(root), root)).read_text(encoding="utf-8"), label_next_ids(root)


def test_summary_comes_first_and_parameters_last_folded(predicted_report: tuple[str, list[str]]) -> None:
    predicted_report, _ = predicted_report
    sections = re.findall(r'<section id="(\w+)">', predicted_report)
    assert sections[0] == "overview" and sections[-1] == "summary"
    assert sections.index("embedding") < sections.index("metrics") < sections.index("mislabelled") \
        < sections.index("label_next") < sections.index("gallery")
    overview = _section(predicted_report, "overview")
    for fact in ("<td>items on the map</td><td>60</td>", "<td>labelled items</td><td>55 in 4 labels</td>",
                 "<td>clusters</td><td>3</td>", "<td>noise items</td><td>7 (11.7%)</td>",
                 "<td>V-measure against the labels</td><td>0.777 (95 % interval 0.701 to 0.853)</td>",
                 "<td>skipped inputs</td><td>2</td>", "<td>labels corrected</td><td>1 (V-measure 0.700 before"):
        assert fact in overview, fact
    assert "label spreading on embedding from 20 labelled items (cross-validated balanced accuracy 0.950); with 30 %" \
           " of the labels kept, balanced accuracy 0.880 on the 34 hidden" in overview
    assert _section(predicted_report, "summary").startswith("<h2>Run details</h2>\n<details><summary>")


def test_label_next_lists_an_unlabelled_cluster_then_the_least_certain(predicted_report: tuple[str, list[str]]) -> None:
    predicted_report, expected = predicted_report
    section = _section(predicted_report, "label_next")
    assert re.findall(r"<td>(item\d{3})</td>", section) == expected
    assert re.findall(r"<td>(a cluster without labels|least certain)</td>", section) == [
        "a cluster without labels", "least certain", "least certain", "least certain"]
    assert section.count('<audio controls preload="none" src="data:audio/ogg;base64,') == 4
    assert section.count('<img class="tiles"') == 4
    data = re.search(r'<script type="application/json" id="quagga-label-next-data">(.*?)</script>', section, re.S)
    rows = json.loads(data.group(1))
    assert [r[0] for r in rows] == expected
    assert rows[2] == ["item058", "chirp", HOSTILE_LABEL, "0.3117", 1, "rec2.wav"]  # item_id,label first
    assert rows[1][1] == HOSTILE_LABEL  # data, as it was
    assert "\\u003cscript\\u003e" in data.group(1)
    assert HOSTILE_LABEL not in predicted_report  # the JSON escapes < and >, so no tag closes the script


def test_corrections_section_shows_counts_agreement_before_after_and_problems(
    predicted_report: tuple[str, list[str]],
) -> None:
    predicted_report, _ = predicted_report
    section = _section(predicted_report, "corrections")
    assert "lasso" in section and "labels_corrections: path/to/file.csv" in section
    assert "1 labels corrected (0 of them given to items that had none) from fix &lt;b&gt;.csv (4 rows" in section
    assert "<td>v_measure</td><td class=num>0.7000</td><td class=num>0.7775</td>" in section
    assert "<td>3</td><td>item005</td><td></td><td>empty label: kept</td>" in section
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td><td>x</td><td>item_id not in the tile store</td>" in section
    assert '"corrected"' in _section(predicted_report, "embedding")  # the map shows the corrected label


def test_the_template_is_package_data() -> None:
    """An installed (not editable) quagga finds its page template: pyproject ships templates/*.j2."""
    import fnmatch
    import importlib.resources
    import tomllib

    from quagga.report.html import TEMPLATE

    assert (importlib.resources.files("quagga.report") / "templates" / TEMPLATE).is_file()
    shipped = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert any(fnmatch.fnmatch(f"templates/{TEMPLATE}", p) for p in shipped["package-data"]["quagga.report"])


# A bright-field colour run: absorbance tiles (a particle absorbing green and blue, i.e. stained red, bright on
# black) and a settings record with one fallback, as the tiles, train and embed stages write them.
TILE_SETTINGS = {
    "channel": {"value": "rgb", "source": "data", "statistic": "the particles' colour varies by 0.210"},
    "normalize.intensity": {"value": "absorbance", "source": "data", "statistic": "bright field: field 0.93"},
    "normalize.gain": {"value": 1.0, "source": "fallback", "statistic": "only 5 particles (< 20): too few"},
    "normalize.scale_mode": {"value": "fixed", "source": "config", "statistic": "set in the config"},
}
TRAIN_SETTINGS = {
    "augment": {"value": "dihedral", "source": "data", "statistic": "images have no up or left"},
    "max_steps": {"value": 1500, "source": "data", "statistic": "100 epochs of 15 steps"},
}
EMBED_SETTINGS = {"morphology": {"value": True, "source": "data", "statistic": "the tile index has 6 features"}}


def _colour_absorbance_run(root: Path) -> dict[str, Any]:
    kwargs = _make_inputs(root, modality="images")
    tile = np.zeros((3, 32, 32))
    tile[1:, 8:24, 8:24] = 0.8  # absorbs green and blue: a red-stained cell on a clear field
    items = [TileItem(f"item{i:03d}", tile, {"label": LABELS[i % 3], "source": "field.png"}) for i in range(N)]
    write_store(kwargs["tiles_dir"], items, {"intensity": "absorbance", "gain": 1.0}, "images",
                meta={"requested_tile_params": {"intensity": "auto", "gain": "auto"}, "settings": TILE_SETTINGS})
    (root / "models").mkdir()
    write_json({"train": {"max_steps": "auto"}, "settings": TRAIN_SETTINGS, "steps": 1234, "epochs": 82},
               root / "models" / "params.json")
    embedding = pd.read_parquet(kwargs["embedding_path"])
    write_table(embedding, kwargs["embedding_path"], {"morphology": True, "settings": EMBED_SETTINGS})
    clusters = pd.read_parquet(kwargs["clusters_path"])
    write_table(clusters, kwargs["clusters_path"], {"selected": {"min_cluster_size": 40}, "noise_assigned": 0.3,
                                                    "other_granularity": {
        "min_cluster_size": 10, "min_samples": None, "cluster_selection_method": "leaf", "dbcv": 0.58,
        "n_clusters": 19, "noise_fraction": 0.01}})
    examples = np.repeat(tile[None], 4, axis=0).astype(np.float32)
    np.savez(kwargs["examples_path"], item_id=np.array(["item000", "item001", "item002", "item003"]),
             input=examples, recon=examples * 0.9, prior_samples=examples, interpolation=examples)
    return kwargs


def _png_pixels(uri: str) -> np.ndarray:
    return imread(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])), format="png")[..., :3]


def _red_stain_on_white(pixels: np.ndarray) -> bool:
    """The absorbance tile as a micrograph: a red particle (1 - [0, 0.8, 0.8]) on a white field."""
    scale = 255 if pixels.dtype == np.uint8 else 1
    red = (pixels[..., 0] > 0.9 * scale) & (pixels[..., 1] < 0.35 * scale) & (pixels[..., 2] < 0.35 * scale)
    dark = pixels.max(axis=-1) < 0.2 * scale  # the unflipped tile: a black field
    return bool(red.any()) and not dark.any()


@pytest.fixture(scope="module")
def colour_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("colour")
    path = build_report(**_colour_absorbance_run(root))
    return path, path.read_text(encoding="utf-8")


def test_settings_found_from_the_data_are_tabled_with_the_fallback_marked(colour_report: tuple[Path, str]) -> None:
    _, page = colour_report
    summary = _section(page, "summary")
    assert "<h3>Settings found from the data</h3>" in summary
    table = summary[summary.index("<h3>Settings found from the data</h3>"):summary.index("<details>")]
    cells = r"<td>([\w.]+)</td><td>([^<]*)</td><td>(\w+)</td><td>([^<]*)</td>"
    rows = re.findall(rf"<tr( class=\"flag\")?>{cells}</tr>", table)
    assert [(key, value, source) for _, key, value, source, _ in rows] == [
        ("images.channel", "rgb", "data"), ("images.normalize.intensity", "absorbance", "data"),
        ("images.normalize.gain", "1", "fallback"), ("images.normalize.scale_mode", "fixed", "config"),
        ("train.augment", "dihedral", "data"), ("train.max_steps", "1500", "data"),
        ("embed.morphology", "True", "data"),
    ]
    assert [key for flag, key, *_ in rows if flag] == ["images.normalize.gain"]  # only the fallback stands out
    assert "<td>only 5 particles (&lt; 20): too few</td>" in table  # the statistic, escaped
    assert '<p class="warn">Not found from the data (too few or unusual items), so a stated default was used: ' \
           "images.normalize.gain." in table
    assert "<td>training steps run</td><td>1234 (82 epochs)</td>" in summary
    overview = _section(page, "overview")
    assert re.search(r'<tr class="flag"><td>settings not found from the data</td><td>1 fell back to a stated '
                     r"default: images.normalize.gain", overview)
    assert "(30.0 % left as noise by the chosen setting were given their most likely cluster" in overview
    assert re.search(r'<tr class="flag"><td>another granularity</td><td>19 clusters are about as valid \(DBCV '
                     r"0.580, min_cluster_size 10, min_samples None, leaf\)", overview)
    assert "(colour), absorbance shown inverted (white field)" in summary


def test_colour_absorbance_tiles_are_drawn_in_colour_as_micrographs(colour_report: tuple[Path, str]) -> None:
    path, page = colour_report
    thumbs = re.findall(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", _section(page, "embedding"))
    assert len(thumbs) == N
    thumb = np.asarray(Image.open(io.BytesIO(base64.b64decode(thumbs[0]))))
    assert thumb.shape == (64, 64, 3) and _red_stain_on_white(thumb)
    assert thumb[0, 0].min() > 230  # the clear field is white, as under the microscope
    gallery = re.findall(r'<img class="tiles" src="([^"]+)"', _section(page, "gallery"))
    examples = re.findall(r'<img class="tiles" src="([^"]+)"', _section(page, "examples"))
    assert len(gallery) == 3 and len(examples) == 3
    for uri in gallery + examples:
        assert _red_stain_on_white(_png_pixels(uri))
    sheet = imread(path.parent / "contact_sheet.png")[..., :3]
    assert (sheet[..., 0] > 0.9).any() and ((sheet[..., 0] > 0.9) & (sheet[..., 1] < 0.35)).sum() > 3 * 5 * 8 * 8


def test_runs_without_settings_records_show_no_settings_table(report: tuple[Path, str]) -> None:
    _, page = report
    assert "Settings found from the data" not in page and 'class="flag"' not in page
    assert "settings not found from the data" not in _section(page, "overview")
    # spectrogram tiles are never inverted
    assert "absorbance shown inverted" not in _section(page, "summary")


def test_found_settings_reads_settings_json_when_the_store_has_none(tmp_path: Path) -> None:
    write_store(tmp_path / "tiles", [TileItem("a", np.zeros((8, 8)))], {"n_fft": 512}, "audio")
    store = TileStore(tmp_path / "tiles")
    assert found_settings(store, {}, None, tmp_path / "settings.json") == []  # an older run: nothing, no error
    (tmp_path / "broken.json").write_text("{not json")
    assert found_settings(store, {}, None, tmp_path / "broken.json") == []
    record = {"value": -80.0, "source": "fallback", "statistic": "no calls found"}
    write_json({"modality": "audio", "choices": {"spectrogram.db_min": record, "junk": 3}}, tmp_path / "settings.json")
    train = {"settings": {"batch_size": {"value": 64, "source": "data", "statistic": "n / 10"}}}
    assert found_settings(store, train, None, tmp_path / "settings.json") == [
        ("audio.spectrogram.db_min", record), ("train.batch_size", train["settings"]["batch_size"])]


def test_the_clusters_split_again_are_named_with_their_sizes_and_validity() -> None:
    node = {"selected": {}, "n_items": 2523, "n_clusters": 7, "dbcv": 0.4038, "noise_assigned": True,
            "refined": {"3": {"selected": {}, "n_items": 286, "n_clusters": 3, "dbcv": 0.517, "noise_assigned": False,
                              "refined": {}}}}
    assert refined_text({"1": node}) == ("cluster 1 (2523 items) into 7 at DBCV 0.40 "
                                         "[cluster 1.3 (286 items) into 3 at DBCV 0.52]")
