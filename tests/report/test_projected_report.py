"""The report of a dataset projected onto a reference run, and the Covariates section of a metadata table.

Two small runs: a reference (image tiles, one source file per item, five clusters that change with depth)
reported with its metadata, and a dataset projected onto it (audio calls in two recordings, in two of the
reference's clusters, some novel), with no models folder, reported with the reference and its own metadata.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from quagga.params import ReportParams
from quagga.report import build_report
from quagga.report import covariates as cov
from quagga.report.figures import cluster_colours
from quagga.report.html import PROJECTION_CSV
from quagga.tables import write_json, write_table
from quagga.tiles.store import TileItem, write_store

N_REF = 120  # reference items: slice_000.png ... slice_119.png, 0.5 m apart
N_NEW = 40  # projected items: calls in two recordings


def _section(page: str, sid: str) -> str:
    match = re.search(rf'<section id="{sid}">(.*?)</section>', page, re.S)
    assert match, sid
    return match.group(1)


def _part(section: str, heading: str) -> str:
    """A section's text from ``<h3>heading</h3>`` to the next heading."""
    match = re.search(rf"<h3>{heading}</h3>(.*?)(?=<h3>|$)", section, re.S)
    assert match, heading
    return match.group(1)


def _p_value(text: str) -> float:
    match = re.search(r"p = ([0-9.]+(?:e[+-]?\d+)?)", text)
    assert match, text
    return float(match.group(1))


def _tables(root: Path, ids: list[str], clusters: np.ndarray, extra: dict[str, Any] | None = None) -> None:
    """Latents, embedding (each cluster around its own centre), clusters (+ ``extra`` columns), metrics."""
    rng = np.random.default_rng(len(ids))
    xy = rng.normal(size=(len(ids), 2)) + 6 * np.c_[np.cos(clusters), np.sin(clusters)]
    write_table(pd.DataFrame({"item_id": ids, "z_0": xy[:, 0], "recon_error": rng.random(len(ids))}),
                root / "latents.parquet")
    write_table(pd.DataFrame({"item_id": ids, "x": xy[:, 0], "y": xy[:, 1], "u_0": xy[:, 0]}),
                root / "embedding.parquet")
    write_table(pd.DataFrame({"item_id": ids, "cluster": clusters, "probability": rng.random(len(ids)),
                              "outlier_score": rng.random(len(ids)) * 0.5, **(extra or {})}),
                root / "clusters.parquet")


def _kwargs(root: Path, name: str) -> dict[str, Any]:
    return {"dataset": name, "tiles_dir": root / "tiles", "latents_path": root / "latents.parquet",
            "embedding_path": root / "embedding.parquet", "clusters_path": root / "clusters.parquet",
            "metrics_path": root / "metrics.json", "examples_path": None, "training_curve_path": None,
            "params": ReportParams(n_examples=4), "out_dir": root / "report"}


def reference_clusters() -> np.ndarray:
    """Slices above 30 m hold clusters 0 and 1, deeper ones 2, 3 and 4; every tenth is noise."""
    i = np.arange(N_REF)
    clusters = np.where(i < 60, i % 2, i % 3 + 2)
    clusters[i % 10 == 5] = -1
    return clusters


def _reference_run(root: Path) -> dict[str, Any]:
    """Image tiles, one file each (core/slice_XXX.png), and a metadata sheet: depth (binned), core (depends on
    depth), site (does not), individual (one per item), lab (one value); slices 110 and on have no row."""
    i = np.arange(N_REF)
    ids = [f"s{k:03d}" for k in i]
    sources = [f"core/slice_{k:03d}.png" for k in i]
    write_store(root / "tiles", [TileItem(item, np.full((16, 16), (k % 5) / 5), {"source": src, "label": "dust"})
                                 for k, item, src in zip(i, ids, sources, strict=True)], {}, "images")
    _tables(root, ids, reference_clusters())
    write_json({"v_measure": 0.5}, root / "metrics.json")
    keys = [src if k < 3 else Path(src).name for k, src in zip(i, sources, strict=True)]  # full path, or base name
    meta = pd.DataFrame({"file": keys, "depth_m": i * 0.5, "core": np.where(i < 60, "C1", "C2"),
                         "site": np.where(i % 4 < 2, "north", "south"), "individual": [f"id{k}" for k in i],
                         "lab": "AWI"}).iloc[:110]
    meta.iloc[:, ::-1].to_csv(root / "meta.csv", index=False)  # the file column last: found by its name
    return {**_kwargs(root, "core <A>"), "metadata_path": root / "meta.csv"}


NOVEL = ["n05", "n17", "n30", "n38"]  # projected items far from every reference cluster, least novel first


def _projected_run(root: Path, reference: Path) -> dict[str, Any]:
    """Calls in two recordings placed in the reference's clusters 1 and 3 (and noise), four flagged novel;
    projection.json as the projection writes it; no models folder (nothing was trained)."""
    (root / "audio").mkdir(parents=True)
    for name in ("night.wav", "day.wav"):
        sf.write(root / "audio" / name, 0.3 * np.sin(2 * np.pi * 800 * np.arange(6 * 8000) / 8000), 8000)
    ids = [f"n{k:02d}" for k in range(N_NEW)]
    items = [TileItem(item, np.full((16, 16), 0.5), {"source": "night.wav" if k < 25 else "day.wav",
                                                     "onset_s": 0.1 * k, "offset_s": 0.1 * k + 0.2,
                                                     "label": "trill" if k % 2 else "chirp"})
             for k, item in enumerate(ids)]
    write_store(root / "tiles", items, {"n_fft": 256}, "audio")
    clusters = np.where(np.arange(N_NEW) < 25, 1, 3)
    clusters[[5, 17]] = -1
    novel = np.isin(ids, NOVEL)
    outlier = np.where(novel, 0.0, 0.2)
    outlier[[ids.index(n) for n in NOVEL]] = [0.91, 0.95, 0.97, 0.99]
    _tables(root, ids, clusters)
    latents = pd.read_parquet(root / "latents.parquet")
    latents.loc[[ids.index(n) for n in NOVEL], "recon_error"] = [0.3, 0.4, 0.5, 0.6]
    write_table(latents, root / "latents.parquet")
    novelty = np.where(novel, 0.0, 0.5)
    novelty[[ids.index(n) for n in NOVEL]] = [0.98, 0.985, 0.99, 0.995]
    table = pd.read_parquet(root / "clusters.parquet").assign(outlier_score=outlier, novelty=novelty, novel=novel)
    write_table(table, root / "clusters.parquet")
    write_json({"v_measure": 0.61, "n_items": N_NEW}, root / "metrics.json")
    write_json({"reference": str(reference.resolve()), "reference_dataset": "core <A>",
                "recon_error_threshold": 0.95, "novelty_quantile": 0.975, "n_items": N_NEW, "n_novel": len(NOVEL)},
               root / "projection.json")
    pd.DataFrame({"recording": ["night.wav", "day.wav"], "time": ["night", "day"]}).to_csv(root / "meta.csv",
                                                                                          index=False)
    observers = pd.DataFrame({"observer": np.where(np.arange(len(ids)) % 2, "ana", "ben")}, index=ids)
    return {**_kwargs(root, "new calls"), "source_root": root / "audio", "reference_dir": reference,
            "metadata_path": root / "meta.csv", "table_covariates": observers}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    ref_root = tmp_path_factory.mktemp("reference")
    new_root = tmp_path_factory.mktemp("projected")
    ref = build_report(**_reference_run(ref_root))
    new = build_report(**_projected_run(new_root, ref_root))
    assert not (new_root / "models").exists()
    return {"reference": (ref, ref.read_text(encoding="utf-8")), "projected": (new, new.read_text(encoding="utf-8"))}


def _map_colours(page: str) -> dict[int, set[str]]:
    """Cluster id -> the map's colours of its points, read from the columns of Bokeh's document in the page."""
    clusters = re.search(r'\["cluster",\[(-?\d+(?:,-?\d+)*)\]\]', page)
    colours = re.search(r'\["colour_cluster",\[("#\w+"(?:,"#\w+")*)\]\]', page)
    assert clusters and colours
    out: dict[int, set[str]] = {}
    for k, colour in zip(json.loads(f"[{clusters.group(1)}]"), json.loads(f"[{colours.group(1)}]"), strict=True):
        out.setdefault(k, set()).add(colour)
    return out


def test_a_cluster_has_the_reference_colour_on_the_projected_map(runs: dict[str, tuple[Path, str]]) -> None:
    reference, projected = _map_colours(runs["reference"][1]), _map_colours(runs["projected"][1])
    assert set(reference) == {-1, 0, 1, 2, 3, 4} and set(projected) == {-1, 1, 3}
    for k in (1, 3):
        assert projected[k] == reference[k] == {cluster_colours(range(5))[k]}
    assert len({c for k in reference for c in reference[k]}) == 6  # five clusters and noise, all distinct


def test_projected_map_draws_the_reference_behind(runs: dict[str, tuple[Path, str]]) -> None:
    _, page = runs["projected"]
    embedding = _section(page, "embedding")
    assert f"Light grey behind: {N_REF} of the reference&#x27;s {N_REF} items." in embedding
    assert '"name":"reference"' in embedding  # the grey glyph's points, behind the new ones
    assert len(re.findall(r'"name":"ColumnDataSource".{0,80}"name":"reference"', embedding)) == 1
    assert "Light grey: the reference" in embedding  # the map's hint
    assert '"name":"reference"' not in _section(runs["reference"][1], "embedding")


def test_projected_summary_names_the_reference_and_works_without_models(runs: dict[str, tuple[Path, str]]) -> None:
    path, page = runs["projected"]
    reference = runs["reference"][0].parent.parent.resolve()
    onto = f"<td>projection</td><td>projected onto core &lt;A&gt; ({reference})</td>"
    assert onto in _section(page, "overview") and onto in _section(page, "summary")
    assert "<td>novel items</td><td>4 (10.0%): far from every cluster of the reference</td>" in _section(
        page, "overview")
    assert "No training log was found" in _section(page, "training")
    assert "training steps run" not in page
    assert "0.6100" in _section(page, "metrics")  # the projected data's own agreement with its labels


def test_cluster_counts_reference_and_new_in_a_table_and_csv(runs: dict[str, tuple[Path, str]]) -> None:
    path, page = runs["projected"]
    section = _section(page, "projection")
    counts = pd.read_csv(path.parent / PROJECTION_CSV)
    ref = pd.Series(reference_clusters()).value_counts()
    assert counts["cluster"].tolist() == [0, 1, 2, 3, 4, -1]  # noise last
    assert counts["n_reference"].tolist() == [ref[k] for k in (0, 1, 2, 3, 4, -1)]
    assert counts["n_new"].tolist() == [0, 23, 0, 15, 0, 2] and counts["n_novel"].tolist() == [0, 0, 0, 2, 0, 2]
    np.testing.assert_allclose(counts["share_new"], counts["n_new"] / N_NEW)
    np.testing.assert_allclose(counts["share_reference"], counts["n_reference"] / N_REF)
    assert f'<a href="{PROJECTION_CSV}">' in section
    assert "<tr><td>1</td><td class=num>24</td><td class=num>20.0%</td><td class=num>23</td><td class=num>57.5%" \
           "</td><td class=num>0</td></tr>" in section
    assert "<tr><td>noise</td><td class=num>12</td><td class=num>10.0%</td><td class=num>2</td>" in section


def test_most_novel_items_are_shown_with_tile_and_sound(runs: dict[str, tuple[Path, str]]) -> None:
    _, page = runs["projected"]
    section = _section(page, "projection")
    gallery = section[section.index("<h3>Most novel items</h3>"):]
    assert re.findall(r"<td>(n\d\d)</td>", gallery) == NOVEL[::-1][:4]  # highest novelty first
    assert "4 items are novel, unlike the reference&#x27;s: a reconstruction error above 0.95" \
           " (the reference&#x27;s 97.5th percentile; novelty is that percentile)" in gallery
    assert re.findall(r"<td class=num>(0.9\d+)</td><td class=num>0.9\d0</td>", gallery) == \
        ["0.995", "0.990", "0.985", "0.980"]
    assert re.findall(r"<td class=num>0.9\d+</td><td class=num>0.9\d0</td><td class=num>([0-9.]+)</td>", gallery) \
        == ["0.6", "0.5", "0.4", "0.3"]
    assert gallery.count('<img class="tiles"') == 4
    assert gallery.count('<audio controls preload="none" src="data:audio/ogg;base64,') == 4
    assert "<td class=num>0.990</td>" in gallery and "<td>noise</td>" in gallery


def test_binned_depth_counts_and_shares_are_written_and_linked(runs: dict[str, tuple[Path, str]]) -> None:
    path, page = runs["reference"]
    section = _section(page, "covariates")
    table = pd.read_csv(path.parent / "covariate-depth_m.csv")
    depth = np.arange(110) * 0.5  # the items with a metadata row
    clusters = reference_clusters()[:110]
    counts, edges = np.histogram(depth, bins=10)
    assert table["n_items"].tolist() == counts.tolist()
    np.testing.assert_allclose(table[["lower", "upper"]].to_numpy(), np.c_[edges[:-1], edges[1:]])
    for k in (0, 1, 2, 3, 4):
        assert table[f"n_cluster_{k}"].tolist() == np.histogram(depth[clusters == k], bins=edges)[0].tolist()
    np.testing.assert_allclose(table[[c for c in table if c.startswith("share_")]].sum(axis=1), 1.0)
    assert table.loc[0, "share_cluster_2"] == 0 and table.loc[9, "share_cluster_0"] == 0  # the mix changes
    depth_part = _part(section, "depth_m")
    assert "number, 10 equal-width bins from 0 to 54.5; 10 of 120 items have no value" in depth_part
    assert '<a href="covariate-depth_m.csv">covariate-depth_m.csv</a>' in depth_part
    assert depth_part.count('<img src="data:image/png;base64,') == 1
    assert _p_value(depth_part) < 1e-6


def test_categorical_columns_test_their_composition(runs: dict[str, tuple[Path, str]]) -> None:
    path, page = runs["reference"]
    section = _section(page, "covariates")
    assert _p_value(_part(section, "core")) < 1e-10 and _p_value(_part(section, "site")) > 0.5
    site = pd.read_csv(path.parent / "covariate-site.csv")
    assert site["site"].tolist() == ["north", "south"] and site["n_items"].tolist() == [56, 54]
    assert '<a href="covariate-core.csv">' in section and '<a href="covariate-site.csv">' in section
    hidden = _part(section, "Columns not shown")
    assert "<td>individual</td><td>text</td><td>110 distinct values (more than 30)</td>" in hidden
    assert "<td>lab</td><td>text</td><td>a single value for every item that has one</td>" in hidden
    assert not (path.parent / "covariate-individual.csv").exists()
    assert "<td>core &lt;A&gt;</td>" not in section and '<a href="#covariates">' in page


def test_projected_data_carry_their_own_covariates(runs: dict[str, tuple[Path, str]]) -> None:
    path, page = runs["projected"]
    section = _section(page, "covariates")
    time = pd.read_csv(path.parent / "covariate-time.csv")
    assert time["time"].tolist() == ["day", "night"] and time["n_items"].tolist() == [15, 25]
    assert time["n_cluster_3"].tolist() == [15, 0] and time["n_cluster_1"].tolist() == [0, 23]
    assert "Chi-square test that the cluster composition does not depend on this column" in section
    assert '"colour_time"' in page  # the map offers the covariate as a colouring


def test_a_metadata_file_matching_no_item_stops_the_report(tmp_path: Path) -> None:
    kwargs = _reference_run(tmp_path)
    pd.DataFrame({"file": ["elsewhere.png"], "depth": [1.0]}).to_csv(tmp_path / "meta.csv", index=False)
    with pytest.raises(cov.MetadataError, match=r"meta.csv: none of its 1 file names matches an item's source"):
        build_report(**kwargs)
    assert not (tmp_path / "report" / "index.html").exists()


def test_the_call_table_columns_join_the_metadata_columns(runs: dict[str, tuple[Path, str]]) -> None:
    path, page = runs["projected"]
    section = _section(page, "covariates")
    assert "the annotation or box table has besides times, boxes and labels" in section
    assert "<h3>observer</h3>" in section and (path.parent / "covariate-observer.csv").is_file()
    assert "<h3>time</h3>" in section  # the metadata sheet's column is still there
