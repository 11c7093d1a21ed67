"""The web app end to end in headless Chromium (Debian's, driven by Selenium through chromedriver).

Draws strokes on the canvas with the mouse, presses "Finish my drawing" (or rubs part of the
drawing out and presses "Heal", ...), and checks that the model's strokes appear in its colour. The screenshot is saved to $AISKETCHER_ARTIFACTS (default:
the test's temporary folder); `AISKETCHER_ARTIFACTS=docs pytest tests/test_server_e2e.py` remakes
the README's picture.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from aisketcher.api import Sketcher
from aisketcher.google_models import CACHE_ENV
from aisketcher.server.app import create_app, running
from test_download import serving

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    # Skipped only outside CI: .ci/run installs the browser, so there a missing one fails.
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),
        reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
    ),
]

# Strokes on the 440-pixel pad: a head's outline left open, and an ear, for "cat".
STROKES = [
    [(120, 160), (150, 120), (200, 105), (260, 110), (310, 140), (330, 190), (325, 240)],
    [(150, 125), (140, 70), (190, 108)],
]
# Pixels of the model's colour (#d62728) in the result panels, and how many points each drew.
COUNT_MODEL_INK = """
let red = 0;
for (const canvas of document.querySelectorAll('#results canvas')) {
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] > 128 && data[i] > 150 && data[i + 1] < 110 && data[i + 2] < 110) red++;
  }
}
const points = [...document.querySelectorAll('#results figure')].map((f) => +f.dataset.modelPoints);
return [red, points];
"""

# The eraser's path: across the head's outline (between its points at x 200 and 260), not the ear.
RUB = [(230, 70), (230, 150)]
KEEP_SENT = (  # keep the bodies the page sends
    "window.sent = []; const send = window.fetch;"
    "window.fetch = (url, init) => { window.sent.push([url, init && init.body]);"
    " return send(url, init); };"
)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1200,1060",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def draw_on(driver: webdriver.Chrome, pad: object, strokes: list) -> None:
    """Mouse strokes through real pointer events; Selenium's offsets are from the pad's centre."""
    size = pad.size
    for stroke in strokes:
        (x, y), rest = stroke[0], stroke[1:]
        actions = ActionChains(driver, duration=20)
        actions.move_to_element_with_offset(pad, x - size["width"] // 2, y - size["height"] // 2)
        actions.click_and_hold()
        for nx, ny in rest:
            actions.move_by_offset(nx - x, ny - y)
            x, y = nx, ny
        actions.release().perform()


def open_page(driver: webdriver.Chrome, url: str, cls: str) -> WebDriverWait:
    """Load the app, wait until it has the model's classes, and choose `cls`."""
    driver.get(url)
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    Select(driver.find_element(By.ID, "cls")).select_by_value(cls)
    return wait


def press_and_wait(
    driver: webdriver.Chrome, wait: WebDriverWait, button: str
) -> tuple[str, int, list]:
    """Press a button; when every panel has finished drawing: the status, model ink, points."""
    driver.find_element(By.ID, button).click()
    wait.until(
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, "#results figure")
            and not d.find_elements(By.CSS_SELECTOR, '#results figure[data-state="drawing"]')
        )
    )
    red, points = driver.execute_script(COUNT_MODEL_INK)
    return driver.find_element(By.ID, "status").text, red, points


def test_finish_my_drawing_shows_the_models_strokes(
    browser: webdriver.Chrome, tmp_path: Path
) -> None:
    artifacts = Path(os.environ.get("AISKETCHER_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    with running(create_app(Sketcher.load())) as url:
        wait = open_page(browser, url, "cat")
        count = browser.find_element(By.ID, "count")
        count.clear()
        count.send_keys("8")
        draw_on(browser, browser.find_element(By.ID, "pad"), STROKES)
        assert browser.find_element(By.ID, "ink").text.startswith("2 stroke(s)")

        status, red, points = press_and_wait(browser, wait, "finish")
        shot = artifacts / "app.png"
        browser.save_screenshot(str(shot))
        print(f"screenshot: {shot}")

    figures = browser.find_elements(By.CSS_SELECTOR, "#results figure")
    assert len(figures) == 8
    assert all(f.get_attribute("data-state") == "done" for f in figures), status
    assert status.startswith("Done"), status
    # Quality is not judged here, only that the model's own strokes reached the page.
    assert sum(points) > 0 and red > 0, (points, red)


def test_redraw_as_another_class_takes_the_pull_from_its_slider(browser: webdriver.Chrome) -> None:
    with running(create_app(Sketcher.load())) as url:
        wait = open_page(browser, url, "pig")
        draw_on(browser, browser.find_element(By.ID, "pad"), STROKES)
        browser.execute_script(  # keep the bodies the page sends, and move the slider
            KEEP_SENT + "const s = document.getElementById('pull'); s.value = 1;"
            "s.dispatchEvent(new Event('input'));"
        )
        assert browser.find_element(By.ID, "pull-value").text == "1.0"
        status, red, points = press_and_wait(browser, wait, "redraw")
        sent = browser.execute_script("return window.sent;")
    bodies = [json.loads(body) for url, body in sent if "/api/translate" in url]
    assert bodies and all(b["class_pull"] == 1 for b in bodies), sent
    assert status.startswith("Done"), status
    assert sum(points) > 0 and red > 0, (points, red)


def test_draw_one_draws_one_whatever_how_many_says(browser: webdriver.Chrome) -> None:
    with running(create_app(Sketcher.load())) as url:
        wait = open_page(browser, url, "fish")
        count = browser.find_element(By.ID, "count")
        count.clear()
        count.send_keys("3")
        status, red, points = press_and_wait(browser, wait, "draw-one")
    assert len(points) == 1, points
    assert status.startswith("Done"), status
    assert points[0] > 0 and red > 0, (points, red)


def test_heal_redraws_a_drawing_with_a_part_rubbed_out(browser: webdriver.Chrome) -> None:
    with running(create_app(Sketcher.load())) as url:
        wait = open_page(browser, url, "cat")
        pad = browser.find_element(By.ID, "pad")
        draw_on(browser, pad, STROKES)
        eraser = browser.find_element(By.ID, "eraser")
        eraser.click()
        assert eraser.get_attribute("aria-pressed") == "true"
        draw_on(browser, pad, [RUB])
        ink = browser.find_element(By.ID, "ink")
        assert ink.text.startswith("3 stroke(s)"), ink.text  # the outline rubbed in two
        browser.execute_script(KEEP_SENT)
        status, red, points = press_and_wait(browser, wait, "heal")
        sent = browser.execute_script("return window.sent;")
        figures = browser.find_elements(By.CSS_SELECTOR, "#results figure")
        assert len(figures) == 4, status
        assert all(f.get_attribute("data-state") == "done" for f in figures), status
        assert status.startswith("Done"), status
        assert sum(points) > 0 and red > 0, (points, red)
        browser.find_element(By.ID, "undo").click()  # the rubbing undone
        drawn = ink.text
        assert drawn.startswith("2 stroke(s)"), drawn
        # A result goes to the pad, to be rubbed out and healed in its turn; Undo takes it back.
        figures[0].find_element(By.XPATH, ".//button[text()='Edit']").click()
        assert browser.find_element(By.ID, "status").text.startswith("The drawing is on the pad")
        assert ink.text and ink.text != drawn, ink.text
        browser.find_element(By.ID, "undo").click()
        assert ink.text == drawn
    (body,) = [json.loads(body) for url, body in sent if "/api/heal/stream" in url]
    assert body["class"] == "cat" and body["count"] == 4
    strokes = body["sketch"]["strokes"]
    assert len(strokes) == 3
    assert all(abs(x - 230) > 10 for s in strokes for x, y in s if 70 <= y <= 150), strokes


def test_a_google_model_chosen_on_the_page_draws_and_finishes(
    browser: webdriver.Chrome, tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server downloads the chosen model from a local stand-in for Google's bucket."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    with (
        serving(data_dir.parent / "models" / "magenta-js") as mirror,
        running(create_app(Sketcher.load(), models_url=mirror.base_url)) as url,
    ):
        browser.get(url)
        wait = WebDriverWait(browser, 60)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        choice = Select(browser.find_element(By.ID, "model-choice"))
        assert choice.first_selected_option.text == "built-in model"
        choice.select_by_value("google:bird")
        wait.until(
            lambda d: (
                d.find_element(By.TAG_NAME, "body").get_attribute("data-model") == "google:bird"
            )
        )
        classes = Select(browser.find_element(By.ID, "cls")).options
        assert [o.get_attribute("value") for o in classes] == ["bird"]
        for action in ("redraw", "heal"):  # no encoder: the page says so
            button = browser.find_element(By.ID, action)
            assert not button.is_enabled()
            assert button.get_attribute("title").endswith(
                f"no encoder (Google's models draw and finish only): it cannot {action}."
            ), action
        status, red, points = press_and_wait(browser, wait, "draw-one")
        assert status.startswith("Done") and len(points) == 1 and points[0] > 0 and red > 0
        draw_on(browser, browser.find_element(By.ID, "pad"), STROKES)
        status, red, points = press_and_wait(browser, wait, "finish")
        assert status.startswith("Done") and sum(points) > 0 and red > 0, (status, points)
        labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#results .label")]
        assert labels and all(label.startswith("bird") for label in labels), labels
    assert mirror.log == [("bird.gen.json", None)]
    assert (tmp_path / "cache" / "bird.gen.json").is_file()
