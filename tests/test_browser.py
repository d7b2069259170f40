"""The page in a real headless Chromium: upload, paint, generate, watch the video play."""

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from svd.media import fit_image

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
def app_url(tmp_path_factory):
    """The app as a process of its own: here the test process drives Chromium, and a
    server sharing its interpreter would answer the page late on a busy machine."""
    from .live import start_app, stop_app

    out = tmp_path_factory.mktemp("app") / "outputs"
    out.mkdir()
    proc, url = start_app(out)
    yield url, out
    stop_app(proc)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


STATE = """() => {
  const text = (q) => document.querySelector(q)?.innerText.trim().slice(0, 200);
  const v = document.querySelector('#video video');
  return {progress: text('#run-progress'), outcome: text('#outcome'),
          toasts: [...document.querySelectorAll('.toast-body')].map((e) => e.innerText.trim()),
          video: v ? [v.src.slice(-60), v.duration] : null, scrollY: window.scrollY};
}"""


STREAMS: dict = {}  # [how many event streams (Gradio's /queue/data) are open] by page


@contextlib.contextmanager
def telling(page, out: Path):
    """On a failure, add what the page showed, the events it sent and the app's log (CI keeps
    only the text). Counts the page's open event streams for `settle`."""
    sent, streams = [], STREAMS.setdefault(page, [0])

    def note(request):
        if "/queue/join" in request.url or "/run/" in request.url:
            body = json.loads(request.post_data or "{}")
            sent.append((round(time.monotonic(), 1), body.get("fn_index")))
        streams[0] += "/queue/data" in request.url

    def ended(request):
        streams[0] -= "/queue/data" in request.url

    page.on("request", note)
    page.on("requestfinished", ended)
    page.on("requestfailed", ended)
    page.on("console", lambda m: m.type == "error" and sent.append(m.text[:160]))
    try:
        yield
    except Exception as e:
        logs = sorted(out.parent.glob("app-*.log"))
        app_log = logs[-1].read_text()[-3000:] if logs else ""
        raise AssertionError(
            f"{e}\npage: {page.evaluate(STATE)}\nsent: {sent[-30:]}\n"
            f"open event streams: {streams[0]}\napp log: {app_log}"
        ) from e
    finally:
        STREAMS.pop(page, None)


def settle(page, timeout: float = 20) -> None:
    """Wait until the page's last events have ended and Gradio has closed their stream: a
    click just as it closes can leave the new event without one (seen on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while STREAMS[page][0] > 0 and time.monotonic() < deadline:
        page.wait_for_timeout(100)


def click_generate(page) -> None:
    settle(page)
    page.locator("#generate").click()


def set_slider(page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def stop_a_long_run(page) -> None:
    """Start a 100-step run, stop it once it is under way, and wait for the page to say so.
    While it works, its live preview stands in the video's place, and the progress says how
    long it has taken; once stopped, the video is back."""
    set_slider(page, "steps", 100)
    click_generate(page)
    page.get_by_text(re.compile(r"step \d+ of 100")).first.wait_for(timeout=60_000)
    page.locator("#live-preview img").wait_for(state="visible", timeout=60_000)
    assert not page.locator("#video").is_visible()
    assert re.search(r"Denoising · \d+ s", page.locator("#run-progress").inner_text())
    page.locator("#stop").click()
    page.get_by_text(re.compile(r"Stopped after step \d+ of 100")).first.wait_for(timeout=60_000)
    page.locator("#video").wait_for(state="visible", timeout=10_000)
    assert not page.locator("#live-preview").is_visible()


def stroke(page, canvas) -> dict:
    """A short stroke across the middle of the painter, scrolled fully into view first (the
    mouse only reaches what is in the viewport, and text arriving above moves the page)."""
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    y = box["y"] + box["height"] * 0.5
    page.mouse.move(box["x"] + box["width"] * 0.2, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.3, y, steps=8)
    page.mouse.up()
    return {"y": round(y), "viewport": page.viewport_size["height"]}


def test_generate_in_the_browser(browser, app_url, picture_path, tmp_path):
    url, out = app_url
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    with telling(page, out):
        page.goto(url)
        page.locator("#image input[type=file]").set_input_files(picture_path)
        page.get_by_text("Motion mask (optional)").click()
        canvas = page.locator("#mask canvas").first
        canvas.wait_for(state="visible", timeout=20_000)
        page.locator("#crop-preview img").wait_for(timeout=20_000)  # the upload has been taken
        tries = []  # where each stroke landed (for a failure)
        for _ in range(3):  # a stroke made before the painter has the picture is wiped by it
            page.wait_for_timeout(1000)
            tries.append(stroke(page, canvas))
            try:
                page.locator("#mask-preview img").wait_for(state="visible", timeout=10_000)
                break
            except PlaywrightTimeout:
                continue
        else:
            raise AssertionError(f"no mask preview after strokes at {tries}")
        page.get_by_text("Depth control maps (optional)").click()
        maps = depth_zip(tmp_path, "maps.zip", [255, 200, 150, 100, 50])
        page.locator("#control-maps input[type=file]").set_input_files(maps)
        page.get_by_text("5 maps, so 5 frames").wait_for(timeout=20_000)
        set_slider(page, "steps", 2)
        page.locator("#seed textarea, #seed input").first.fill("77")
        click_generate(page)
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
        page.screenshot(path=str(SHOTS / "generate-1280.png"), full_page=True)

        # Stop ends a long run; nothing half-made is kept.
        stop_a_long_run(page)
        assert len(list(out.glob("*.mp4"))) == 1
    page.close()


# -- the page as a stranger meets it, on a laptop and on a phone

CONTRAST = """() => {
  const lum = (c) => {
    const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map((v) => {
      v = v / 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const background = (e) => {
    for (; e; e = e.parentElement) {
      const c = getComputedStyle(e).backgroundColor;
      if (c && !c.startsWith('rgba(0, 0, 0, 0)') && c !== 'transparent') return c;
    }
    return 'rgb(255, 255, 255)';
  };
  return [...document.querySelectorAll('.info-text')].filter((e) => e.offsetParent)
    .map((e) => {
      const [a, b] = [lum(getComputedStyle(e).color), lum(background(e))];
      return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    });
}"""
SOURCE = "document.querySelector('#video video')?.src"
PLAYING = (
    "() => { const v = document.querySelector('#video video');"
    " return v && v.duration > 0 && !isNaN(v.duration) ? v.src : null; }"
)


def in_view(page, selector: str) -> bool:
    box = page.locator(selector).first.bounding_box()
    size = page.viewport_size
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= size["height"]


def errors_shown(page) -> int:
    return page.locator(".toast-body.error").count()


def image_of(page, selector: str) -> np.ndarray:
    src = page.locator(f"{selector} img").first.get_attribute("src")
    data = page.request.get(src).body()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


@pytest.mark.parametrize("width, height", [(1280, 900), (390, 844)])
def test_the_page_for_a_stranger(browser, app_url, picture_path, width, height, tmp_path):
    url, out = app_url
    context = browser.new_context(viewport={"width": width, "height": height})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    page = context.new_page()
    with telling(page, out):
        page.goto(url)
        page.locator("#generate").wait_for()
        assert in_view(page, "#generate")  # the action is on the first screen
        assert in_view(page, "#run-progress")  # and where it will say how the run goes
        if width < 700:  # a phone: the video right after them, then the settings
            order = [
                page.locator(s).first.bounding_box()["y"]
                for s in ("#generate", "#run-progress", "#video", "#motion-bucket-id")
            ]
            assert order == sorted(order), order
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0  # nothing sticks out sideways
        contrasts = page.evaluate(CONTRAST)
        assert contrasts and min(contrasts) >= 4.5, contrasts
        page.keyboard.press("Tab")
        for _ in range(40):  # the keyboard reaches a slider, and it shows where it is
            if page.evaluate("document.activeElement.type") == "range":
                break
            page.keyboard.press("Tab")
        ring = page.evaluate("getComputedStyle(document.activeElement).outlineWidth")
        assert float(ring.removesuffix("px")) >= 2
        assert page.locator("#dice").get_attribute("aria-label")

        # An example shows its video with one click (made on first use, kept after): the
        # lake, the quicker of the two to make.
        page.locator("#examples button.thumbnail-item").first.click()
        page.wait_for_function(PLAYING, timeout=180_000)
        assert errors_shown(page) == 0
        assert page.locator("#seed textarea, #seed input").first.input_value() == "1"  # filled
        assert page.locator("#image img").count() == 1

        # The picture: what the model gets is shown, fitted as the run will fit it.
        page.locator("#image input[type=file]").set_input_files(picture_path)
        expected = np.asarray(fit_image(Image.open(picture_path).convert("RGB"), 256, 128)).astype(
            int
        )
        deadline, difference = time.monotonic() + 30, None
        while time.monotonic() < deadline:  # the example's crop is shown until ours replaces it
            if page.locator("#crop-preview img").count():
                shown = image_of(page, "#crop-preview")
                if shown.shape == expected.shape:
                    difference = np.abs(shown - expected).mean()
                    if difference < 2:
                        break
            page.wait_for_timeout(300)
        assert difference is not None and difference < 2

        # Generate: the progress shows where the button is (no clock here: a busy CI is slow).
        set_slider(page, "steps", 3)
        before = page.evaluate(SOURCE)
        said = page.locator("#run-progress").inner_text()  # the example's line
        click_generate(page)
        page.wait_for_function(
            f"() => {{ const t = document.querySelector('#run-progress').innerText.trim();"
            f" return t && t !== {json.dumps(said)}; }}",
            timeout=30_000,
        )
        assert in_view(page, "#run-progress")
        page.wait_for_function(f"() => ({SOURCE}) && ({SOURCE}) !== {json.dumps(before)}",
                               timeout=120_000)  # fmt: skip
        page.locator("#video video").scroll_into_view_if_needed()  # a phone loads it in view
        page.wait_for_function(PLAYING, timeout=60_000)
        made = page.evaluate(PLAYING)
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(500)
        page.screenshot(path=str(SHOTS / f"page-{width}.png"))  # the README shows these two

        # Stop mid-run: an info line, no error, and the last video stays.
        stop_a_long_run(page)
        assert errors_shown(page) == 0 and page.evaluate(PLAYING) == made
        assert page.locator("#video video").get_attribute("playsinline") is not None
        assert page.locator("#video video").get_attribute("muted") is not None
        page.screenshot(path=str(SHOTS / f"page-{width}-stopped.png"), full_page=True)

        if width == 1280:  # the API panel's curl, run as it is, makes a video
            set_slider(page, "steps", 2)
            page.get_by_text("Use this from code").click()
            copy = page.locator("#api-curl button").first
            copy.wait_for(timeout=20_000)
            page.wait_for_function(
                "() => document.querySelector('#api-curl').innerText.includes('fal-ai/svd')",
                timeout=20_000,
            )
            copy.click()
            script = page.evaluate("navigator.clipboard.readText()")
            assert '"steps": 2' in script and "data:image/png;base64," in script
            (tmp_path / "snippet.sh").write_text(script)
            done = subprocess.run(["bash", str(tmp_path / "snippet.sh")], capture_output=True,
                                  text=True, timeout=120)  # fmt: skip
            assert done.returncode == 0, done.stderr
            answer = json.loads(done.stdout)
            assert (out / answer["image"]["file_name"]).is_file()
    context.close()


# -- the model picker and several videos


def number(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} input[type=number]").input_value()


def pick_model(page, name: str) -> None:
    page.locator("#model input").click()
    page.get_by_role("option", name=re.compile(f"^{re.escape(name)} ·")).click()


def wait_number(page, elem_id: str, value: str) -> None:
    page.wait_for_function(
        f"() => document.querySelector('#{elem_id} input[type=number]')?.value === '{value}'",
        timeout=20_000,
    )


def test_models_and_two_videos_in_the_browser(browser, app_url, picture_path):
    url, out = app_url
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    with telling(page, out):
        before = len(list(out.glob("*.mp4")))
        page.goto(url)
        page.locator("#image input[type=file]").set_input_files(picture_path)
        page.get_by_text("Advanced", exact=True).click()
        set_slider(page, "min-guidance-scale", 1.5)  # the visitor's own: it stays

        # AnimateLCM: its steps, fps and guidance, its licence, no depth maps.
        pick_model(page, "animatelcm-svd-xt")
        wait_number(page, "steps", "4")
        assert (number(page, "fps"), number(page, "max-guidance-scale")) == ("8", "1.2")
        assert number(page, "min-guidance-scale") == "1.5"
        page.get_by_text("wangfuyun/AnimateLCM-SVD-xt").wait_for(timeout=20_000)
        page.wait_for_function(  # the outcome line follows the fps field: a later update
            "() => document.querySelector('#outcome').innerText.includes('25 frames at 8 fps')",
            timeout=20_000,
        )
        assert page.locator("#depth-note").is_visible()
        assert not page.get_by_text("Depth control maps (optional)").is_visible()

        # Back on tiny: two videos side by side, each with its seed, both in the history.
        pick_model(page, "tiny")
        wait_number(page, "steps", "20")
        assert page.get_by_text("Depth control maps (optional)").is_visible()
        for elem_id, value in (("steps", 2), ("num-videos", 2), ("num-frames", 4),
                               ("width", 192), ("height", 128)):  # fmt: skip
            set_slider(page, elem_id, value)
        page.locator("#seed textarea, #seed input").first.fill("60")
        click_generate(page)
        page.wait_for_function(
            "() => document.querySelectorAll('#videos video').length === 2", timeout=120_000
        )
        row = page.locator("#videos").inner_text()
        assert "seed 60" in row and "seed 61" in row
        seed_used = page.locator("#seed-used textarea, #seed-used input").first
        assert seed_used.input_value() == "60, 61"
        history = page.locator("#history")
        page.wait_for_function(
            "() => ['seed 60 ', 'seed 61 '].every((s) =>"
            " document.querySelector('#history').innerText.includes(s))",
            timeout=20_000,
        )
        assert len(list(out.glob("*.mp4"))) == before + 2
        page.screenshot(path=str(SHOTS / "two-videos-1280.png"), full_page=True)

        # The second one's settings come back: its seed, one video.
        history.locator("button.thumbnail-item", has_text="seed 61").first.click()
        page.locator("#use-settings").click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('#seed textarea, #seed input')]"
            ".some(e => e.value === '61')",
            timeout=20_000,
        )
        wait_number(page, "num-videos", "1")
    page.close()
