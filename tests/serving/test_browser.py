"""The web page in a real browser: Debian's Chromium, headless, driven by Playwright (sync API)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.serving.conftest import LiveServer, png_bytes

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS, timeout=60_000)
        except Exception as e:  # the binary exists but cannot start here
            pytest.skip(f"Chromium at {CHROMIUM} did not start: {str(e)[:200]}")
        yield b
        b.close()


def test_upload_shows_findings_heatmap_similar_and_timeline(browser, make_client, serving_index, tmp_path):
    _, app = make_client(index=serving_index)
    image = tmp_path / "xray.png"
    image.write_bytes(png_bytes(4, size=96, bright_blob=True))
    errors: list[str] = []
    with LiveServer(app) as srv:
        # An earlier study of the same patient, so that the page draws a timeline of two studies.
        import httpx

        prior = httpx.post(
            srv.url + "/v1/predict",
            files={"file": ("prior.png", png_bytes(7, size=96), "image/png")},
            data={"patient_id": "WEB-1", "study_date": "2024-04-01"},
            timeout=30,
        )
        assert prior.status_code == 200
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(srv.url + "/", wait_until="domcontentloaded")
        page.wait_for_function("() => document.querySelector('#model').options.length > 0", timeout=20_000)
        page.fill("#patient", "WEB-1")
        page.fill("#date", "2024-05-06")
        page.set_input_files("#file", str(image))
        page.click("#go")  # analysis starts from the button, never from the file choice alone
        page.wait_for_selector("#findings li", timeout=30_000)
        page.wait_for_function(
            "() => { const i = document.querySelector('#heatmap'); return i && i.complete && i.naturalWidth > 0; }",
            timeout=30_000,
        )
        page.wait_for_function(
            "() => [...document.querySelectorAll('#gallery img')].filter(i => i.naturalWidth > 0).length >= 4",
            timeout=30_000,
        )
        page.wait_for_function(
            "() => { const i = document.querySelector('#timelineplot'); return i && i.complete && i.naturalWidth > 0; }",
            timeout=30_000,
        )
        names = page.locator("#findings li .name").all_inner_texts()
        probs = [float(t) for t in page.locator("#findings li .p").all_inner_texts()]
        assert sorted(names) == ["NORMAL", "PNEUMONIA"] and probs == sorted(probs, reverse=True)
        # Moving the threshold slider re-colours the findings above it.
        page.eval_on_selector("#threshold", "el => { el.value = 0; el.dispatchEvent(new Event('input')); }")
        assert page.locator("#findings li.above").count() == 2
        page.eval_on_selector("#threshold", "el => { el.value = 1; el.dispatchEvent(new Event('input')); }")
        assert page.locator("#findings li.above").count() == 0
        page.click("#reset")
        above = page.locator("#findings li.above").count()
        assert above == sum(p >= app.state.cxr.models["tiny"].default_threshold for p in probs)
        assert "2 studies of patient WEB-1" in page.inner_text("#tlsummary")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser_upload.png"), full_page=True)
        page.close()
    assert errors == []
    assert app.state.cxr.store.count() == 2  # the prior study + one analysis for the page's image


HOT = "rgb(192, 57, 43)"  # --hot: the alarm red


def _open(browser, srv, width=1280):
    page = browser.new_page(viewport={"width": width, "height": 1000})
    page.goto(srv.url + "/", wait_until="domcontentloaded")
    page.wait_for_function("() => document.querySelector('#model').options.length > 0", timeout=20_000)
    return page


def test_analyse_waits_for_the_button_warns_and_clears_after_a_failure(browser, make_client, tmp_path):
    """Issue 12, item 13: no analysis on file choice; intended-input warning; NORMAL not red; failures clear."""
    _, app = make_client()
    store = app.state.cxr.store
    big, bad = tmp_path / "big.png", tmp_path / "broken.png"
    big.write_bytes(png_bytes(3, size=300, bright_blob=True))  # the tiny model was trained on 32 px images
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with LiveServer(app) as srv:
        page = _open(browser, srv)
        page.set_input_files("#file", str(big))
        page.wait_for_timeout(1500)
        assert store.count() == 0 and page.is_enabled("#go")  # choosing a file does not analyse it
        page.fill("#patient", "WEB-2")
        page.click("#go")
        page.wait_for_selector("#findings li", timeout=30_000)
        assert store.count() == 1 and store.patient_analyses("WEB-2")
        assert page.is_visible("#warnings") and "larger than the model was made for" in page.inner_text("#warnings")
        page.eval_on_selector("#threshold", "el => { el.value = 0; el.dispatchEvent(new Event('input')); }")
        normal = page.locator("#findings li.above", has_text="NORMAL")
        sick = page.locator("#findings li.above", has_text="PNEUMONIA")
        assert normal.evaluate("li => getComputedStyle(li.querySelector('.name')).color") != HOT
        assert sick.evaluate("li => getComputedStyle(li.querySelector('.name')).color") == HOT
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser_warning.png"), full_page=True)
        page.set_input_files("#file", str(bad))
        page.click("#go")
        page.wait_for_selector("#error", state="visible", timeout=30_000)
        assert page.locator("#findings li").count() == 0 and page.locator("#heatmap").count() == 0
        assert not page.is_visible("#warnings") and not page.is_visible("#viewtoggle")
        assert "No image analysed yet" in page.inner_text("#summary")
        page.screenshot(path=str(ARTIFACTS / "browser_failed_upload.png"), full_page=True)
        page.close()
    assert store.count() == 1


def test_header_fits_on_one_phone_width(browser, make_client):
    _, app = make_client()
    with LiveServer(app) as srv:
        page = _open(browser, srv, width=420)
        header = page.evaluate(
            "() => { const h = document.querySelector('header'), s = h.querySelector('.sub');"
            " return {height: h.getBoundingClientRect().height, sub: s.getBoundingClientRect().height,"
            " scroll: document.documentElement.scrollWidth}; }"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser_420px.png"), full_page=True)
        page.close()
    assert header["scroll"] <= 420  # no sideways scrolling
    assert header["sub"] <= 20 and header["height"] <= 80, header  # two lines at most, the subtitle on one


def test_multiclass_result_never_contradicts_itself(browser, tmp_path):
    """Issue 12, item 12: an exclusive multi-class model shows one call, the model's own (its operating class
    at its threshold, else the most probable class), highlighted once and explained."""
    from cxrkit.serving.app import create_app
    from cxrkit.serving.predictor import Predictor

    predictor = Predictor.load("covid3")
    app = create_app({"covid3": predictor}, db_url=f"sqlite:///{tmp_path / 'c.db'}")
    image = tmp_path / "x.png"
    image.write_bytes(png_bytes(5, size=200, bright_blob=True))
    call = predictor.predict_bytes(image.read_bytes())["findings"][0]
    with LiveServer(app) as srv:
        page = _open(browser, srv)
        page.set_input_files("#file", str(image))
        page.click("#go")
        page.wait_for_selector("#findings li", timeout=60_000)
        summary = page.inner_text("#summary")
        assert f"Call: {call}" in summary and "none" not in summary
        assert ("operating point" in summary) == bool(predictor.bundle.thresholds)
        assert page.locator("#findings li.above").count() == 1
        assert page.locator("#findings li.above .name").inner_text() == call
        assert not page.is_visible("#sliderbox")
        page.close()
    app.state.cxr.store.close()


def test_page_works_under_its_csp(browser, make_client):
    """Issue 12 item 7: the page runs under its Content-Security-Policy with no violation (no eval needed)."""
    _, app = make_client()
    errors: list[str] = []
    with LiveServer(app) as srv:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        resp = page.goto(srv.url + "/", wait_until="load")
        assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
        page.locator("#model option").first.wait_for(state="attached", timeout=20_000)
        docs = page.goto(srv.url + "/docs", wait_until="networkidle")
        assert docs.status == 200
        page.locator(".swagger-ui .info").first.wait_for(timeout=20_000)  # Swagger UI rendered from local assets
        page.close()
    assert errors == []
