"""Faults, with the daemon in a subprocess on loopback: clients that vanish and come back, SIGKILL while recording
(`rtik recover` restores every flushed frame), a full disk, a corrupt model at start, a stream sending NaN bursts,
a stream whose frames have no body size. SIGTERM with recordings open is tested in test_daemon.py
(test_zz_sigterm_finalises_recordings), a full disk in-process there too."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from loopback import endpoints, free_port, start_daemon, stop_daemon

from rtik.commands.send import load_positions
from rtik.formats import bvh
from rtik.serve import config
from rtik.wire import protocol
from rtik.wire.client import Control, Listener, Sender

FPS = 30.0


@pytest.fixture(scope="module")
def clip(sample_clips):
    return load_positions(sample_clips[2])[0][:60]


def serve(tmp: Path, model, rec_folder=None, extra: str = "") -> tuple[subprocess.Popen, dict]:
    """``rtik serve`` in a subprocess on ephemeral loopback ports; ``(process, endpoints)``."""
    ep = endpoints()
    text = f"""
[model]
path = "{Path(model).as_posix()}"
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
fps = {FPS}
[recording]
folder = "{(rec_folder or tmp / "rec").as_posix()}"
flush_interval = 0.1
{extra}
"""
    return start_daemon(tmp, text, ep["ctl"]), ep


def stop(proc) -> int:
    return stop_daemon(proc)


def lockstep(ep, stream, frames, seqs, rx=None, tx=None) -> list:
    """Send each frame and wait for its pose; the poses (None where none came)."""
    own_rx, own_tx = rx is None, tx is None
    rx = rx or Listener(ep["out"], [stream])
    tx = tx or Sender(stream, ep["in"])
    if own_rx:
        time.sleep(0.2)
    out = []
    for p, s in zip(frames, seqs, strict=True):
        tx.send(p, timestamp=s / FPS, seq=s)
        out.append(rx.recv(timeout=10))
    if own_rx:
        rx.close()
    if own_tx:
        tx.close()
    return out


def counter(ep, name, **labels) -> int:
    with Control(ep["ctl"]) as ctl:
        cs = ctl.stats()["counters"]
    return sum(c["value"] for c in cs if c["name"] == name and labels.items() <= c["labels"].items())


@pytest.fixture(scope="module")
def daemon(pack, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    proc, ep = serve(tmp, pack.path)
    yield ep
    assert stop(proc) == 0


def test_clients_disconnect_and_reconnect(daemon, clip):
    first = lockstep(daemon, "rc", clip[:5], range(1, 6))  # listener and sender both go away after this
    assert [p.seq for p in first] == [1, 2, 3, 4, 5]
    again = lockstep(daemon, "rc", clip[5:10], range(6, 11))  # new sockets, the numbering goes on
    assert [p.seq for p in again] == [6, 7, 8, 9, 10] and not any(p.reset for p in again)
    ctl = Control(daemon["ctl"], timeout=5)
    ctl._sock.send_multipart([b"", protocol.encode_command("status")])
    ctl.close()  # gone before the reply: the ROUTER drops it
    time.sleep(1.2)  # a source silent > 1 s that starts its numbering over is a restart, not stale frames
    restarted = lockstep(daemon, "rc", clip[:3], range(1, 4))
    assert [p.seq for p in restarted] == [1, 2, 3] and restarted[0].reset
    with Control(daemon["ctl"]) as c:
        assert c.status()["streams"] >= 1


def test_nan_burst_resets_that_stream_only(daemon, clip):
    """A burst of NaN frames (longer than the solver's gap) is refused and counted; the stream starts over on
    its next good frame; a stream sent alongside never notices."""
    before = counter(daemon, "errors", kind="protocol")
    with Listener(daemon["out"], ["calm", "burst"]) as rx, Sender("calm", daemon["in"]) as calm, \
            Sender("burst", daemon["in"]) as burst:  # fmt: skip
        time.sleep(0.2)
        got = {"calm": [], "burst": []}
        for i in range(40):
            calm.send(clip[i], timestamp=i / FPS, seq=i + 1)
            bad = 10 <= i < 30  # 20 frames = 0.67 s of NaN
            pos = np.full_like(clip[i], np.nan) if bad else clip[i]
            burst._sock.send(protocol.encode_frame(protocol.Frame("burst", i + 1, i / FPS, pos.astype(np.float32))))
            for _ in range(1 if bad else 2):
                p = rx.recv(timeout=10)
                got[p.stream].append(p)
    assert [p.seq for p in got["calm"]] == list(range(1, 41))
    assert [p.reset for p in got["calm"]] == [True] + [False] * 39
    assert [p.seq for p in got["burst"]] == [*range(1, 11), *range(31, 41)]
    assert [p.seq for p in got["burst"] if p.reset] == [1, 31]
    assert counter(daemon, "errors", kind="protocol") - before == 20
    assert all(np.isfinite(p.local_quats).all() for p in got["burst"])


def test_sigkill_while_recording_then_recover(pack, clip, tmp_path):
    proc, ep = serve(tmp_path, pack.path)
    try:
        lockstep(ep, "k", clip[:1], [1])
        with Control(ep["ctl"]) as ctl:
            path = Path(ctl.record_start("k", "killed")["path"])
        lockstep(ep, "k", clip[1:41], range(2, 42))
        time.sleep(0.6)  # > flush_interval (0.1 s): every frame so far is on disk
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    out = subprocess.run([sys.executable, "-m", "rtik", "recover", str(path)], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    m = bvh.read(path)
    assert m.num_frames == 40 and m.frame_time == pytest.approx(1 / FPS)


def test_full_disk_stops_the_recording_not_the_stream(pack, clip, tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if sys.platform != "linux" or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(mnt)],
                                                 capture_output=True).returncode:  # fmt: skip
        pytest.skip("cannot mount a tmpfs here (the in-process test in test_daemon.py injects the same)")
    try:
        proc, ep = serve(tmp_path, pack.path, rec_folder=mnt, extra='streams = ["full"]')
        try:
            poses = lockstep(ep, "full", [clip[i % len(clip)] for i in range(150)], range(1, 151))
            assert all(p is not None for p in poses) and [p.seq for p in poses] == list(range(1, 151))
            deadline = time.monotonic() + 5
            while counter(ep, "errors", kind="record") == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert counter(ep, "errors", kind="record", stream="full") == 1
            with Control(ep["ctl"]) as ctl:
                [s] = [s for s in ctl.streams() if s["stream"] == "full"]
            assert s["recording"] is None and s["frames_out"] == 150
        finally:
            assert stop(proc) == 0
        [rec] = list(mnt.glob("full-*.bvh"))
        assert 0 < bvh.read(rec).num_frames < 150  # the frames that fit, in a readable file
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.parametrize("damage", ["metadata", "onnx"])
def test_corrupt_model_at_start_exits_with_a_clear_error(pack, tmp_path, damage):
    bad = tmp_path / "pack"
    shutil.copytree(pack.path, bad)
    if damage == "metadata":
        (bad / "model.json").write_text('{"format": "rtik-model", "format_version": ')
    else:
        meta = json.loads((bad / "model.json").read_text())
        onnx = next(p for p in bad.rglob("*.onnx"))
        onnx.write_bytes(onnx.read_bytes()[:200])
        assert meta  # the metadata stays valid: only the network file is damaged
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[model]\npath = "{bad.as_posix()}"\n[control]\nbind = "tcp://127.0.0.1:{free_port()}"\n')
    out = subprocess.run([sys.executable, "-m", "rtik", "serve", "--config", str(cfg)], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 1
    assert "rtik serve: error:" in out.stderr and str(bad) in out.stderr and "Traceback" not in out.stderr


def test_frames_without_body_size_never_publish_nan(pack, clip):
    """Every joint on one point (a pose estimator that lost the person) gives the solver no body size: the solver
    refuses such frames, the daemon counts them as input errors and publishes nothing for them; the next good
    frames solve cleanly, and the other stream never notices."""
    from rtik.serve.daemon import Daemon
    from rtik.solve.solver import Solver

    d = Daemon(config.from_dict({"streams": {"fps": FPS}}), Solver(pack))
    published = []
    publish = d._publish
    d._publish = lambda results, frames: (published.append(dict(results)), publish(results, frames))
    try:
        for i in range(6):
            zero = protocol.make_frame("zero", i + 1, i / FPS, np.zeros_like(clip[i]) if i < 2 else clip[i])
            good = protocol.make_frame("good", i + 1, i / FPS, clip[i])
            d._tick([(zero, 0.0, False), (good, 0.0, False)])
    finally:
        d.close()
    assert [sorted(r) for r in published] == [["good"]] * 2 + [["good", "zero"]] * 4
    assert all(np.isfinite(r.local_quats).all() for tick in published for r in tick.values())
    assert d.stats.total("errors", kind="input", stream="zero") == 2 and d.stats.total("errors", stream="good") == 0
