"""Annotation readers: every format to one table of calls, row locators, and unusable sources reported."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io

from quagga.audio.annotations import COLUMNS, FORMATS, AnnotationError, label_column_problem, read_annotations

KOUMURA = Path(__file__).resolve().parents[3] / "shared" / "data" / "koumura-bird0" / "annotations.csv"

RAVEN_HEADER = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)"]


def _tsv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(str(v) for v in line) for line in [header, *rows]) + "\n")
    return path


def _textgrid(path: Path, tiers: list[tuple[str, str, list[tuple[float, float, str]]]], xmax: float = 3.0) -> Path:
    """A long-format ("ooTextFile") TextGrid; a tier is (class, name, [(xmin, xmax, text)])."""
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0 ", f"xmax = {xmax} ",
             "tiers? <exists> ", f"size = {len(tiers)} ", "item []: "]
    for n, (kind, name, entries) in enumerate(tiers, 1):
        lines += [f"    item [{n}]:", f'        class = "{kind}" ', f'        name = "{name}" ',
                  "        xmin = 0 ", f"        xmax = {xmax} "]
        if kind == "IntervalTier":
            lines.append(f"        intervals: size = {len(entries)} ")
            for i, (lo, hi, text) in enumerate(entries, 1):
                lines += [f"        intervals [{i}]:", f"            xmin = {lo} ", f"            xmax = {hi} ",
                          f'            text = "{text}" ']
        else:
            lines.append(f"        points: size = {len(entries)} ")
            for i, (t, _, mark) in enumerate(entries, 1):
                lines += [f"        points [{i}]:", f"            number = {t} ", f'            mark = "{mark}" ']
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _notmat(path: Path, labels: str, onsets_ms: list[float], offsets_ms: list[float]) -> Path:
    """A .not.mat as evsonganaly writes it: times in ms as column vectors, labels one character per note."""
    scipy.io.savemat(path, {
        "Fs": 32000.0, "fname": path.name[: -len(".not.mat")], "labels": labels,
        "onsets": np.array(onsets_ms, dtype=float).reshape(-1, 1),
        "offsets": np.array(offsets_ms, dtype=float).reshape(-1, 1),
        "min_int": 2.0, "min_dur": 20.0, "threshold": 5000.0, "sm_win": 2.0,
    })
    return path


def _records(table: pd.DataFrame) -> list[tuple[object, ...]]:
    """Rows as tuples, with NA labels as None and times rounded against float noise."""
    return [(r.file, round(r.onset_s, 6), round(r.offset_s, 6), None if pd.isna(r.label) else r.label, r.row)
            for r in table.itertuples(index=False)]


def _check_dtypes(table: pd.DataFrame) -> None:
    assert list(table.columns) == COLUMNS
    assert table["onset_s"].dtype == float and table["offset_s"].dtype == float
    assert isinstance(table["label"].dtype, pd.StringDtype)
    assert all(isinstance(v, str) for v in table["file"]) and all(isinstance(v, str) for v in table["row"])


# --- csv ---------------------------------------------------------------------------------------------------------


def test_csv_rows_bad_numbers_and_empty_labels(tmp_path: Path) -> None:
    (tmp_path / "ann.csv").write_text("wav_file,onset_s,offset_s,label\nWave/0.wav,1.07,1.154,0\n"
                                      "Wave/0.wav,oops,1.5,\nWave/1.wav,0.25,0.5, b \n")
    table = read_annotations(tmp_path / "ann.csv", "csv", "label")
    _check_dtypes(table)
    assert table.iloc[0].to_dict() == {"file": "Wave/0.wav", "onset_s": 1.07, "offset_s": 1.154, "label": "0",
                                       "row": "ann.csv line 2"}
    assert np.isnan(table.loc[1, "onset_s"]) and table.loc[1, "offset_s"] == 1.5 and pd.isna(table.loc[1, "label"])
    assert table.loc[1, "row"] == "ann.csv line 3"
    assert table.loc[2, "label"] == "b" and table.loc[2, "file"] == "Wave/1.wav"
    assert table.attrs["unreadable"] == []


def test_csv_folder_concatenates_tables_with_relative_locators(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("file,onset_s,offset_s,call\nr1.wav,0.1,0.2,x\n")
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "b.CSV").write_text("file,onset_s,offset_s,call\nr2.wav,0.3,0.4,y\nr2.wav,0.5,0.6,z\n")
    (tmp_path / ".hidden.csv").write_text("garbage")
    table = read_annotations(tmp_path, "csv", "call")
    assert _records(table) == [("r1.wav", 0.1, 0.2, "x", "a.csv line 2"),
                               ("r2.wav", 0.3, 0.4, "y", "more/b.CSV line 2"),
                               ("r2.wav", 0.5, 0.6, "z", "more/b.CSV line 3")]


@pytest.mark.skipif(not KOUMURA.is_file(), reason=f"koumura data not present at {KOUMURA}")
def test_koumura_bird0_csv() -> None:
    table = read_annotations(KOUMURA, "csv", "label")
    _check_dtypes(table)
    assert len(table) == 7652
    assert table["label"].nunique() == 9 and not table["label"].isna().any()
    assert table["file"].nunique() == 135
    assert table.iloc[0].to_dict() == {"file": "Wave/0.wav", "onset_s": 1.07, "offset_s": 1.154, "label": "0",
                                       "row": "annotations.csv line 2"}
    assert (table["offset_s"] > table["onset_s"]).all()


# --- raven -------------------------------------------------------------------------------------------------------


def test_raven_multi_recording_table_keeps_one_row_per_selection(tmp_path: Path) -> None:
    header = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Begin File", "File Offset (s)",
              "call_type"]
    _tsv(tmp_path / "table.txt", header, [
        [1, "Waveform 1", 1, 100.5, 100.8, "a.wav", 0.5, "low"],       # line 2: duplicate of line 3
        [1, "Spectrogram 1", 1, 100.5, 100.8, "a.wav", 0.5, "low"],    # line 3
        [2, "Spectrogram 1", 1, 102.0, 102.6, "a.wav", 2.0, "high"],   # line 4
        [2, "Waveform 1", 1, 102.0, 102.6, "a.wav", 2.0, "high"],      # line 5: duplicate of line 4
        [3, "Waveform 1", 1, 201.0, 201.4, "b.flac", 1.0, ""],         # line 6: only view of selection 3
        [4, "Spectrogram 1", 1, "x", 203.0, "b.flac", 2.0, "mid"],     # line 7: bad number -> NaN
    ])
    table = read_annotations(tmp_path / "table.txt", "raven", "call_type")
    _check_dtypes(table)
    assert _records(table.iloc[:3]) == [("a.wav", 0.5, 0.8, "low", "table.txt line 3"),
                                        ("a.wav", 2.0, 2.6, "high", "table.txt line 4"),
                                        ("b.flac", 1.0, 1.4, None, "table.txt line 6")]
    assert len(table) == 4 and table.loc[3, "row"] == "table.txt line 7" and np.isnan(table.loc[3, "offset_s"])


def test_raven_table_per_recording_finds_the_recording_by_stem(tmp_path: Path) -> None:
    (tmp_path / "bird1.flac").write_bytes(b"")
    (tmp_path / "bird10.wav").write_bytes(b"")  # same prefix, another recording
    _tsv(tmp_path / "bird1.Table.1.selections.txt", [*RAVEN_HEADER, "Annotation"], [
        [1, "Waveform 1", 1, 0.5, 0.8, 500.0, 4000.0, "A"],        # line 2: duplicate of line 3
        [1, "Spectrogram 1", 1, 0.5, 0.8, 500.0, 4000.0, "A"],     # line 3
        [2, "Spectrogram 1", 1, 1.25, 1.5, 600.0, 5000.0, "B"],    # line 4
        [3, "Waveform 1", 1, 2.0, 2.5, 0.0, 8000.0, "C"],          # line 5: only view of selection 3
    ])
    table = read_annotations(tmp_path / "bird1.Table.1.selections.txt", "raven", "Annotation")
    _check_dtypes(table)
    assert _records(table) == [("bird1.flac", 0.5, 0.8, "A", "bird1.Table.1.selections.txt line 3"),
                               ("bird1.flac", 1.25, 1.5, "B", "bird1.Table.1.selections.txt line 4"),
                               ("bird1.flac", 2.0, 2.5, "C", "bird1.Table.1.selections.txt line 5")]


def test_raven_folder_mixes_layouts_and_ignores_other_text_files(tmp_path: Path) -> None:
    _tsv(tmp_path / "site" / "bird2.Table.1.selections.txt", [*RAVEN_HEADER, "Species"],
         [[1, "Spectrogram 1", 1, 3.0, 3.5, 500.0, 4000.0, "EATO"]])
    _tsv(tmp_path / "site" / "empty.Table.1.selections.txt", [*RAVEN_HEADER, "Species"], [])  # no calls
    _tsv(tmp_path / "all.txt", ["Selection", "View", "Begin Time (s)", "End Time (s)", "Begin File",
                                "File Offset (s)", "Species"],
         [[1, "Spectrogram 1", 10.0, 10.5, "site/bird3.wav", 0.25, "NOCA"]])
    (tmp_path / "README.txt").write_text("recorded in May\n")
    table = read_annotations(tmp_path, "raven", "Species")
    assert _records(table) == [("site/bird3.wav", 0.25, 0.75, "NOCA", "all.txt line 2"),
                               ("site/bird2.wav", 3.0, 3.5, "EATO", "site/bird2.Table.1.selections.txt line 2")]
    assert table.attrs["unreadable"] == []


def test_raven_errors(tmp_path: Path) -> None:
    path = _tsv(tmp_path / "r.Table.1.selections.txt", [*RAVEN_HEADER, "Annotation"],
                [[1, "Spectrogram 1", 1, 0.5, 0.8, 500.0, 4000.0, "A"]])
    with pytest.raises(AnnotationError, match=r"r\.Table\.1\.selections\.txt: label column 'Species' not found; "
                                              r"columns are \['Selection', .*'Annotation'\]"):
        read_annotations(path, "raven", "Species")
    no_freq = _tsv(tmp_path / "f.txt", ["Selection", "Begin Time (s)", "End Time (s)", "Annotation"],
                   [[1, 0.5, 0.8, "A"]])
    with pytest.raises(AnnotationError, match=r"f\.txt: missing column\(s\) \['Low Freq \(Hz\)', 'High Freq"):
        read_annotations(no_freq, "raven", "Annotation")
    bad_time = _tsv(tmp_path / "t.txt", [*RAVEN_HEADER, "Annotation"],
                    [[1, "Spectrogram 1", 1, "x", 0.8, 1.0, 2.0, "A"]])
    with pytest.raises(AnnotationError, match=r"t\.txt: cannot read as a Raven selection table"):
        read_annotations(bad_time, "raven", "Annotation")
    multi = _tsv(tmp_path / "m.txt", ["Begin File", "End Time (s)", "lab"], [["a.wav", 1.0, "x"]])
    with pytest.raises(AnnotationError, match=r"m\.txt: missing column\(s\) \['Begin Time \(s\)'\]"):
        read_annotations(multi, "raven", "lab")
    with pytest.raises(AnnotationError, match=r"no raven annotation files found in .*other"):
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "notes.txt").write_text("not a table\n")
        read_annotations(tmp_path / "other", "raven", "lab")


# --- audacity ----------------------------------------------------------------------------------------------------


def test_audacity_label_track(tmp_path: Path) -> None:
    (tmp_path / "x.WAV").write_bytes(b"")
    (tmp_path / "x.txt").write_text("0.500000\t0.800000\tlow\n1.000000\t1.250000\t 12 \n")
    table = read_annotations(tmp_path / "x.txt", "audacity", "ignored")
    _check_dtypes(table)
    assert _records(table) == [("x.WAV", 0.5, 0.8, "low", "x.txt line 1"),
                               ("x.WAV", 1.0, 1.25, "12", "x.txt line 2")]
    (tmp_path / "none.txt").write_text("")  # a recording without calls
    assert read_annotations(tmp_path / "none.txt", "audacity", "ignored").empty


def test_crowsetta_rejects_an_empty_label_in_audacity_and_per_recording_raven(tmp_path: Path) -> None:
    """crowsetta 5.1.2 validates labels as non-null: the whole file is reported, never half read."""
    (tmp_path / "x.txt").write_text("0.5\t0.8\tlow\n2.0\t2.5\t\n")
    with pytest.raises(AnnotationError, match=r"x\.txt: cannot read as an Audacity label track: .*null"):
        read_annotations(tmp_path / "x.txt", "audacity", "ignored")
    path = _tsv(tmp_path / "r.Table.1.selections.txt", [*RAVEN_HEADER, "Annotation"],
                [[1, "Spectrogram 1", 1, 0.5, 0.8, 500.0, 4000.0, ""]])
    with pytest.raises(AnnotationError, match=r"r\.Table\.1\.selections\.txt: cannot read as a Raven .*null"):
        read_annotations(path, "raven", "Annotation")


def test_folder_with_a_corrupt_file_keeps_the_good_ones(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "good.txt").write_text("0.5\t0.8\tlow\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "bad.txt").write_text("start\tend\n\\\t100\n")
    (tmp_path / "sub" / "quiet.txt").write_text("")  # a recording without calls
    with caplog.at_level(logging.WARNING, logger="quagga.audio.annotations"):
        table = read_annotations(tmp_path, "audacity", "label")
    assert _records(table) == [("good.wav", 0.5, 0.8, "low", "good.txt line 1")]
    [(name, reason)] = table.attrs["unreadable"]
    assert name == "sub/bad.txt" and reason.startswith("cannot read as an Audacity label track")
    assert "bad.txt" in caplog.text and "skipped" in caplog.text
    (tmp_path / "good.txt").write_text("0.5\t0.8\n")
    (tmp_path / "sub" / "quiet.txt").unlink()
    with pytest.raises(AnnotationError, match=r"none of the 2 audacity annotation files in .* could be read: "
                                              r"good\.txt: cannot read .*; sub/bad\.txt: cannot read"):
        read_annotations(tmp_path, "audacity", "label")


# --- notmat ------------------------------------------------------------------------------------------------------


def test_notmat_files(tmp_path: Path) -> None:
    name = "gy6or6_baseline_230312_0808.138.cbin.not.mat"
    _notmat(tmp_path / name, "ab-", [100.0, 350.5, 1000.0], [200.0, 400.0, 1100.0])
    table = read_annotations(tmp_path / name, "notmat", "ignored")
    _check_dtypes(table)
    recording = "gy6or6_baseline_230312_0808.138.cbin"
    assert _records(table) == [(recording, 0.1, 0.2, "a", f"{name} note 1"),
                               (recording, 0.3505, 0.4, "b", f"{name} note 2"),
                               (recording, 1.0, 1.1, "-", f"{name} note 3")]
    (tmp_path / "day2").mkdir()
    _notmat(tmp_path / "day2" / "x.wav.not.mat", "c", [50.0], [75.0])  # one note: scalars in the file
    table = read_annotations(tmp_path, "notmat", "ignored")
    assert _records(table)[0] == ("day2/x.wav", 0.05, 0.075, "c", "day2/x.wav.not.mat note 1")
    _notmat(tmp_path / "short.wav.not.mat", "ab", [50.0], [75.0])
    with pytest.raises(AnnotationError, match=r"short\.wav\.not\.mat: 2 labels but 1 onsets and 1 offsets"):
        read_annotations(tmp_path / "short.wav.not.mat", "notmat", "ignored")
    (tmp_path / "junk.wav.not.mat").write_bytes(b"\x00" * 200)
    with pytest.raises(AnnotationError, match=r"junk\.wav\.not\.mat: cannot read as an evsonganaly \.not\.mat"):
        read_annotations(tmp_path / "junk.wav.not.mat", "notmat", "ignored")


# --- textgrid ----------------------------------------------------------------------------------------------------


def test_textgrid_picks_the_label_tier_and_drops_empty_intervals(tmp_path: Path) -> None:
    (tmp_path / "bird1.ogg").write_bytes(b"")
    tiers = [("TextTier", "clicks", [(0.1, 0.1, "c")]),
             ("IntervalTier", "words", [(0.0, 3.0, "song")]),
             ("IntervalTier", "syll", [(0.0, 0.5, ""), (0.5, 0.8, "a"), (0.8, 1.2, " "), (1.2, 1.7, "b"),
                                       (1.7, 3.0, "")])]
    path = _textgrid(tmp_path / "bird1.TextGrid", tiers)
    table = read_annotations(path, "textgrid", "syll")
    _check_dtypes(table)
    assert _records(table) == [("bird1.ogg", 0.5, 0.8, "a", "bird1.TextGrid interval 2"),
                               ("bird1.ogg", 1.2, 1.7, "b", "bird1.TextGrid interval 4")]
    first = read_annotations(path, "textgrid", "label")  # no tier of that name: the first interval tier
    assert _records(first) == [("bird1.ogg", 0.0, 3.0, "song", "bird1.TextGrid interval 1")]


def test_textgrid_folder_and_errors(tmp_path: Path) -> None:
    _textgrid(tmp_path / "a" / "rec.textgrid", [("IntervalTier", "label", [(0.0, 1.0, ""), (1.0, 2.0, "z")])])
    _textgrid(tmp_path / "points.TextGrid", [("TextTier", "clicks", [(0.1, 0.1, "c")])])
    (tmp_path / "broken.TextGrid").write_text('File type = "ooTextFile"\nObject class = "TextGrid"\n\nxmin = oops\n')
    table = read_annotations(tmp_path, "textgrid", "label")
    assert _records(table) == [("a/rec.wav", 1.0, 2.0, "z", "a/rec.textgrid interval 2")]
    assert sorted(table.attrs["unreadable"]) == [
        ("broken.TextGrid", table.attrs["unreadable"][0][1]),
        ("points.TextGrid", "no interval tier; tiers are ['clicks']"),
    ]
    assert table.attrs["unreadable"][0][1].startswith("cannot parse as a Praat TextGrid")
    with pytest.raises(AnnotationError, match=r"points\.TextGrid: no interval tier; tiers are \['clicks'\]"):
        read_annotations(tmp_path / "points.TextGrid", "textgrid", "label")


# --- errors common to all formats --------------------------------------------------------------------------------


def test_source_errors(tmp_path: Path) -> None:
    assert FORMATS == ("csv", "raven", "audacity", "notmat", "textgrid")
    with pytest.raises(AnnotationError, match=r"annotations not found: .*nope\.csv"):
        read_annotations(tmp_path / "nope.csv", "csv", "label")
    with pytest.raises(AnnotationError, match=r"unknown annotation format 'elan'; allowed: \['csv', 'raven'"):
        read_annotations(tmp_path, "elan", "label")
    with pytest.raises(AnnotationError, match=r"no textgrid annotation files found in "):
        read_annotations(tmp_path, "textgrid", "label")
    (tmp_path / "ann.csv").write_text("wav_file,onset_s,offset_s,label\nWave/0.wav,1.07,1.154,0\n")
    with pytest.raises(AnnotationError, match=r"ann\.csv: label column 'call_type' not found; columns are "
                                              r"\['wav_file', 'onset_s', 'offset_s', 'label'\]"):
        read_annotations(tmp_path / "ann.csv", "csv", "call_type")
    (tmp_path / "nofile.csv").write_text("onset_s,offset_s,label\n1,2,a\n")
    with pytest.raises(AnnotationError, match=r"nofile\.csv: missing column 'file' \(or 'wav_file'\)"):
        read_annotations(tmp_path / "nofile.csv", "csv", "label")
    (tmp_path / "nooff.csv").write_text("file,onset_s,label\na.wav,1,a\n")
    with pytest.raises(AnnotationError, match=r"nooff\.csv: missing column\(s\) \['offset_s'\]"):
        read_annotations(tmp_path / "nooff.csv", "csv", "label")
    (tmp_path / "ragged.csv").write_text('file,onset_s,offset_s,label\n"a.wav,1,2,a\n')
    with pytest.raises(AnnotationError, match=r"ragged\.csv: cannot parse as CSV"):
        read_annotations(tmp_path / "ragged.csv", "csv", "label")


def test_label_column_problem_reads_headers_only_and_names_the_columns(tmp_path: Path) -> None:
    (tmp_path / "ann.csv").write_text("wav_file,onset_s,offset_s,label\nWave/0.wav,1.07,1.154,0\n")
    assert label_column_problem(tmp_path / "ann.csv", "csv", "label") is None
    assert label_column_problem(tmp_path / "ann.csv", "csv", "species") == (
        f"'species' is not a column of {tmp_path / 'ann.csv'}; "
        "columns are ['wav_file', 'onset_s', 'offset_s', 'label']")
    tables = tmp_path / "raven"
    _tsv(tables / "a.Table.1.selections.txt", [*RAVEN_HEADER, "Type"], [[1, "Spectrogram 1", 1, 0.1, 0.2, 0, 1, "x"]])
    _tsv(tables / "b.Table.1.selections.txt", [*RAVEN_HEADER, "Type"], [])
    problem = label_column_problem(tables, "raven", "Species")
    assert problem.startswith("'Species' is not a column of any of the 2 raven")
    _tsv(tables / "c.Table.1.selections.txt", [*RAVEN_HEADER, "Species"], [])
    assert label_column_problem(tables, "raven", "Species") is None  # one table has it: the others are reported later
    assert label_column_problem(tmp_path, "notmat", "anything") is None  # one label per note, no column
