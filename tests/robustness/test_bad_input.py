"""The bad-input battery through the real workflow: one run of `snakemake --cores all` over a workdir
whose datasets hold every bad file and row of battery.py next to good ones, plus datasets that cannot
be used at all. Each kind's outcome (tiled, or skipped with its reason) is read back from the tile
store, the skipped table and the report; the whole-dataset failures from the job logs."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from battery import (
    ANNOTATION_ROWS,
    AUDIO_FILES,
    BOX_ROWS,
    HOSTILE_LABEL,
    IMAGE_FILES,
    STOPPING,
    TILED,
    XFAIL,
    audio_dataset,
    images_dataset,
    snakemake,
    write_bad_audio,
    write_bad_images,
    write_config,
    write_csv,
)

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

@dataclass
class Battery:
    workdir: Path
    audio: dict[str, list[tuple[str, str, str]]]
    images: dict[str, list[tuple[str, str, str]]]
    stderr: str

    def store(self, dataset: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        tiles = self.workdir / "results" / dataset / "tiles"
        return (pd.read_parquet(tiles / "index.parquet"),
                pd.read_csv(tiles / "skipped.csv", dtype=str, keep_default_na=False))


@pytest.fixture(scope="module")
def battery(tmp_path_factory: pytest.TempPathFactory) -> Battery:
    wd = tmp_path_factory.mktemp("battery")
    audio = write_bad_audio(wd / "data" / "audio")
    images = write_bad_images(wd / "data" / "images", "data/images")
    unusable = wd / "data" / "unusable"
    unusable.mkdir()
    (unusable / "a.wav").write_bytes(b"")
    (unusable / "b.wav").write_text("not audio")
    write_csv(unusable / "calls.csv", [{"file": f, "onset_s": 0.1, "offset_s": 0.2, "label": "x"}
                                       for f in ["a.wav", "b.wav", "c.wav"]])
    write_config(wd, {
        "bad-audio": audio_dataset("data/audio", "data/audio/calls.csv"),
        "bad-images": images_dataset("data/images", input="boxes", boxes="data/images/boxes.csv", labels=None),
        "no-usable-items": audio_dataset("data/unusable", "data/unusable/calls.csv"),
    })
    done = snakemake(wd)
    assert done.returncode != 0  # one dataset cannot be used; keep-going finishes the others
    for ds in ["bad-audio", "bad-images"]:
        assert (wd / "results" / ds / "report" / "index.html").is_file(), done.stderr[-4000:]
    return Battery(wd, audio, images, done.stderr)


def _check(battery: Battery, dataset: str, source: str, item: str, outcome: str) -> None:
    index, skipped = battery.store(dataset)
    hit = skipped[(skipped["source"] == source) & (skipped["item"] == item)]
    if dataset == "bad-audio":
        tiled = index[(index["source"] == source) & (index["annotation_row"] == item)]
    else:
        tiled = index[index["source"] == source]
    if outcome.startswith(TILED):
        assert len(tiled) == 1 and hit.empty, f"{source} {item}: expected a tile, skipped: {hit.to_dict('records')}"
        return
    if dataset == "bad-audio":  # (box rows share their image with a good box, whose tile is there)
        assert tiled.empty, f"{source} {item}: expected a skip, got a tile"
    assert len(hit) == 1, f"{source} {item}: not in the skipped table"
    reason = hit["reason"].iloc[0]
    found = outcome in reason if dataset == "bad-audio" else re.search(outcome, reason)
    assert found, f"{source} {item}: reason {reason!r} does not say {outcome!r}"


AUDIO_KINDS = [k[0] for k in AUDIO_FILES] + [k[0] for k in ANNOTATION_ROWS]
IMAGE_KINDS = [pytest.param(k[0], marks=pytest.mark.xfail(strict=True, reason=XFAIL[k[0]])) if k[0] in XFAIL
               else k[0] for k in IMAGE_FILES] + [k[0] for k in BOX_ROWS]


@pytest.mark.parametrize("kind", AUDIO_KINDS)
def test_audio_kind(battery: Battery, kind: str) -> None:
    assert battery.audio[kind], kind
    for source, item, outcome in battery.audio[kind]:
        _check(battery, "bad-audio", source, item, outcome)


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_image_kind(battery: Battery, kind: str) -> None:
    for source, item, outcome in battery.images[kind]:
        _check(battery, "bad-images", source, item, outcome)


def test_what_the_kept_items_carry(battery: Battery) -> None:
    audio, _ = battery.store("bad-audio")
    labels = dict(zip(audio["source"], audio["label"], strict=False))
    assert labels["float.wav"] == "Grünspecht"  # the Windows-1252 table, decoded
    assert audio.loc[audio["annotation_row"] == battery.audio["empty label"][0][1], "label"].isna().all()
    assert audio.loc[audio["source"] == "three_hours.wav", "onset_s"].tolist() == [10790.0]
    images, _ = battery.store("bad-images")
    rotated = images[images["source"] == "data/images/rotated.jpg"].iloc[0]
    assert (rotated["orig_width"], rotated["orig_height"]) == (32, 64)  # EXIF orientation applied
    good = audio["source"].str.startswith("good")
    assert good.sum() == 40 and audio.loc[good, "label"].isin(["low", "sweep"]).all()


@pytest.mark.parametrize("dataset", ["bad-audio", "bad-images"])
def test_every_skip_reaches_the_report_and_the_metrics(battery: Battery, dataset: str) -> None:
    _, skipped = battery.store(dataset)
    results = battery.workdir / "results" / dataset
    assert json.loads((results / "metrics.json").read_text())["n_skipped"] == len(skipped) > 5
    page = (results / "report" / "index.html").read_text()
    for reason in skipped["reason"]:
        assert html.escape(reason) in page, reason


@pytest.mark.parametrize("kind", [k[0] for k in STOPPING])
def test_an_unusable_dataset_stops_with_a_named_error_and_the_others_finish(battery: Battery, kind: str) -> None:
    _, dataset, _, message = next(k for k in STOPPING if k[0] == kind)
    log = (battery.workdir / "results" / "logs" / "tiles_audio" / f"{dataset}.log").read_text()
    assert message in log, log[-2000:]
    assert "Traceback" not in log
    assert not (battery.workdir / "results" / dataset / "tiles").exists()
    assert "Error in rule tiles_audio" in battery.stderr


def test_hostile_label_and_file_name_stay_text_in_the_report(battery: Battery) -> None:
    page = (battery.workdir / "results" / "bad-audio" / "report" / "index.html").read_text()
    assert HOSTILE_LABEL not in page  # not as markup, and not raw inside a <script> (it would end it)
    markup = re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.S | re.I)
    assert '"onerror=' not in markup and "onerror=alert" not in markup.replace("&quot;onerror=alert", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup  # shown, as text (contingency table)


@pytest.mark.parametrize("dataset", ["bad-audio", "bad-images"])
def test_the_report_page_links_nothing_on_the_network(battery: Battery, dataset: str) -> None:
    """No markup loads from the network (Bokeh's inline bundle holds CDN URLs for features the report does
    not use, e.g. MathJax; that none is fetched is checked in a browser below)."""
    page = (battery.workdir / "results" / dataset / "report" / "index.html").read_text()
    assert not re.search(r"<script[^>]*\ssrc=|<link\b|<iframe\b|<object\b|<embed\b", page, flags=re.I)
    markup = re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.S | re.I)
    assert not re.search(r"""(?:src|href|action|poster|srcset)\s*=\s*["']?\s*(?:https?:)?//""", markup, flags=re.I)
    assert not re.search(r"@import|url\(\s*[\"']?\s*(?:https?:)?//", markup, flags=re.I)


def _chromium() -> str | None:
    return os.environ.get("QUAGGA_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.browser
def test_in_a_browser_the_report_requests_nothing_and_runs_no_hostile_script(battery: Battery) -> None:
    """Open the bad-audio report (hostile label and file name, a TeX-like label) in headless Chromium, hover
    the map and colour it by label: no request leaves the page, no dialog opens, no script error."""
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable = None
    if executable is None:
        if os.environ.get("QUAGGA_REQUIRE_BROWSER") == "1":
            pytest.fail("no Chromium / playwright")
        pytest.skip("no Chromium / playwright")
    requests: list[str] = []
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.on("request", lambda r: requests.append(r.url))
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
        page.goto((battery.workdir / "results" / "bad-audio" / "report" / "index.html").as_uri())
        page.wait_for_function("() => window.Bokeh && [...Bokeh.index.all_views()].length > 0")
        page.locator("#embedding").scroll_into_view_if_needed()
        box = page.locator("#embedding canvas").first.bounding_box()
        for fx in (0.2, 0.4, 0.5, 0.6, 0.8):
            for fy in (0.3, 0.5, 0.7):
                page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
                page.wait_for_timeout(30)
        select = page.locator("select").first
        if select.count():
            options = select.locator("option").all_inner_texts()
            if any("label" in o for o in options):
                select.select_option(label=next(o for o in options if "label" in o))
        page.wait_for_timeout(500)
        browser.close()
    remote = [u for u in requests if not u.startswith(("file:", "data:", "blob:", "about:"))]
    assert remote == [] and problems == [], (remote, problems)


def test_the_report_names_the_resolved_input_paths(battery: Battery) -> None:
    page = (battery.workdir / "results" / "bad-audio" / "report" / "index.html").read_text()
    for key, relative in [("recordings", "data/audio"), ("annotations", "data/audio/calls.csv")]:
        assert f"inputs.{key}" in page and html.escape(str(battery.workdir.resolve() / relative)) in page
