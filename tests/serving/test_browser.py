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
        page.wait_for_function("document.querySelector('#model').options.length > 0", timeout=20_000)
        page.fill("#patient", "WEB-1")
        page.fill("#date", "2024-05-06")
        page.set_input_files("#file", str(image))
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
