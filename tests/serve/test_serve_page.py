"""The page of ``polyfuse serve`` in a real browser against a real server: headless Chromium opens
``/`` from uvicorn on 127.0.0.1, asks for the API key, builds the form from ``/model``, uploads a
digits-av image and WAV, and shows what ``POST /predict`` answers; a corrupt image names its field.
Skipped when Chromium, chromedriver or selenium is absent (the offline check runs regardless).

``POLYFUSE_PAGE_SCREENSHOT=docs/serve-page.png`` also saves the screenshot of a result there.
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(  # decided before the session's model fixture is built
    CHROMIUM is None or CHROMEDRIVER is None or importlib.util.find_spec("selenium") is None,
    reason="chromium, chromedriver and selenium are needed (make browser)",
)
KEY = "page-test-key"
WAIT_S = 20


def page_text() -> str:
    return resources.files("polyfuse.serve").joinpath("page.html").read_text(encoding="utf-8")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.values: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "action", "poster", "data", "srcset", "formaction") and value:
                self.values.append(value)


def test_page_references_nothing_outside_the_server():
    text = page_text()
    links = _Links()
    links.feed(text)
    local = [v for v in links.values if v.startswith(("/", "#", "data:")) and not v.startswith("//")]
    assert local == links.values
    for external in ("http://", "https://", "//cdn", "@import", '<link rel="stylesheet"', "fonts.g"):
        assert external not in text, external
    assert "url(" not in text.replace("url(data:", "")  # CSS loads nothing either
    assert text.isascii()  # entities and \u escapes: the page reads the same under any locale


@pytest.fixture(scope="module")
def server(digits_model: tuple[Any, Path]) -> Iterator[str]:
    """uvicorn serving the digits model (with an API key) in a thread; its base URL."""
    import httpx
    import uvicorn

    from polyfuse.serve import ServeConfig, create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound here and handed to uvicorn: no race for a free port
    port = sock.getsockname()[1]
    app = create_app(str(digits_model[1]), ServeConfig(api_key=KEY))
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.1)
    yield url
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--window-size=1100,900",
        "--disable-dev-shm-usage",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    frame = driver.execute_script("return window.outerHeight - window.innerHeight")
    driver.set_window_size(1100, 900 + frame)  # a 1100 x 900 viewport, as in docs/serve-page.png
    yield driver
    driver.quit()


def _wait_state(driver: Any, *states: str) -> str:
    """Waits until ``#status`` reaches one of ``states``; the state reached."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    status = driver.find_element(By.ID, "status")
    WebDriverWait(driver, WAIT_S).until(lambda _: status.get_attribute("data-state") in states)
    return str(status.get_attribute("data-state"))


def _submit(driver: Any, files: dict[str, Path], text: str | None) -> str:
    """Clears the form, fills it, presses Predict; the state the page ends in."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "clear").click()
    for name, path in files.items():
        driver.find_element(By.ID, f"field-{name}").send_keys(str(path.resolve()))
    if text is not None:
        driver.find_element(By.ID, "field-text").send_keys(text)
    driver.find_element(By.ID, "submit").click()
    return _wait_state(driver, "done", "error")


def _bars(driver: Any, box: str) -> list[tuple[str, str]]:
    rows = driver.find_elements("css selector", f"#{box} .row")
    assert len(rows) == len(driver.find_elements("css selector", f"#{box} .bar"))
    return [(r.get_attribute("data-name"), r.find_element("css selector", ".num").text) for r in rows]


def _open(driver: Any, server: str) -> None:
    """Loads the page; /model answers 401 until the key is entered, then the form is built."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(f"{server}/")
    assert _wait_state(driver, "auth", "ready") == "auth"
    assert driver.find_element(By.ID, "auth").is_displayed()
    driver.find_element(By.ID, "api-key").send_keys(KEY + Keys.ENTER)
    _wait_state(driver, "ready")


@needs_browser
def test_predict_and_errors_in_the_page(
    browser: Any, server: str, digits_table: Path, digits_model: tuple[Any, Path], tmp_path: Path
):
    import httpx
    from selenium.webdriver.common.by import By

    driver = browser
    _open(driver, server)
    assert driver.find_element(By.ID, "predict-form").get_attribute("data-ready") == "true"
    assert not driver.find_element(By.ID, "auth").is_displayed()
    assert driver.find_element(By.ID, "model-name").text == digits_model[1].name
    fusion = digits_model[0].model_config.fusion.name  # "ensemble" when fit kept one
    assert driver.find_element(By.ID, "model-fusion").text == f"fusion {fusion}"
    accuracy = digits_model[0].metrics["test"]["accuracy"]
    assert driver.find_element(By.ID, "model-metric").text == f"test accuracy {accuracy:.3f}"
    kinds = {"image": "file", "audio": "file", "text": "textarea"}
    for name, kind in kinds.items():
        node = driver.find_element(By.ID, f"field-{name}")
        assert (node.get_attribute("type") if kind == "file" else node.tag_name) == kind

    table = pd.read_csv(digits_table)
    row = table[table["split"] == "test"].iloc[0]
    files = {m: digits_table.parent / row[m] for m in ("image", "audio")}
    assert _submit(driver, files, row["text"]) == "done"
    expected = httpx.post(
        f"{server}/predict",
        files={m: path.read_bytes() for m, path in files.items()},
        data={"text": row["text"]},
        headers={"X-API-Key": KEY},
        timeout=30,
    ).json()
    assert driver.find_element(By.ID, "prediction").text == str(expected["prediction"])
    assert not driver.find_element(By.ID, "error").is_displayed()
    probabilities = _bars(driver, "probabilities")
    assert len(probabilities) == 10 and probabilities[0][0] == str(expected["prediction"])
    shown = [float(p.rstrip("%")) for _, p in probabilities]
    assert shown == sorted(shown, reverse=True)
    assert [name for name, _ in _bars(driver, "contributions")] == ["image", "audio", "text"]
    preview = driver.find_element(By.CSS_SELECTOR, "#preview-image img")
    assert driver.execute_script("return arguments[0].naturalWidth", preview) == 32
    assert driver.find_elements(By.CSS_SELECTOR, "#preview-audio audio")

    shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    shot.save(tmp_path / "page.png")
    if os.environ.get("POLYFUSE_PAGE_SCREENSHOT"):  # for the README: cut below the two cards
        bottom = driver.execute_script("return document.querySelector('main').getBoundingClientRect().bottom")
        shot.crop((0, 0, shot.width, min(shot.height, int(bottom) + 24))).save(
            os.environ["POLYFUSE_PAGE_SCREENSHOT"], optimize=True
        )
    colors = shot.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50  # text, bars, the preview: not a flat page
    assert max(count for count, _ in colors) < 0.9 * shot.width * shot.height

    # Without audio: that modality is shown absent and gets no contribution bar.
    assert _submit(driver, {"image": files["image"]}, row["text"]) == "done"
    assert [name for name, _ in _bars(driver, "contributions")] == ["image", "text"]
    absent = driver.find_element(By.CSS_SELECTOR, '#present [data-modality="audio"]')
    assert "off" in absent.get_attribute("class").split()

    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(os.urandom(2000))
    assert _submit(driver, {"image": corrupt}, None) == "error"
    error = driver.find_element(By.ID, "error")
    assert error.is_displayed() and error.get_attribute("data-field") == "image"
    assert error.text.startswith("image: not a readable image")
    assert "invalid" in driver.find_element(By.ID, "wrap-image").get_attribute("class").split()
    assert not driver.find_element(By.ID, "result").is_displayed()
    errors = [e for e in driver.get_log("browser") if e["source"] == "javascript"]
    assert not errors, errors  # the script itself never failed


REGRESSION = {  # what /explain answers for a regression label (see service.ModelService._label)
    "label": "price",
    "prediction": 12.3456789,
    "value": 12.3456789,
    "present": {"image": False, "audio": False, "text": True},
    "method": "exact Shapley values over modalities (absent = masked, as in training)",
    "target": "predicted value",
    "base": 10.0,
    "full": 12.3456789,
    "contributions": {"image": 0.0, "audio": 0.0, "text": 2.3456789},
    "latency_ms": 3.2,
}


@needs_browser
def test_regression_shows_the_value(browser: Any, server: str):
    """A regression answer (none of the digits model's) drawn by the page: a value, no probability bars."""

    from selenium.webdriver.common.by import By

    driver = browser
    _open(driver, server)
    answer_explain_with(driver, REGRESSION)  # the page's own fetch answers /explain with this body
    assert _submit(driver, {}, "anything") == "done"
    assert driver.find_element(By.ID, "prediction").text == "12.35"
    assert driver.find_element(By.ID, "value").text == "value 12.3457"
    assert not driver.find_element(By.ID, "probabilities-block").is_displayed()
    assert not driver.find_elements(By.CSS_SELECTOR, "#probabilities .bar")
    assert _bars(driver, "contributions") == [("text", "+2.346")]


def answer_explain_with(driver: Any, body: dict[str, Any]) -> None:
    """Make the page's own fetch answer /explain with ``body`` (other paths reach the server)."""
    import json

    driver.execute_script(
        "const body = arguments[0]; const real = window.fetch;"
        "window.fetch = (path, options) => path === '/explain'"
        "  ? Promise.resolve(new Response(body, {headers: {'content-type': 'application/json'}}))"
        "  : real(path, options);",
        json.dumps(body),
    )


TWO_LABELS = {  # /explain's answer for a model with two labels: the first at the top, both in by_label
    "label": "digit",
    "prediction": "3",
    "probabilities": {"3": 0.9, "5": 0.1},
    "predictions": {
        "digit": {"prediction": "3", "probabilities": {"3": 0.9, "5": 0.1}},
        "price": {"prediction": 12.5, "value": 12.5},
    },
    "present": {"image": True, "audio": False, "text": True},
    "target": "probability of 3",
    "base": 0.5,
    "full": 0.9,
    "contributions": {"image": 0.3, "audio": 0.0, "text": 0.1},
    "by_label": {
        "digit": {
            "target": "probability of 3",
            "base": 0.5,
            "full": 0.9,
            "contributions": {"image": 0.3, "audio": 0.0, "text": 0.1},
        },
        "price": {
            "target": "predicted value",
            "base": 10.0,
            "full": 12.5,
            "contributions": {"image": -0.5, "audio": 0.0, "text": 3.0},
        },
    },
    "latency_ms": 2.0,
}


@needs_browser
def test_every_label_is_shown(browser: Any, server: str):
    """A two-label answer: the second label's prediction and its own contributions beside it."""

    from selenium.webdriver.common.by import By

    driver = browser
    _open(driver, server)
    answer_explain_with(driver, TWO_LABELS)
    assert _submit(driver, {}, "anything") == "done"
    assert driver.find_element(By.ID, "prediction").text == "3"
    assert _bars(driver, "contributions") == [("image", "+0.300"), ("text", "+0.100")]
    other = driver.find_element(By.CSS_SELECTOR, '#others li[data-label="price"]')
    assert other.text == "price: 12.50 (contributions to the predicted value: image \u22120.500, text +3.000)"
    assert "These are for digit" in driver.find_element(By.ID, "contributions-note").text
    errors = [e for e in driver.get_log("browser") if e["source"] == "javascript"]
    assert not errors, errors
