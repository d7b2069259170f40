"""The page in a real headless Chromium: upload, paint, generate, watch the video play."""

import os
import re
import shutil
from pathlib import Path

import pytest

from .test_control import depth_zip

SHOTS = Path(__file__).parent / "artifacts"  # screenshots to look at (not committed)
SHOTS.mkdir(exist_ok=True)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("Chromium is not installed (.ci/run installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def set_slider(page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def test_generate_in_the_browser(browser, app_url, picture_path, tmp_path):
    url, out = app_url
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    page.locator("#image input[type=file]").set_input_files(picture_path)
    page.get_by_text("Motion mask (optional)").click()
    canvas = page.locator("#mask canvas").first
    canvas.wait_for(state="visible", timeout=20_000)
    page.wait_for_timeout(1000)  # let the painter take the picture as its background
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.5)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5, steps=8)
    page.mouse.up()
    page.locator("#mask-preview img").wait_for(state="visible", timeout=20_000)
    page.get_by_text("Depth control maps (optional)").click()
    maps = depth_zip(tmp_path, "maps.zip", [255, 200, 150, 100, 50])
    page.locator("#control-maps input[type=file]").set_input_files(maps)
    page.get_by_text("5 maps, so 5 frames").wait_for(timeout=20_000)
    set_slider(page, "steps", 2)
    page.locator("#seed textarea, #seed input").first.fill("77")
    page.locator("#generate").click()
    page.wait_for_function(
        "() => { const v = document.querySelector('#video video');"
        " return v && v.duration > 0 && !isNaN(v.duration); }",
        timeout=120_000,
    )
    assert page.locator("#seed-used textarea, #seed-used input").first.input_value() == "77"
    assert len(list(out.glob("*.mp4"))) == 1
    assert len(list(out.glob("*.mask.png"))) == 1  # the stroke was sent as a mask
    assert len(list(out.glob("*.depth.png"))) == 1  # and the maps as control
    duration = page.evaluate("document.querySelector('#video video').duration")
    assert 0.5 < duration < 1.0  # 5 frames at 7 fps

    # The new video is in the history; its settings come back into the inputs.
    thumbs = page.locator("#history button.thumbnail-item")
    thumbs.first.wait_for(timeout=20_000)
    page.locator("#seed textarea, #seed input").first.fill("")
    thumbs.first.click()
    page.locator("#use-settings").click()
    seed_box = page.locator("#seed textarea, #seed input").first
    page.wait_for_function(
        "() => [...document.querySelectorAll('#seed textarea, #seed input')]"
        ".some(e => e.value === '77')",
        timeout=20_000,
    )
    assert seed_box.input_value() == "77"
    page.screenshot(path=str(SHOTS / "page-1280.png"), full_page=True)

    # Stop ends a long run; nothing half-made is kept.
    set_slider(page, "steps", 100)
    page.locator("#generate").click()
    page.get_by_text(re.compile(r"step \d+ of 100")).first.wait_for(timeout=60_000)
    page.locator("#stop").click()
    page.get_by_text("Stopped.").first.wait_for(timeout=60_000)
    assert len(list(out.glob("*.mp4"))) == 1
    page.close()


def test_phone_width(browser, app_url):
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page.goto(app_url[0])
    page.locator("#generate").wait_for()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0  # nothing sticks out sideways
    page.screenshot(path=str(SHOTS / "page-390.png"), full_page=True)
    page.close()
