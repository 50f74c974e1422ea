"""The live view in a real browser: headless Chromium (Debian's) driven by Playwright against `python -m rtik
serve` on loopback, a stream sent over ZeroMQ. The page loads without a console error, names the stream, draws it
(its colours are on the canvas) and the drawing changes as frames arrive; a recording started from the page is
listed by `rtik ctl recordings`. Skipped, with the reason, where Playwright or Chromium is missing."""

from __future__ import annotations

import io
import os
import shutil
import threading
import time

import numpy as np
import pytest
from test_web import FPS, start_daemon, stop_daemon

from rtik.commands.send import load_positions
from rtik.wire.client import Control, Sender

CHROMIUM = os.environ.get("RTIK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",  # WebGL on the CPU
]  # fmt: skip
STREAM_COLOUR = (0x6C, 0xB6, 0xFF)  # the first stream's colour (PALETTE[0] in app.js)
INPUT_COLOUR = (0xFF, 0x8C, 0x3A)  # input points (INPUT_COLOR in app.js)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not os.path.isfile(CHROMIUM):
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set RTIK_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)  # a fresh profile of its own
        yield b
        b.close()


@pytest.fixture(scope="module")
def live(pack, tmp_path_factory, sample_clips):
    """A daemon and one stream, ``browser-actor``, sent at 30 Hz (the clip looped) until the module ends."""
    d = start_daemon(tmp_path_factory.mktemp("webb"), pack)
    clip = load_positions(sample_clips[2])[0]
    stop = threading.Event()

    def send():
        with Sender("browser-actor", d["ep"]["in"]) as tx:
            i = 0
            while not stop.is_set():
                tx.send(clip[i % len(clip)], timestamp=i / FPS, seq=i + 1)
                i += 1
                time.sleep(1 / FPS)

    t = threading.Thread(target=send, daemon=True)
    t.start()
    yield d
    stop.set()
    t.join(5)
    stop_daemon(d)


def open_page(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
    page.goto(url)
    return page, problems


def colour_pixels(png: bytes, rgb, tol: int = 40) -> np.ndarray:
    """Mask of the pixels within ``tol`` of ``rgb`` in a screenshot."""
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return np.abs(a - np.array(rgb)).max(axis=-1) <= tol


def test_the_page_names_draws_and_animates_a_live_stream(browser, live):
    pytest.importorskip("PIL", reason="Pillow is not installed (screenshots are read with it)")
    page, problems = open_page(browser, f"http://127.0.0.1:{live['port']}/")
    page.wait_for_function("() => window.rtikView && rtikView.streams.includes('browser-actor') && rtikView.frames > 5",
                           timeout=30000)  # fmt: skip
    row = page.locator("tr.stream[data-name='browser-actor']")
    row.wait_for(timeout=10000)
    assert "browser-actor" in row.inner_text()
    assert page.locator(".label", has_text="browser-actor").is_visible()
    canvas = page.locator("canvas#view")
    first = canvas.screenshot()
    page.wait_for_timeout(700)
    second = canvas.screenshot()
    bones, inputs = colour_pixels(second, STREAM_COLOUR), colour_pixels(second, INPUT_COLOUR)
    assert bones.sum() > 50 and inputs.sum() > 50, "the stream's bones and input points are not on the canvas"
    moved = colour_pixels(first, STREAM_COLOUR) ^ bones
    assert moved.sum() > 20, "the drawing did not change as frames arrived"
    assert page.evaluate("rtikView.errors") == [] and problems == []
    page.close()


def test_a_recording_started_from_the_page_is_listed_by_ctl(browser, live):
    page, problems = open_page(browser, f"http://127.0.0.1:{live['port']}/")
    button = page.locator("tr.stream[data-name='browser-actor'] button")
    button.wait_for(timeout=30000)
    assert "record" in button.inner_text()
    button.click()
    page.wait_for_function("() => document.getElementById('message').textContent.includes('recording to')",
                           timeout=10000)  # fmt: skip
    with Control(live["ep"]["ctl"]) as ctl:
        recs = [r for r in ctl.recordings() if r["stream"] == "browser-actor"]
    assert len(recs) == 1 and recs[0]["active"] and recs[0]["name"].startswith("browser-actor-")
    page.locator("#recordings a", has_text=recs[0]["name"]).wait_for(timeout=10000)  # listed on the page too
    stop = page.locator("tr.stream[data-name='browser-actor'] button", has_text="stop")
    stop.wait_for(timeout=10000)
    stop.click()
    page.wait_for_function("() => document.getElementById('message').textContent.includes('frames in')",
                           timeout=10000)  # fmt: skip
    with Control(live["ep"]["ctl"]) as ctl:
        done = next(r for r in ctl.recordings() if r["name"] == recs[0]["name"])
    assert not done["active"] and done["bytes"] > 0
    assert problems == []
    page.close()
