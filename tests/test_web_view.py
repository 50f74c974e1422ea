"""`rtik view`: which files are shown together, how a file is drawn (metres, Y up), the HTTP answers, the command
itself, and the page in headless Chromium drawing an input and its output side by side."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from test_web_browser import ARGS, CHROMIUM, colour_pixels

from rtik.cli import build_parser
from rtik.errors import InputError
from rtik.formats import bvh
from rtik.serve.webfiles import FilesView, groups_of, read_clip
from rtik.serve.webserver import WebServer


@pytest.fixture(scope="module")
def takes(sample_clips, tmp_path_factory):
    """Two folders: ``in/`` with three clips, ``out/`` with two of them (copies, deleted after the tests)."""
    root = tmp_path_factory.mktemp("takes")
    (root / "in").mkdir()
    (root / "out").mkdir()
    for p in sample_clips[:3]:
        shutil.copy(p, root / "in" / p.name)
    for p in sample_clips[1:3]:
        shutil.copy(p, root / "out" / p.name)
    return root


def test_what_is_shown_together(takes):
    a, b = sorted((takes / "in").iterdir()), sorted((takes / "out").iterdir())
    assert groups_of([a[0]]) == [[(a[0], "")]]
    assert groups_of([takes / "in"]) == [[(f, "")] for f in a]
    assert groups_of([a[0], b[0]]) == [[(a[0], "input"), (b[0], "output")]]
    assert groups_of([takes / "in", takes / "out"]) == [
        [(a[0], "input")], [(a[1], "input"), (b[0], "output")], [(a[2], "input"), (b[1], "output")],
    ]  # fmt: skip
    with pytest.raises(InputError, match="no such file or folder"):
        groups_of([takes / "nope.bvh"])
    with pytest.raises(InputError, match="two files or two folders"):
        groups_of([a[0], takes / "out"])
    with pytest.raises(InputError, match="got 3"):
        groups_of([a[0], a[1], a[2]])
    (takes / "empty").mkdir(exist_ok=True)
    with pytest.raises(InputError, match="no .bvh, .npz, .csv files"):
        groups_of([takes / "empty"])


def test_a_file_is_drawn_in_metres_y_up(sample_clips, tmp_path):
    m = bvh.read(sample_clips[0])  # Bandai Namco: centimetres, Y up
    c = read_clip(sample_clips[0])
    assert c.unit == "cm" and c.fps == pytest.approx(m.fps) and c.names == tuple(m.skeleton.names)
    np.testing.assert_allclose(c.positions, m.positions() * 0.01, atol=1e-5)
    assert len(c.bones) == len(m.skeleton) - 2  # no line to the static root
    assert read_clip(sample_clips[0], stride=3).positions.shape[0] == len(range(0, m.num_frames, 3))
    # the same motion in a Z-up world (Blender's): turned upright again
    from rtik.geometry import rotations as rot

    q, root = m.local_quats(), m.skeleton.motion_root()
    to_z = rot.axis_angle_to_quat(np.array([np.pi / 2, 0.0, 0.0]))  # +Y -> +Z
    q[:, root] = rot.quat_mul(to_z, q[:, root])
    root_pos = rot.quat_apply(to_z, m.local_positions()[:, root])
    bvh.write(tmp_path / "z-up.bvh", bvh.from_pose(m.skeleton, q, m.frame_time, root_pos))
    z = read_clip(tmp_path / "z-up.bvh", units="cm")
    np.testing.assert_allclose(z.positions, c.positions, atol=1e-4)
    pts = m.positions()[:20]
    turned = pts[..., [0, 2, 1]] * np.array([1, -1, 1])  # Y up -> Z up
    np.savez(tmp_path / "pts.npz", positions=turned, joints=np.array(m.skeleton.names), fps=30.0, units="cm",
             mask=np.ones(turned.shape[:2], bool))  # fmt: skip
    p = read_clip(tmp_path / "pts.npz")
    assert p.bones == [] and p.unit == "cm"
    np.testing.assert_allclose(p.positions, turned * 0.01, atol=1e-5)  # points files are drawn as they are
    (tmp_path / "bad.bvh").write_text("HIERARCHY\nROOT oops {\n")
    with pytest.raises(InputError, match="bad.bvh"):
        read_clip(tmp_path / "bad.bvh")


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_files_server_answers(takes):
    a = sorted((takes / "in").iterdir())
    (takes / "out" / "broken.bvh").write_text("not a bvh")
    server = WebServer(FilesView([takes / "in", takes / "out"]), "127.0.0.1", 0)
    server.start()
    try:
        status, body = get(server.port, "/api/info?group=1")
        info = json.loads(body)
        assert status == 200 and info["mode"] == "files" and len(info["groups"]) == 4
        assert [c["side"] for c in info["clips"]] == ["input", "output"] and info["clips"][1]["offset"] > 0
        status, body = get(server.port, "/clip/0?group=1")
        want = read_clip(a[1]).positions
        assert status == 200 and np.array_equal(np.frombuffer(body, "<f4").reshape(want.shape), want)
        broken = json.loads(get(server.port, "/api/info?group=3")[1])["clips"][0]
        assert broken["name"] == "broken.bvh" and "broken.bvh" in broken["error"]
        assert get(server.port, "/clip/0?group=3")[0] == 400
        assert get(server.port, "/api/info?group=9")[0] == 404 and get(server.port, "/clip/5?group=0")[0] == 404
        assert get(server.port, "/")[0] == 200
    finally:
        server.stop()
        (takes / "out" / "broken.bvh").unlink()


def test_rtik_view_serves_until_stopped(takes, capsys):
    from rtik.commands import view

    args = build_parser().parse_args(["view", str(takes / "in"), "--port", "0", "--no-browser"])
    ready, stop = threading.Event(), threading.Event()
    t = threading.Thread(target=view.run, args=(args, ready, stop))
    t.start()
    assert ready.wait(30)
    url = capsys.readouterr().out.split("rtik view: ")[1].split(" ")[0]
    with urllib.request.urlopen(url + "api/info", timeout=10) as r:
        assert json.loads(r.read())["groups"][0] == sorted(p.name for p in (takes / "in").iterdir())[0]
    stop.set()
    t.join(10)
    assert not t.is_alive()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["view", "x.bvh", "--stride", "0"])


def test_the_page_draws_an_input_and_its_output_side_by_side(takes):
    """Two files, two figures in two colours, moving as the clip plays; no console error."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    pytest.importorskip("PIL", reason="Pillow is not installed (screenshots are read with it)")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set RTIK_CHROMIUM)")
    a, b = sorted((takes / "in").iterdir())[1], sorted((takes / "out").iterdir())[0]
    server = WebServer(FilesView([a, b]), "127.0.0.1", 0)
    server.start()
    problems = []
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(server.url)
            page.wait_for_function("() => window.rtikView && rtikView.ready && rtikView.frames > 3", timeout=30000)
            assert page.evaluate("rtikView.streams") == [f"{a.name} · input", f"{b.name} · output"]
            canvas = page.locator("canvas#view")
            first = canvas.screenshot()
            page.wait_for_timeout(600)
            second = canvas.screenshot()
            browser.close()
    finally:
        server.stop()
    left, right = colour_pixels(second, (0x6C, 0xB6, 0xFF)), colour_pixels(second, (0x5A, 0xD1, 0x7A))
    assert left.sum() > 50 and right.sum() > 50, "both figures are drawn"
    cols = lambda mask: np.nonzero(mask.any(axis=0))[0].mean()  # noqa: E731
    assert cols(left) < cols(right), "the input is drawn left of its output"
    assert (colour_pixels(first, (0x6C, 0xB6, 0xFF)) ^ left).sum() > 20, "the clip plays"
    assert problems == []
