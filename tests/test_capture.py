"""``rtik capture`` against a real daemon: the test clip (tests/data/video) stands in for the camera, a real
``rtik capture`` process sends its landmarks over ZeroMQ, and poses come out of the daemon's feed and its VMC
output; frames with no person send nothing. Plus the live landmark conversion on bare objects and bad sources.

Skipped where the ``video`` extra (mediapipe, opencv) is not installed."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from loopback import free_port

from rtik.cli import main
from rtik.serve import config
from rtik.wire.client import Control, Listener
from rtik.wire.osc import parse_datagram

try:  # the video extra; a native library that fails to load raises OSError, not ImportError
    import cv2  # noqa: F401
    from mediapipe.tasks.python import vision  # noqa: F401
except (ImportError, OSError) as e:
    pytest.skip(f"the video extra is not usable here ({e}); pip install 'rtik[video]'", allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "tests" / "data" / "video" / "astronaut.mp4"  # 36 frames, 15 frames/s; a person on 30 of them


@pytest.fixture(scope="module")
def daemon():
    """A daemon serving the shipped model, its VMC output on a UDP socket of the test's."""
    from rtik.serve.daemon import Daemon
    from rtik.solve.solver import Solver

    vmc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    vmc.bind(("127.0.0.1", 0))
    vmc.settimeout(0.2)
    ep = {k: f"tcp://127.0.0.1:{free_port()}" for k in ("in", "out", "ctl")}
    cfg = config.from_dict({
        "ingest": {"zmq": {"bind": ep["in"]}, "osc": {"enabled": False}},
        "output": {"zmq": {"bind": ep["out"]}, "osc": {"enabled": False},
                   "vmc": {"port": vmc.getsockname()[1], "stream": "cam"}},
        "control": {"bind": ep["ctl"]}, "streams": {"fps": 15.0},
    })  # fmt: skip
    d = Daemon(cfg, Solver.from_path(None))
    d.start()
    try:
        yield {"ep": ep, "vmc": vmc, "daemon": d}
    finally:
        d.stop()
        vmc.close()


def test_a_video_standing_in_for_the_camera_drives_the_daemon_and_vmc(daemon):
    poses, vmc = [], []
    stop = threading.Event()

    def collect_vmc():
        while not stop.is_set():
            try:
                vmc.extend(parse_datagram(daemon["vmc"].recv(65536)))
            except (TimeoutError, BlockingIOError):
                pass

    reader = threading.Thread(target=collect_vmc)
    reader.start()
    try:
        with Listener(daemon["ep"]["out"], ["cam"]) as rx:
            time.sleep(0.3)  # let the SUB join
            proc = subprocess.Popen(
                [sys.executable, "-m", "rtik", "capture", "--video", str(CLIP), "--once", "--stream", "cam",
                 "--endpoint", daemon["ep"]["in"]],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            )  # fmt: skip
            layout = None
            while proc.poll() is None or len(poses) < 30:
                pose = rx.recv(timeout=5 if proc.poll() is None else 2)
                if pose is None and proc.poll() is not None:
                    break
                if pose is not None:
                    poses.append(pose)
                if layout is None and poses:
                    with Control(daemon["ep"]["ctl"]) as ctl:
                        layout = {s["stream"]: s["layout"] for s in ctl.streams()}.get("cam")
            out, err = proc.communicate(timeout=60)
    finally:
        stop.set()
        reader.join()
    assert proc.returncode == 0, err
    assert "captured 36 frames" in out and "a person on 30, 30 sent, 0 dropped" in out  # the black frames send nothing
    assert layout == "mediapipe33"  # the layout travels with the stream
    assert len(poses) == 30 and [p.seq for p in poses] == list(range(1, 31))
    q = np.stack([p.local_quats for p in poses])
    assert np.isfinite(q).all() and np.allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-4)
    root = np.stack([p.root_pos for p in poses])
    assert np.isfinite(root).all() and 0.3 < np.median(root[:, 1]) < 1.5  # hips above the floor, metres
    assert np.ptp(np.diff([p.timestamp for p in poses])) < 1.0  # capture times, paced like the video
    bones = {args[0] for addr, args in vmc if addr == "/VMC/Ext/Bone/Pos"}
    assert {"Hips", "LeftUpperArm", "RightUpperArm", "Head"} <= bones
    assert sum(addr == "/VMC/Ext/Root/Pos" for addr, _ in vmc) >= 25


def test_live_input_fixes_origin_and_floor_on_the_first_frame():
    from rtik.formats.layouts import MEDIAPIPE33
    from rtik.video.capture import LiveInput
    from rtik.video.estimator import Landmarks
    from rtik.video.landmarks import FEET, HIPS

    K = len(MEDIAPIPE33)
    world = np.zeros((K, 3), np.float32)
    world[list(FEET), 1] = 0.9  # camera axes: y down, the feet 0.9 m below the hips
    world[0] = [0.0, -0.6, 0.0]
    vis = np.ones(K, np.float32)
    vis[5] = 0.1
    live = LiveInput(root="fixed")
    pos, mask = live(Landmarks(world, np.zeros((K, 2), np.float32), vis), 0.0)
    np.testing.assert_allclose(pos[list(HIPS)], [[0.0, 0.9, 0.0]] * 2, atol=1e-6)
    np.testing.assert_allclose(pos[list(FEET), 1], 0.0, atol=1e-6)
    assert pos[0, 1] == pytest.approx(1.5) and not mask[5] and mask.sum() == K - 1
    world[:, 1] -= 0.2  # the next frame: 20 cm higher (a jump); the floor stays where it was
    pos, _ = live(Landmarks(world, np.zeros((K, 2), np.float32), vis), 0.1)
    np.testing.assert_allclose(pos[list(HIPS)], [[0.0, 1.1, 0.0]] * 2, atol=1e-6)


def test_bad_sources_are_clear_errors(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    assert main(["capture", "--video", str(bad), "--endpoint", f"tcp://127.0.0.1:{free_port()}"]) == 1
    assert "not a video" in capsys.readouterr().err
    assert main(["capture", "--camera", "97", "--endpoint", f"tcp://127.0.0.1:{free_port()}"]) == 1
    assert "camera 97" in capsys.readouterr().err
