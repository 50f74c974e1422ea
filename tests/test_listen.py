"""``rtik listen --bvh`` as a process against a real daemon serving the shipped default model: a listener ended
by SIGTERM finalises its recording (frame count in the header, every received frame written) as Ctrl+C does."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from loopback import endpoints, start_daemon, stop_daemon

from rtik.commands.send import load_positions
from rtik.formats import bvh
from rtik.wire.client import Listener, Sender

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is a POSIX signal")

FRAMES = 12


@pytest.fixture
def daemon(tmp_path):
    """``python -m rtik serve`` with no model path (the shipped default model), every port free and on loopback."""
    ep = endpoints()
    text = f"""
[ingest.zmq]
bind = "{ep["in"]}"
[ingest.osc]
enabled = false
[output.zmq]
bind = "{ep["out"]}"
[output.osc]
enabled = false
[output.vmc]
enabled = false
[control]
bind = "{ep["ctl"]}"
[streams]
fps = 30.0
"""
    proc = start_daemon(tmp_path, text, ep["ctl"], cwd=tmp_path)
    yield ep
    stop_daemon(proc, 20)


def test_sigterm_finalises_the_listeners_bvh(daemon, sample_clips, tmp_path):
    clip = load_positions(sample_clips[0])[0][:FRAMES]
    out = tmp_path / "heard.bvh"
    listener = subprocess.Popen(
        [sys.executable, "-m", "rtik", "listen", "--endpoint", daemon["out"], "--control", daemon["ctl"],
         "--bvh", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        # its first report, a second after it subscribed: frames sent from now on reach it
        assert listener.stdout.readline().strip() == "(no poses)"
        with Listener(daemon["out"], ["take"]) as rx, Sender("take", daemon["in"]) as tx:
            time.sleep(0.2)  # let our own SUB join
            for i, frame in enumerate(clip):
                tx.send(frame, timestamp=i / 30.0, seq=i + 1)
                pose = rx.recv(timeout=10)
                assert pose is not None and pose.seq == i + 1, f"no pose for frame {i}"
        time.sleep(0.5)  # the listener holds them all, some still in its write buffer
        listener.send_signal(signal.SIGTERM)
        text, _ = listener.communicate(timeout=20)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait(10)
    assert listener.returncode == 0, text
    assert f"recorded {FRAMES} frames of stream 'take'" in text
    assert bvh.read(out).num_frames == FRAMES
