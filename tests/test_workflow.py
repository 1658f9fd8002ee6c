"""End to end: the real snakemake runs the whole workflow on the demo data, tiny settings, into a results
folder whose name holds a space (every path in the rules is quoted)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TRAINED = ["demo-audio", "demo-particles", "demo-fields"]
PROJECTED = "demo-particles-core-b"  # a held-back core put on demo-particles' map (datasets.<name>.reference)
DATASETS = [*TRAINED, PROJECTED]
RESULTS = "my results"
pytestmark = pytest.mark.workflow


def _config(max_epochs: int) -> dict:
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    base["results"] = RESULTS
    for ds in base["datasets"].values():
        ds["train"] = {"max_epochs": max_epochs, "batch_size": 32}
        ds["embed"] = {"epochs": 5}
    return base


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(workdir),
           "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1500)


def _jobs(dry_run_output: str) -> set[str]:
    table = dry_run_output.split("Job stats:")[-1]
    return set(re.findall(r"^(\w+)\s+\d+$", table, flags=re.M)) - {"total"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wd = tmp_path_factory.mktemp("wf")
    (wd / "config").mkdir()
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(_config(max_epochs=2)))
    done = _snakemake(wd)
    assert done.returncode == 0, done.stderr[-4000:]
    return wd


def test_every_output_exists_and_metrics_are_sane(workdir: Path) -> None:
    for ds in DATASETS:
        out = workdir / RESULTS / ds
        model = "models/vae.ckpt" if ds in TRAINED else "projection.json"
        for name in ["tiles/store.json", model, "latents.parquet", "embedding.parquet",
                     "clusters.parquet", "report/index.html"]:
            assert (out / name).is_file(), f"{ds}: {name} missing"
        metrics = json.loads((out / "metrics.json").read_text())
        store = json.loads((out / "tiles" / "store.json").read_text())
        assert metrics["n_items"] == store["shape"][0] > 50
        for key in ["homogeneity", "completeness", "v_measure", "ami"]:
            assert 0.0 <= metrics[key] <= 1.0, key
        assert -1.0 <= metrics["ari"] <= 1.0
        assert 0.0 <= metrics["noise_fraction"] <= 1.0
        assert metrics["n_labels"] >= 4
        assert (workdir / RESULTS / "logs" / ("train" if ds in TRAINED else "project") / f"{ds}.log").is_file()
        page = (out / "report" / "index.html").read_text()
        if ds == "demo-audio":
            assert page.count("data:audio/ogg;base64,") >= metrics["n_items"]  # a clip per point
        else:  # hovering shows the original crop: one colour JPEG per point besides its tile
            assert "the original crop (right)" in page
            assert page.count("data:image/jpeg;base64,") >= 2 * metrics["n_items"]
        assert (workdir / RESULTS / "benchmarks" / ("train" if ds in TRAINED else "project") / f"{ds}.tsv").is_file()


def test_the_held_back_core_lands_in_the_reference_clusters_and_its_new_class_is_novel(workdir: Path) -> None:
    out, ref = workdir / RESULTS / PROJECTED, workdir / RESULTS / "demo-particles"
    assert not (out / "models").exists()  # nothing trained
    assert json.loads((out / "tiles" / "store.json").read_text())["tile_params"] == \
        json.loads((ref / "tiles" / "store.json").read_text())["tile_params"]
    clusters = pd.read_parquet(out / "clusters.parquet").merge(
        pd.read_parquet(out / "tiles" / "index.parquet", columns=["item_id", "label"]), on="item_id")
    reference_ids = set(pd.read_parquet(ref / "clusters.parquet")["cluster"])
    assert set(clusters["cluster"]) <= reference_ids | {-1}  # the reference's ids: nothing renumbered
    # bubbles, the class core A never had, are the least like it (a 2-epoch VAE: ranked, not yet all flagged)
    novelty = clusters.groupby("label")["novelty"].mean()
    assert novelty.idxmax() == "bubble", novelty
    summary = json.loads((out / "projection.json").read_text())
    assert summary["reference"] == str(ref.resolve()) and summary["n_items"] == len(clusters)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["choices"]["normalize.scale_mode"]["source"] == "reference"
    page = (out / "report" / "index.html").read_text()
    assert "projected onto" in page


def test_a_projection_reruns_when_the_reference_model_changes_not_its_report(workdir: Path) -> None:
    ref = f"{RESULTS}/demo-particles"
    plan = _snakemake(workdir, "-n", "--forcerun", f"{ref}/report/index.html", f"{ref}/metrics.json")
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert "project" not in _jobs(plan.stdout + plan.stderr)
    plan = _snakemake(workdir, "-n", "--forcerun", f"{ref}/models/vae.ckpt")
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert {"train", "project"} <= _jobs(plan.stdout + plan.stderr)


def test_second_run_has_nothing_to_do(workdir: Path) -> None:
    done = _snakemake(workdir, "-n")
    assert done.returncode == 0
    assert "Nothing to be done" in done.stdout + done.stderr


def test_snakemake_report_holds_every_dataset_page(workdir: Path) -> None:
    """``snakemake --report`` (the workflow-level report) carries our pages, one per dataset."""
    done = _snakemake(workdir, "--report", str(workdir / "workflow-report.zip"))
    assert done.returncode == 0, done.stderr[-2000:]
    with zipfile.ZipFile(workdir / "workflow-report.zip") as archive:
        names = archive.namelist()
        pages = [n for n in names if n.endswith("/index.html")]
        assert len(pages) == len(DATASETS) and "workflow-report/report.html" in names
        for page in pages:
            assert archive.read(page).startswith(b"<!DOCTYPE html>")
        main = archive.read("workflow-report/report.html").decode()
    for ds in DATASETS:
        assert ds in main


def test_changing_a_training_parameter_reruns_training_and_downstream_only(workdir: Path) -> None:
    config = workdir / "config" / "config.yaml"
    original = config.read_text()
    try:
        config.write_text(yaml.safe_dump(_config(max_epochs=3)))
        done = _snakemake(workdir, "-n")
        assert done.returncode == 0, done.stderr[-2000:]
        jobs = _jobs(done.stdout + done.stderr)
        assert jobs == {"all", "train", "encode", "embed", "cluster", "project", "evaluate", "report"}, jobs
    finally:
        config.write_text(original)


def test_bad_config_stops_at_start_with_the_key(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    bad = _config(max_epochs=2)
    bad["datasets"]["demo-audio"]["train"]["max_epochs"] = -1
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(bad))
    done = _snakemake(tmp_path, "-n")
    assert done.returncode != 0
    assert "datasets.demo-audio.train.max_epochs: -1 is less than the minimum of 1" in done.stderr


@pytest.mark.parametrize(("reference", "message"), [
    ("demo-audio", "reference: 'demo-audio' is audio, 'demo-particles-core-b' is images"),
    ("old/demo-particles", "'old/demo-particles' is neither a dataset of the config"),
])
def test_a_reference_that_cannot_serve_stops_at_start(tmp_path: Path, reference: str, message: str) -> None:
    (tmp_path / "config").mkdir()
    bad = _config(max_epochs=2)
    bad["datasets"][PROJECTED]["reference"] = reference
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(bad))
    done = _snakemake(tmp_path, "-n")
    assert done.returncode != 0 and message in done.stderr, done.stderr[-2000:]


def test_every_run_with_labels_predicts_every_label(workdir: Path) -> None:
    out = workdir / RESULTS / "demo-audio"
    predicted = pd.read_csv(out / "predicted_labels.csv")
    assert len(predicted) == json.loads((out / "metrics.json").read_text())["n_items"]
    assert predicted["predicted_label"].notna().all() and predicted["labelled"].all()  # every label used
    assert "Label next" in (out / "report" / "index.html").read_text()


def test_label_corrections_rerun_evaluate_and_report_only(workdir: Path) -> None:
    out = workdir / RESULTS / "demo-audio"
    predicted = pd.read_csv(out / "predicted_labels.csv")
    fix = predicted[["item_id", "label"]].head(5).assign(label="relabelled")
    fix = pd.concat([fix, pd.DataFrame({"item_id": ["no-such-item"], "label": ["x"]})])
    fix.to_csv(workdir / "fix.csv", index=False)
    config_path = workdir / "config" / "config.yaml"
    original = config_path.read_text()
    config = yaml.safe_load(original)
    config["datasets"]["demo-audio"]["labels_corrections"] = "fix.csv"
    try:
        config_path.write_text(yaml.safe_dump(config))
        plan = _snakemake(workdir, "-n")
        assert plan.returncode == 0, plan.stderr[-2000:]
        assert _jobs(plan.stdout + plan.stderr) == {"all", "evaluate", "report"}
        done = _snakemake(workdir)
    finally:
        config_path.write_text(original)
    assert done.returncode == 0, done.stderr[-4000:]
    corrections = json.loads((out / "metrics.json").read_text())["corrections"]
    assert corrections["n_changed"] == 5 and corrections["n_unknown_ids"] == 1
    assert (pd.read_csv(out / "predicted_labels.csv")["label"] == "relabelled").sum() == 5
    page = (out / "report" / "index.html").read_text()
    assert "5 labels corrected" in page and "no-such-item" in page
