"""The report in a real headless Chromium: loads cleanly, shows tiles on hover, plays sound, exports a selection.

Chromium is the system's (Debian: ``apt-get install chromium``; or set ``QUAGGA_CHROMIUM``), driven by
Playwright without any browser download. Without a Chromium the tests skip, unless
``QUAGGA_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where a missing browser is a failure. Screenshots go to
``test-artifacts/`` (or ``QUAGGA_ARTIFACTS``).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_report_html import HOSTILE_LABEL, N, _make_inputs, label_next_ids, with_predictions

from quagga.report import build_report

pytestmark = pytest.mark.browser

ARTIFACTS = Path(os.environ.get("QUAGGA_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
READY = "() => window.Bokeh && [...Bokeh.index.all_views()].some(v => v.model.name === 'map')"
POINT_XY = """(i) => {
  const map = [...Bokeh.index.all_views()].find(v => v.model.name === 'map');
  const data = Bokeh.documents[0].get_model_by_name('points').data;
  const box = map.canvas_view.el.getBoundingClientRect();
  return [box.left + map.frame.x_scale.compute(data.x[i]), box.top + map.frame.y_scale.compute(data.y[i])];
}"""


def _chromium() -> str | None:
    return os.environ.get("QUAGGA_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = _chromium()
    missing = "no Chromium found (apt-get install chromium, or set QUAGGA_CHROMIUM)" if not executable else ""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[test]')"
    if missing:
        if os.environ.get("QUAGGA_REQUIRE_BROWSER") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser: object, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """The test report open in a fresh page; console errors are collected in ``page.errors``."""
    root = tmp_path_factory.mktemp("browser-report")
    path = build_report(**_make_inputs(root))
    context = browser.new_context(viewport={"width": 1300, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("dialog", lambda d: page.errors.append(f"dialog opened: {d.message}"))  # an alert() = XSS
    page.goto(path.as_uri())
    page.wait_for_function(READY)
    page.locator("#embedding").scroll_into_view_if_needed()
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=False)
    context.close()


def _point(page, i: int) -> tuple[float, float]:
    x, y = page.evaluate(POINT_XY, i)
    return x, y


def test_page_loads_without_errors_and_draws_every_point(page) -> None:
    assert page.evaluate("() => Bokeh.documents[0].get_model_by_name('points').data.x.length") == N
    page.wait_for_timeout(300)
    assert page.errors == []


def test_hover_shows_the_tile_and_hostile_labels_stay_text(page) -> None:
    labels = page.evaluate("() => Bokeh.documents[0].get_model_by_name('points').data.label")
    hostile = labels.index(HOSTILE_LABEL)
    page.mouse.move(*_point(page, hostile))
    tile = page.locator("img[alt=tile]").first
    tile.wait_for(state="visible", timeout=5000)
    assert tile.get_attribute("src").startswith("data:image/jpeg;base64,")
    assert tile.evaluate("img => img.naturalWidth") == 64  # the thumbnail decoded
    assert page.locator("img[alt=tile]").count() == 1  # one tooltip, never a stack
    assert page.get_by_text(HOSTILE_LABEL, exact=True).first.is_visible()  # shown as text, never run
    assert page.errors == []


def test_clicking_an_audio_point_plays_its_sound(page) -> None:
    page.evaluate("""() => { window.played = false;
        document.getElementById('quagga-player').addEventListener('playing', () => { window.played = true; }); }""")
    page.mouse.click(*_point(page, 0))
    page.wait_for_function("() => window.played === true", timeout=5000)
    state = page.evaluate("""() => { const a = document.getElementById('quagga-player');
                                     return {src: a.src.slice(0, 22), t: a.currentTime}; }""")
    assert state["src"] == "data:audio/ogg;base64,"
    page.wait_for_function("() => document.getElementById('quagga-player').currentTime > 0", timeout=5000)
    item = page.locator("#quagga-player-item").inner_text()
    assert item.startswith("item")
    assert page.errors == []


def test_selection_is_listed_and_exported_as_csv(page) -> None:
    chosen = [3, 7, 11]
    page.evaluate(f"() => {{ Bokeh.documents[0].get_model_by_name('points').selected.indices = {chosen}; }}")
    assert page.locator("#quagga-selection").inner_text().startswith("3 selected")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download selection as CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [r["item_id"] for r in rows] == [f"item{i:03d}" for i in chosen]
    assert rows[1]["source"] == '"><img src=x onerror=alert(2)>.wav'  # quoted in CSV, intact
    assert set(rows[0]) == {"item_id", "label", "cluster", "source", "x", "y"}
    assert page.errors == []


def test_colour_by_switches_the_point_colours(page) -> None:
    before = page.evaluate("() => Bokeh.documents[0].get_model_by_name('points').data.colour.slice()")
    page.evaluate("() => { Bokeh.documents[0].get_model_by_name('colour-by').value = 'label'; }")
    after = page.evaluate("() => Bokeh.documents[0].get_model_by_name('points').data.colour.slice()")
    label = page.evaluate("() => Bokeh.documents[0].get_model_by_name('points').data.colour_label")
    assert after == label and after != before


@pytest.fixture()
def predicted_page(browser: object, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """The report of a run with predicted labels and corrections, open at its top."""
    root = tmp_path_factory.mktemp("browser-predicted")
    path = build_report(**with_predictions(_make_inputs(root), root))
    context = browser.new_context(viewport={"width": 1300, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("dialog", lambda d: page.errors.append(f"dialog opened: {d.message}"))
    page.goto(path.as_uri())
    page.wait_for_function(READY)
    page.label_next = label_next_ids(root)
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=False)
    context.close()


def test_the_summary_is_first_and_above_the_fold(predicted_page) -> None:
    first = predicted_page.evaluate("() => document.querySelector('section').id")
    box = predicted_page.locator("#overview").bounding_box()
    assert first == "overview" and box["y"] + box["height"] <= 1000  # whole, without scrolling
    assert predicted_page.get_by_text("V-measure against the labels").is_visible()
    assert not predicted_page.get_by_text("tiles.n_fft").is_visible()  # parameters folded at the end
    predicted_page.locator("#summary summary").click()
    assert predicted_page.get_by_text("tiles.n_fft").is_visible()


def test_colour_by_predicted_label(predicted_page) -> None:
    points = "Bokeh.documents[0].get_model_by_name('points').data"
    options = predicted_page.evaluate("() => Bokeh.documents[0].get_model_by_name('colour-by').options")
    assert options[:3] == ["cluster", "label", "predicted"] and "predicted_probability" in options
    predicted_page.evaluate("() => { Bokeh.documents[0].get_model_by_name('colour-by').value = 'predicted'; }")
    colours = predicted_page.evaluate(f"() => {points}.colour.slice()")
    data = predicted_page.evaluate(f"() => ({{predicted: {points}.predicted, label: {points}.label, "
                                   f"by_label: {points}.colour_label, by_predicted: {points}.colour_predicted}})")
    assert colours == data["by_predicted"] != data["by_label"]
    # one palette for both: an item predicted as its own label has the same colour either way
    same = [i for i in range(N) if data["predicted"][i] == data["label"][i]]
    assert same and all(data["by_label"][i] == data["by_predicted"][i] for i in same)
    assert predicted_page.errors == []


def test_label_next_list_plays_its_sound_and_downloads_as_csv(predicted_page) -> None:
    section = predicted_page.locator("#label_next")
    section.scroll_into_view_if_needed()
    player = section.locator("audio").first
    player.evaluate("a => { window.played = false; a.addEventListener('playing', () => { window.played = true; }); }")
    player.evaluate("a => a.play()")
    predicted_page.wait_for_function("() => window.played === true", timeout=5000)
    predicted_page.wait_for_function("() => document.querySelector('#label_next audio').currentTime > 0",
                                     timeout=5000)
    with predicted_page.expect_download() as download:
        predicted_page.get_by_role("button", name="Download this list as CSV").click()
    assert download.value.suggested_filename.endswith("-label-next.csv")  # the browser makes the name safe
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [r["item_id"] for r in rows] == predicted_page.label_next
    assert list(rows[0]) == ["item_id", "label", "predicted_label", "probability", "cluster", "source"]
    assert rows[2]["predicted_label"] == HOSTILE_LABEL  # data, intact, never run
    assert predicted_page.errors == []


def test_hovering_an_image_point_shows_its_tile_and_original_crop(browser, tmp_path: Path) -> None:
    """The media ride outside the plot's data (parsed at the first hover): both pictures decode."""
    from test_report_parallel import _image_run

    path = build_report(**_image_run(tmp_path))
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_function(READY)
    page.locator("#embedding").scroll_into_view_if_needed()
    sources = page.evaluate("() => Bokeh.documents[0].get_model_by_name('points').data.source")
    page.mouse.move(*_point(page, next(i for i, s in enumerate(sources) if s != "gone.png")))
    for alt in ("tile", "original"):
        picture = page.locator(f"img[alt={alt}]").first
        picture.wait_for(state="visible", timeout=5000)
        assert picture.get_attribute("src").startswith("data:image/")
        assert picture.evaluate("img => img.naturalWidth") > 0, alt
    assert errors == []
    context.close()
