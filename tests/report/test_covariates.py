"""Covariates: the metadata table read and joined by file, binned or by value, and tested for independence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quagga.params import ParamsError
from quagga.report import covariates as cov
from quagga.report import figures
from quagga.report.interactive import NOISE_COLOUR, map_data


def _csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_metadata_is_keyed_by_the_file_column_and_typed(tmp_path: Path) -> None:
    path = _csv(tmp_path / "meta.csv", "site,file,depth_m,date,note\n"
                " A ,.\\core\\s1.png,1.5,2021-05-03,x\nB,s2.png,,2021-06-01T10:30,\n,,3,,\n")
    meta = cov.read_metadata(path)
    assert list(meta.columns) == ["file", "site", "depth_m", "date", "note"]
    assert meta["file"].tolist() == ["core/s1.png", "s2.png"]  # trimmed, forward slashes; the keyless row dropped
    assert meta["site"].tolist() == ["A", "B"] and cov.value_kind(meta["site"]) == cov.TEXT
    assert cov.value_kind(meta["depth_m"]) == cov.NUMBER and np.isnan(meta["depth_m"].iloc[1])
    assert cov.value_kind(meta["date"]) == cov.DATE and meta["date"].iloc[1] == pd.Timestamp("2021-06-01 10:30")
    assert meta["note"].isna().tolist() == [False, True]
    first = cov.read_metadata(_csv(tmp_path / "first.csv", "recording,site\nr1.wav,A\n"))
    assert list(first.columns) == ["file", "site"]  # no file column: the first one holds the names


@pytest.mark.parametrize(("text", "problem"), [
    (None, "cannot read as CSV"),
    ("", "cannot read as CSV"),
    ("file\na.wav\nb.wav\n", "only the column 'file'"),
    ("file,site\n,A\n  ,B\n", "no file names in its key column 'file'"),
    ("file,site\na.wav,A\nb.wav,B\n./a.wav,C\n", "file 'a.wav' is listed more than once (lines 2, 4)"),
])
def test_bad_metadata_files_are_user_errors_naming_the_file(tmp_path: Path, text: str | None, problem: str) -> None:
    path = tmp_path / "my meta.csv"
    if text is not None:
        _csv(path, text)
    with pytest.raises(cov.MetadataError) as caught:
        cov.read_metadata(path)
    assert str(caught.value).startswith(f"metadata {path}: ") and problem in str(caught.value)
    assert isinstance(caught.value, ParamsError)  # the CLI reports it in one line, without a traceback


def test_items_join_by_relative_path_then_by_base_name(tmp_path: Path) -> None:
    path = _csv(tmp_path / "meta.csv", "file,depth\na/x.png,1\nb/x.png,2\ny.png,3\nc/z.png,4\nnever.png,5\n")
    meta = cov.read_metadata(path)
    sources = pd.Series(["b/x.png", "d/x.png", "d/y.png", "z.png", "other.png", None], index=[10, 11, 12, 13, 14, 15])
    joined = cov.join_metadata(sources, meta, path)
    assert list(joined.index) == [10, 11, 12, 13, 14, 15]
    # exact path; x.png is ambiguous by base name; y.png and z.png by base name; the rest missing
    assert joined["depth"].tolist()[:1] == [2.0] and joined["depth"].iloc[[2, 3]].tolist() == [3.0, 4.0]
    assert joined["depth"].iloc[[1, 4, 5]].isna().all()
    with pytest.raises(cov.MetadataError, match=r"metadata .*meta.csv: none of its 5 file names matches an item"):
        cov.join_metadata(pd.Series(["q.png", "r.png"]), meta, path)


def test_numeric_column_is_cut_into_equal_width_bins() -> None:
    rng = np.random.default_rng(1)
    depth = pd.Series(np.r_[rng.uniform(0, 40, 150), rng.uniform(60, 100, 150)])
    clusters = pd.Series(np.where(depth < 50, 0, 1))
    clusters[::10] = -1
    table = cov.abundance_by_bin(depth, clusters)
    counts, edges = np.histogram(depth, bins=cov.N_BINS)  # equal width, the last bin closed
    assert table["n_items"].tolist() == counts.tolist()
    np.testing.assert_allclose(table["lower"], edges[:-1])
    np.testing.assert_allclose(table["upper"], edges[1:])
    for name, k in (("noise", -1), ("cluster_0", 0), ("cluster_1", 1)):
        expected = np.histogram(depth[clusters == k], bins=edges)[0]
        assert table[f"n_{name}"].tolist() == expected.tolist()
    full = table["n_items"] > 0
    shares = table.loc[full, ["share_noise", "share_cluster_0", "share_cluster_1"]]
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    assert table.loc[~full, "share_cluster_0"].isna().all() and (~full).sum() == 2  # 40 to 60: empty bins stay
    assert table.loc[0, "share_cluster_1"] == 0 and table.loc[9, "share_cluster_0"] == 0
    test = cov.independence(table)
    assert test.p_value is not None and test.p_value < 1e-10 and test.dof == 7 and test.n == 270


def test_dates_are_binned_in_time() -> None:
    dates = pd.Series(pd.to_datetime("2021-01-01") + pd.to_timedelta(np.arange(100), "D"))
    table = cov.abundance_by_bin(dates, pd.Series(np.zeros(100, dtype=int)))
    assert table["lower"].iloc[0] == "2021-01-01" and table["upper"].iloc[-1] == "2021-04-10"
    assert table["n_items"].tolist() == [10] * 10


def test_composition_by_category_and_its_chi_square() -> None:
    rng = np.random.default_rng(2)
    n = 400
    clusters = pd.Series(rng.integers(0, 3, n))
    # site depends on the cluster (north holds most of cluster 0), operator does not
    site = pd.Series(np.where((clusters == 0) & (rng.random(n) < 0.8), "north", rng.choice(["north", "south"], n)))
    operator = pd.Series(rng.choice(["ann", "bob", "cy"], n))
    table = cov.composition_by_category(site, clusters, "site")
    assert table.columns.tolist()[:2] == ["site", "n_items"] and table["site"].tolist() == ["north", "south"]
    assert table["n_items"].sum() == n
    assert table["n_cluster_0"].tolist() == [int(((site == s) & (clusters == 0)).sum()) for s in ("north", "south")]
    dependent = cov.independence(table)
    independent = cov.independence(cov.composition_by_category(operator, clusters, "operator"))
    assert dependent.p_value is not None and dependent.p_value < 1e-6 and dependent.dof == 2
    assert independent.p_value is not None and independent.p_value > 0.05 and independent.note == ""
    numbers = cov.composition_by_category(pd.Series([3.0, 10.0, 3.0, None]), pd.Series([0, 1, 1, 0]), "n")
    assert numbers["n"].tolist() == ["3", "10"]  # numbers in order, whole ones without a decimal point


def test_chi_square_says_when_it_does_not_apply_or_is_approximate() -> None:
    one_site = cov.composition_by_category(pd.Series(["a", "a", "b"]), pd.Series([0, 1, -1]), "site")
    test = cov.independence(one_site)  # b holds only noise: one value left
    assert test.p_value is None and "fewer than two values" in test.note
    one_cluster = cov.independence(cov.composition_by_category(pd.Series(["a", "b"]), pd.Series([0, 0]), "s"))
    assert one_cluster.statistic is None and "fewer than two clusters" in one_cluster.note
    small = cov.independence(cov.composition_by_category(pd.Series(list("aabbcc")), pd.Series([0, 1] * 3), "s"))
    assert small.p_value is not None and small.note.startswith("approximate: 100% of the expected counts are below 5")


def test_every_column_is_shown_or_said_why_not() -> None:
    n = 60
    clusters = pd.Series(np.arange(n) % 2)
    columns = pd.DataFrame({
        "depth m": np.arange(n, dtype=float),  # many numbers: binned
        "core": np.arange(n) % 3 + 1.0,  # few numbers: value by value
        "site": pd.array(["a", "b"] * 30, dtype="string"),
        "individual": pd.array([f"id{i}" for i in range(n)], dtype="string"),  # too many categories
        "lab": pd.array(["x"] * n, dtype="string"),  # one value
        "empty": np.full(n, np.nan),
        "depth_m": np.arange(n, dtype=float),  # the same file name as "depth m"
    })
    shown = {c.name: c for c in cov.summarise(columns, clusters)}
    assert [shown[c].kind for c in columns] == [cov.BINNED, cov.CATEGORICAL, cov.CATEGORICAL, cov.NOT_SHOWN,
                                                cov.NOT_SHOWN, cov.NOT_SHOWN, cov.BINNED]
    assert shown["depth m"].note == "10 equal-width bins from 0 to 59" and shown["core"].note == "3 values"
    assert shown["individual"].note == "60 distinct values (more than 30)" and shown["individual"].csv is None
    assert "single value" in shown["lab"].note and shown["empty"].note == "no item has a value"
    assert shown["depth m"].csv == "covariate-depth_m.csv" and shown["depth_m"].csv == "covariate-depth_m-2.csv"
    assert cov.csv_name("../../etc/x y", set()) == "covariate-etc_x_y.csv"


def test_a_cluster_has_the_same_colour_whatever_else_is_present() -> None:
    reference = figures.cluster_colours(range(5))
    assert figures.cluster_colours([3, 1, -1]) != {k: reference[k] for k in (-1, 1, 3)}  # its own levels differ
    assert figures.cluster_colours([*range(5), 3, 1]) == reference
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "label": pd.array([None] * 3, dtype="string"),
                          "cluster": [3, -1, 1], "source": ["s"] * 3, "x": [0.0, 1, 2], "y": [0.0, 1, 2]})
    data, _ = map_data(items, [""] * 3, None, levels=list(range(5)))
    assert data["colour_cluster"] == [reference[3], NOISE_COLOUR, reference[1]]
    assert len(set(figures.cluster_colours(range(30)).values())) == 31  # many clusters stay distinct


def test_map_offers_covariates_as_colourings_and_tooltip() -> None:
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "label": pd.array(["x", None, "y"], dtype="string"),
                          "cluster": [0, -1, 1], "source": ["r1.wav"] * 3, "x": [0.0, 1, 2], "y": [0.0, 1, 2]})
    covariates = pd.DataFrame({"depth": [1.0, np.nan, 3.0], "site": pd.array(["n", "s", None], dtype="string"),
                               "label": pd.array(["p", "q", "p"], dtype="string"),
                               "date": pd.to_datetime(["2021-01-01", None, "2021-02-01"])})
    data, colourings = map_data(items, [""] * 3, None, covariates=covariates)
    assert colourings[-4:] == ["depth", "site", "label (metadata)", "date"]
    assert data["colour_depth"][1] == NOISE_COLOUR and data["colour_site"][2] == NOISE_COLOUR
    assert data["colour_date"][0] != data["colour_date"][2] and data["colour_date"][1] == NOISE_COLOUR
    assert data["covariates"][0] == "depth: 1 · site: n · label: p · date: 2021-01-01"
    assert data["covariates"][1] == "site: s · label: q"


def test_the_call_table_and_box_table_columns_are_covariates_too(tmp_path: Path) -> None:
    from quagga.report.covariates import DURATION, item_covariates

    (tmp_path / "calls").mkdir()
    raven = ("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tBegin File\tcall_type\tbird\n"
             "1\tSpectrogram 1\t1\t0.5\t0.8\t900\ta.wav\tsnort\tB1\n"
             "2\tSpectrogram 1\t1\t1.5\t1.8\t1200\tb.wav\tsquaw\tB2\n")
    (tmp_path / "calls" / "selections.txt").write_text(raven)
    index = pd.DataFrame({"item_id": ["b#1.5", "a#0.5", "x#9"],
                          "annotation_row": ["selections.txt line 3", "selections.txt line 2", "other.txt line 2"],
                          "duration_s": [0.3, 0.3, 0.12345678]})
    dataset = {"modality": "audio", "audio": {"annotations": "calls/selections.txt", "annotation_format": "raven",
                                              "label_column": "call_type"}}
    found = item_covariates(index, dataset, tmp_path)
    # times, file and label are not covariates; every call's duration is (its tile may be stretched)
    assert list(found.columns) == ["Low Freq (Hz)", "bird", DURATION]
    assert found.loc["a#0.5", "bird"] == "B1" and found.loc["b#1.5", "Low Freq (Hz)"] == 1200.0
    assert found.loc["x#9", ["Low Freq (Hz)", "bird"]].isna().all()  # a row of another table: no values
    assert found[DURATION].tolist() == [0.3, 0.3, 0.1235]
    dataset["audio"]["annotation_format"] = "textgrid"  # a format without extra columns: the duration only
    assert list(item_covariates(index, dataset, tmp_path).columns) == [DURATION]

    (tmp_path / "boxes.csv").write_text("image,label,xmin,ymin,xmax,ymax,depth_m\nf1.png,dust,10,20,30,40,12.5\n"
                                        "f1.png,ash,50,60,70,80,13.0\n")
    boxes = pd.DataFrame({"item_id": ["f1#50", "f1#10"], "source": ["data/fields/f1.png"] * 2,
                          "xmin": [50, 10], "ymin": [60, 20], "xmax": [70, 30], "ymax": [80, 40]})
    found = item_covariates(boxes, {"modality": "images", "images": {"boxes": "boxes.csv"}}, tmp_path)
    assert found["depth_m"].tolist() == [13.0, 12.5]
    (tmp_path / "plain.csv").write_text("image,label,xmin,ymin,xmax,ymax\nf1.png,dust,10,20,30,40\n")
    assert item_covariates(boxes, {"modality": "images", "images": {"boxes": "plain.csv"}}, tmp_path) is None
    (tmp_path / "calls" / "broken.txt").write_bytes(b"\xff\xfe\x00broken")  # skipped at tiling: left out here
    folder = {"modality": "audio", "audio": {"annotations": "calls", "annotation_format": "raven",
                                             "label_column": "call_type"}}
    assert item_covariates(index, folder, tmp_path)["bird"].tolist()[:2] == ["B2", "B1"]
