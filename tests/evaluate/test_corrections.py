"""Label corrections: the lasso export, edited, replaces labels; every bad row is counted and listed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from quagga.evaluate.corrections import CorrectionsError, apply_corrections, read_corrections
from quagga.evaluate.dataset import evaluate_dataset
from quagga.params import EvaluateParams
from tests.evaluate.test_evaluate_dataset import write_inputs

ITEMS = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "label": pd.array(["x", "y", None, "x"], dtype="string")})


def _csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_the_lasso_export_edited_corrects_and_adds_labels(tmp_path: Path) -> None:
    export = _csv(tmp_path / "sel.csv", "item_id,label,cluster,source,x,y\n"  # what the map's button writes
                  "a,y,0,r.wav,0.1,0.2\nb,y,1,r.wav,0.3,0.1\nc,z,1,r.wav,1,1\n")
    labels, summary = apply_corrections(ITEMS, read_corrections(export))
    assert labels.tolist() == ["y", "y", "z", "x"]
    assert (summary["n_rows"], summary["n_changed"], summary["n_added"], summary["n_unchanged"]) == (3, 2, 1, 1)
    assert summary["problems"] == [] and summary["file"] == str(export)


def test_unknown_repeated_and_empty_rows_are_listed_never_fatal(tmp_path: Path) -> None:
    text = "item_id,label\na,y\nnope,x\nb,\nc,(none)\na,z\n d , Grünspecht \n"  # (none): the map's missing label
    labels, summary = apply_corrections(ITEMS, read_corrections(_csv(tmp_path / "c.csv", text, "cp1252")))
    # the later row of a wins; b and c keep theirs; d's id and label are stripped, its Windows-1252 decoded
    assert labels.fillna("-").tolist() == ["z", "y", "-", "Grünspecht"]
    problems = {(p["line"], p["item_id"]): p["problem"] for p in summary["problems"]}
    assert problems == {
        ("4", "b"): "empty label: the annotation's label is kept",
        ("5", "c"): "empty label: the annotation's label is kept",
        ("6", "a"): "item_id repeated (line 2): this later line is used",
        ("", "nope"): "item_id not in the tile store: nothing to correct",
    }
    assert (summary["n_problems"], summary["n_unknown_ids"], summary["n_changed"]) == (4, 1, 2)


@pytest.mark.parametrize(("text", "message"), [
    ("id,new_label\na,x\n", r"missing column\(s\) \['item_id', 'label'\]; columns are \['id', 'new_label'\]"),
    ("", "cannot read as CSV"),
    ('item_id,label\n"a,x\n', "cannot read as CSV"),
])
def test_a_file_that_is_not_a_corrections_table_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = _csv(tmp_path / "bad.csv", text)
    with pytest.raises(CorrectionsError, match=rf"labels_corrections {path}: {message}"):
        read_corrections(path)


def test_evaluation_uses_the_corrected_labels_and_keeps_the_agreement_before(tmp_path: Path) -> None:
    write_inputs(tmp_path)  # item i00 ("a") sits firmly in b's cluster: the one likely mislabelled item
    params = EvaluateParams(bootstrap=0, few_label_repeats=0)
    args = (tmp_path / "tiles", tmp_path / "clusters.parquet", tmp_path / "latents.parquet", params)
    before = evaluate_dataset(*args)
    fix = _csv(tmp_path / "fix.csv", "item_id,label\ni00,b\nghost,a\n")
    after = evaluate_dataset(*args, corrections_path=fix, predicted_path=tmp_path / "predicted.csv")
    assert before["n_likely_mislabelled"] == 1 and after["n_likely_mislabelled"] == 0
    assert after["v_measure"] == 1.0 > before["v_measure"] == after["corrections"]["before"]["v_measure"]
    assert after["corrections"]["n_changed"] == 1 and after["corrections"]["n_unknown_ids"] == 1
    predicted = pd.read_csv(tmp_path / "predicted.csv").set_index("item_id")
    assert predicted.loc["i00", "label"] == "b"  # the corrected label is the one propagated and shown
    assert "corrections" not in before
