"""The report in a real browser: headless Chromium opens the file offline, every figure decodes and
the page renders to a non-blank screenshot. Skipped when Chromium, chromedriver or selenium is absent.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from test_report import ALL_SECTIONS, write_compare_dir

from polyfuse.htmlreport import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole module (starting one takes a second or two)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromedriver are not installed (make browser)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--window-size=1280,2000",
        "--disable-dev-shm-usage",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def opened(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The report of a compare directory (with best/ and explain/), loaded from a file:// URL."""
    import polyfuse
    from conftest import FAST, synthetic_frame

    root = tmp_path_factory.mktemp("browser")
    model = root / "model"
    polyfuse.fit(synthetic_frame(120), label="kind", out=model, max_epochs=2, **FAST)
    page = build_report(write_compare_dir(root / "compare", model), root / "report.html")
    browser.get(page.resolve().as_uri())
    return browser


def test_title_and_sections(opened: Any):
    from selenium.webdriver.common.by import By

    assert opened.title == "polyfuse report: compare (comparison)"
    for section in ALL_SECTIONS:
        element = opened.find_element(By.ID, section)
        assert element.is_displayed() and element.size["height"] > 40, section
    summary = opened.find_element(By.ID, "summary").text
    assert summary.startswith("best: text+tabular with gmu, accuracy 0.881 ± ")
    links = opened.find_elements(By.CSS_SELECTOR, "nav a")
    assert [a.get_attribute("href").split("#")[1] for a in links] == ALL_SECTIONS


def test_every_figure_decodes(opened: Any):
    sizes = opened.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]);"
    )
    assert len(sizes) == 13  # as test_report counts them
    assert all(done and width > 0 and height > 0 for done, width, height in sizes), sizes


def test_no_request_leaves_the_file(opened: Any):
    # Every resource the page loaded came from the file itself (data: URIs) or the file: URL.
    urls = opened.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
    assert all(url.startswith(("data:", "file:")) for url in urls), urls


def test_screenshot_is_not_blank(opened: Any):
    shot = Image.open(io.BytesIO(opened.get_screenshot_as_png())).convert("RGB")
    assert shot.width >= 1000 and shot.height >= 1000
    colors = shot.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50  # header, text, tables and figures, not one flat colour
    dominant = max(count for count, _ in colors)
    assert dominant < 0.9 * shot.width * shot.height
