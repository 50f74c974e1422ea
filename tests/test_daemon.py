"""The daemon end to end: `python -m rtik serve` in a subprocess on loopback, real clips over ZeroMQ and OSC,
compared with the offline solver; VMC and OSC output, recording, control, isolation of a bad stream, shutdown.
Plus the latest-frame slots on bare objects."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from loopback import endpoints, free_port, start_daemon, stop_daemon

from rtik.commands.send import load_positions
from rtik.formats import bvh
from rtik.serve import config
from rtik.serve.ingest import RESTART_SEQ_GAP, Slots
from rtik.serve.stats import Stats
from rtik.wire import protocol
from rtik.wire.client import Control, ControlError, Listener, Sender
from rtik.wire.osc import parse_datagram

FPS = 30.0


def udp_listener() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.2)
    return s


def drain(sock: socket.socket) -> list[tuple[str, list]]:
    out = []
    while True:
        try:
            out += parse_datagram(sock.recv(65536))
        except (TimeoutError, BlockingIOError):
            return out


@pytest.fixture(scope="module")
def clip(sample_clips):
    pos, _, fps = load_positions(sample_clips[2])
    assert fps == pytest.approx(FPS, rel=1e-4)
    return pos[:40]


@pytest.fixture(scope="module")
def offline(pack, clip):
    """The offline solver on the same clip, same timestamps (i / fps), running calibration like a live stream."""
    from rtik.solve.solver import Solver, solve_sequence

    solver = Solver(pack)
    try:
        return solve_sequence(solver, clip, FPS, calibrate=False)
    finally:
        solver.close()


@pytest.fixture(scope="module")
def daemon(pack, tmp_path_factory, mocap):
    tmp = tmp_path_factory.mktemp("daemon")
    rig = mocap / "extra" / "sample" / "mpi-poseprior_03100_S7.bvh"
    vmc, osc_out = udp_listener(), udp_listener()
    ep = endpoints()
    osc_in, metrics = free_port(socket.SOCK_DGRAM), free_port()
    text = f"""
[model]
path = "{pack.path.as_posix()}"
[ingest.zmq]
bind = "{ep["in"]}"
[ingest.osc]
port = {osc_in}
[output.zmq]
bind = "{ep["out"]}"
skeleton_interval = 0.2
[output.osc]
port = {osc_out.getsockname()[1]}
[output.vmc]
port = {vmc.getsockname()[1]}
stream = "vmc"
[control]
bind = "{ep["ctl"]}"
[metrics]
enabled = true
port = {metrics}
[streams]
fps = {FPS}
max_streams = 12
[recording]
folder = "{(tmp / "rec").as_posix()}"
streams = ["auto"]
rigs = {{ mpi = "{rig.as_posix()}" }}
[log]
format = "json"
"""
    proc = start_daemon(tmp, text, ep["ctl"])
    yield {"proc": proc, "ep": ep, "osc": ("127.0.0.1", osc_in), "vmc": vmc, "osc_out": osc_out,
           "metrics": metrics, "tmp": tmp, "rig": rig}  # fmt: skip
    stop_daemon(proc, 20)
    vmc.close()
    osc_out.close()


def lockstep(d, stream, clip, osc=False, start=0):
    """Send each frame and wait for its pose (so no frame is superseded); the poses in order."""
    out = []
    with Listener(d["ep"]["out"], [stream]) as rx, Sender(stream, d["ep"]["in"], osc=d["osc"] if osc else None) as tx:
        time.sleep(0.2)  # let the SUB join
        for i in range(start, len(clip)):
            tx.send(clip[i], timestamp=i / FPS, seq=i + 1)
            pose = rx.recv(timeout=10)
            assert pose is not None, f"no pose for frame {i} of {stream}"
            assert pose.seq == i + 1 and pose.stream == stream
            out.append(pose)
    return out


@pytest.mark.parametrize("osc", [False, True], ids=["zmq", "osc"])
def test_clip_comes_back_as_the_offline_solution(daemon, clip, offline, osc):
    poses = lockstep(daemon, f"clip-{'osc' if osc else 'zmq'}", clip, osc)
    q = np.stack([p.local_quats for p in poses])
    np.testing.assert_allclose(q, offline["local_quats"], atol=1e-5)
    np.testing.assert_allclose(np.stack([p.root_pos for p in poses]), offline["root_pos"], atol=1e-5)
    assert poses[0].reset and not any(p.reset for p in poses[1:])
    p = poses[-1]
    assert p.sent <= p.recv <= p.pub and p.solve_us > 0 and p.timestamp == pytest.approx((len(clip) - 1) / FPS)


def test_recording_equals_the_offline_result(daemon, clip, offline):
    lockstep(daemon, "auto", clip)  # recorded from its first frame (config: recording.streams)
    with Control(daemon["ep"]["ctl"]) as ctl:
        info = ctl.record_stop("auto")
        assert info["frames"] == len(clip) and info["error"] is None
        names = [r["name"] for r in ctl.recordings()]
    assert any(n.startswith("auto-") for n in names)
    m = bvh.read(info["path"])
    assert m.num_frames == len(clip) and m.frame_time == pytest.approx(1 / FPS, rel=1e-5)
    q = m.local_quats()
    want = offline["local_quats"].astype(np.float64)
    want /= np.linalg.norm(want, axis=-1, keepdims=True)  # float32 on the wire: renormalise before comparing
    dots = np.abs(np.sum(q * want, axis=-1))
    assert np.degrees(2 * np.arccos(np.clip(dots, 0, 1))).max() < 0.01  # Euler text round trip: < 0.01°
    root = m.local_positions()[:, m.skeleton.motion_root()]
    np.testing.assert_allclose(root, offline["root_pos"] * 100.0, atol=1e-3)  # centimetres


def test_recording_in_a_studio_rig(daemon, clip, offline, pack):
    """`record start --rig`: the recording lands in the rig of [recording] rigs, equal to the offline result
    carried onto that rig; an unknown rig is refused and the stream goes on."""
    from rtik.serve.recorder import rig_writer

    lockstep(daemon, "rigged", clip[:1])
    with Control(daemon["ep"]["ctl"]) as ctl:
        with pytest.raises(ControlError, match="no rig 'studio'; rigs: mpi"):
            ctl.record_start("rigged", rig="studio")
        assert ctl.record_start("rigged", "rigged-mpi", rig="mpi")["rig"] == "mpi"
    lockstep(daemon, "rigged", clip, start=1)
    with Control(daemon["ep"]["ctl"]) as ctl:
        info = ctl.record_stop("rigged")
    m, rig = bvh.read(info["path"]), bvh.read(daemon["rig"])
    assert m.skeleton.names == rig.skeleton.names and m.num_frames == len(clip) - 1
    np.testing.assert_allclose(
        m.skeleton.offsets[1:], rig.skeleton.offsets[1:], atol=1e-5
    )  # the rig's own, in its unit
    skel, unit, convert = rig_writer(pack.skeleton, daemon["rig"], pack.prior_local)
    q, root = convert(offline["local_quats"][1:].astype(np.float64), offline["root_pos"][1:].astype(np.float64))
    got = m.local_quats()
    dots = np.abs(np.sum(got * q / np.linalg.norm(q, axis=-1, keepdims=True), axis=-1))
    assert unit == "in" and np.degrees(2 * np.arccos(np.clip(dots, 0, 1))).max() < 0.05


def test_vmc_and_osc_outputs(daemon, clip):
    drain(daemon["vmc"])
    drain(daemon["osc_out"])
    lockstep(daemon, "vmc", clip[:5])
    time.sleep(0.1)
    vmc = drain(daemon["vmc"])
    bones = {args[0] for addr, args in vmc if addr == "/VMC/Ext/Bone/Pos"}
    assert len(bones) == 21 and {"Hips", "LeftUpperArm", "RightToes", "Head"} <= bones
    assert sum(addr == "/VMC/Ext/Root/Pos" for addr, _ in vmc) == 5 and ("/VMC/Ext/OK", [1]) in vmc
    assert sum(addr == "/VMC/Ext/T" for addr, _ in vmc) == 5
    poses = [args for addr, args in drain(daemon["osc_out"]) if addr == "/rtik/pose" and args[0] == "vmc"]
    assert [a[1] for a in poses] == [1, 2, 3, 4, 5] and len(poses[0][-1]) == 22 * 4 * 4


def test_skeleton_on_the_feed_and_by_command(daemon, pack):
    with Listener(daemon["ep"]["out"], ["none-such"]) as rx:
        deadline = time.monotonic() + 5
        while rx.skeleton is None and time.monotonic() < deadline:
            rx.recv(timeout=0.3)
    assert rx.skeleton is not None and rx.skeleton["names"] == list(pack.skeleton.names)
    with Control(daemon["ep"]["ctl"]) as ctl:
        sk = ctl.skeleton()
    assert sk["units"] == "m" and sk["skeleton"]["parents"] == pack.skeleton.parents.tolist()


def test_a_bad_stream_does_not_disturb_another(daemon, clip):
    with Listener(daemon["ep"]["out"], ["good"]) as rx, Sender("good", daemon["ep"]["in"]) as good, \
            Sender("bad", daemon["ep"]["in"]) as bad:  # fmt: skip
        time.sleep(0.2)
        got = []
        for i in range(10):
            bad.send(np.zeros((5, 3)), timestamp=i / FPS)  # wrong joint count for the layout
            good.send(clip[i], timestamp=i / FPS)
            pose = rx.recv(timeout=10)
            got.append(pose.seq if pose else None)
    assert got == list(range(1, 11))
    with Control(daemon["ep"]["ctl"]) as ctl:
        streams = {s["stream"]: s for s in ctl.streams()}
        stats = ctl.stats()
    assert streams["bad"]["errors"] == 10 and streams["bad"]["frames_out"] == 0
    assert streams["good"]["errors"] == 0 and streams["good"]["frames_out"] == 10
    errs = {(c["labels"].get("kind"), c["labels"].get("stream")): c["value"] for c in stats["counters"]
            if c["name"] == "errors"}  # fmt: skip
    assert errs[("input", "bad")] == 10 and ("input", "good") not in errs


def test_duplicates_and_older_frames_are_dropped(daemon, clip):
    with Listener(daemon["ep"]["out"], ["dup"]) as rx, Sender("dup", daemon["ep"]["in"]) as tx:
        time.sleep(0.2)
        for seq in (5, 5, 3, 6):
            tx.send(clip[seq], timestamp=seq / FPS, seq=seq)
            time.sleep(0.05)
        seqs = []
        while (p := rx.recv(timeout=1.0)) is not None:
            seqs.append(p.seq)
    assert seqs == [5, 6]
    with Control(daemon["ep"]["ctl"]) as ctl:
        drops = {c["labels"]["reason"]: c["value"] for c in ctl.stats()["counters"]
                 if c["name"] == "dropped" and c["labels"].get("stream") == "dup"}  # fmt: skip
    assert drops == {"duplicate": 1, "stale": 1}


def test_control_commands(daemon, clip):
    lockstep(daemon, "ctl", clip[:3])
    with Control(daemon["ep"]["ctl"]) as ctl:
        st = ctl.status()
        assert st["model"].startswith("test-random") and st["streams"] >= 1 and st["frames_out"] >= 3
        assert st["endpoints"]["control"] == daemon["ep"]["ctl"]
        assert ctl.reset("ctl") == {"stream": "ctl", "reset": True}
        lengths = ctl.calibrate("ctl")["bone_lengths"]
        assert 0.2 < lengths["LowerArm_L"] < 0.4  # metres, measured from the stream
        started = ctl.record_start("ctl", "take_1")
        assert started["path"].endswith("take_1.bvh")
        with pytest.raises(ControlError, match="already recording"):
            ctl.record_start("ctl", "take_2")
        assert ctl.record_stop("ctl")["frames"] == 0
        with pytest.raises(ControlError, match="is not recording"):
            ctl.record_stop("ctl")
        with pytest.raises(ControlError, match="invalid recording name"):
            ctl.record_start("ctl", "../../etc/evil")
        with pytest.raises(ControlError, match="no open stream 'nope'; open streams: .*ctl"):
            ctl.reset("nope")
        with pytest.raises(ControlError, match="unknown command 'fly'; valid commands"):
            ctl.request("fly")
        with pytest.raises(ControlError, match="bad arguments"):
            ctl.request("reset", stream="ctl", extra=1)
        assert "take_1.bvh" in [r["name"] for r in ctl.recordings()]


def test_ctl_command_line(daemon):
    base = [sys.executable, "-m", "rtik", "ctl", "--endpoint", daemon["ep"]["ctl"]]
    out = subprocess.run([*base, "status"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "model: test-random" in out.stdout
    out = subprocess.run([*base, "streams", "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and '"stream"' in out.stdout
    out = subprocess.run([*base, "reset", "missing"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "no open stream 'missing'" in out.stderr


def test_prometheus_endpoint(daemon):
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon['metrics']}/metrics", timeout=5) as r:
        text = r.read().decode()
        assert r.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE rtik_frames_in_total counter" in text and 'rtik_frames_out_total{stream="' in text
    assert 'rtik_latency_seconds_bucket{le="+Inf"}' in text


def test_zz_sigterm_finalises_recordings(daemon, clip):
    """Runs last in this module: SIGTERM ends the daemon cleanly with its recordings' frame counts written."""
    lockstep(daemon, "final", clip[:4])
    with Control(daemon["ep"]["ctl"]) as ctl:
        path = ctl.record_start("final", "final_take")["path"]
    lockstep(daemon, "final", clip[:10], start=4)
    proc = daemon["proc"]
    proc.send_signal(signal.SIGTERM if sys.platform != "win32" else signal.CTRL_BREAK_EVENT)
    assert proc.wait(20) == 0
    assert bvh.read(path).num_frames == 6
    log = (daemon["tmp"] / "daemon.log").read_text()
    assert '"msg": "signal 15: shutting down"' in log or sys.platform == "win32"


# ---------------------------------------------------------------------------------------------- bare slots
def _f(stream="s", seq=1):
    return protocol.make_frame(stream, seq, seq / 30, np.zeros((3, 3)))


def test_slots_newest_frame_wins():
    stats = Stats()
    slots = Slots(4, stats)
    assert slots.put(_f(seq=1), 0.0, "zmq") and slots.put(_f(seq=2), 0.0, "zmq")
    [(frame, _, restart)] = slots.take(0.0)
    assert frame.seq == 2 and not restart and slots.take(0.0) == []
    assert stats.total("dropped", reason="superseded") == 1 and stats.total("frames_in") == 2


def test_slots_queue_keeps_a_burst_in_order_and_drops_the_oldest_when_full():
    stats = Stats()
    slots = Slots(4, stats, depth=3)
    for seq in range(1, 6):  # five frames of "s" before a tick: 1 and 2 are superseded
        assert slots.put(_f(seq=seq), float(seq), "zmq")
    slots.put(_f("t", 1), 0.0, "zmq")
    first = slots.take(0.0)
    assert [(f.stream, f.seq) for f, _, _ in first] == [("s", 3), ("t", 1)]
    assert [f.seq for f, _, _ in slots.take(0.0)] == [4]  # the backlog is taken tick by tick, without waiting
    assert [f.seq for f, _, _ in slots.take(0.0)] == [5] and slots.take(0.0) == []
    assert stats.total("dropped", reason="superseded") == 2 and stats.total("frames_in") == 6
    with pytest.raises(ValueError, match="at least 1"):
        Slots(4, stats, depth=0)


def test_slots_drop_duplicates_and_stale_but_accept_a_restart():
    stats = Stats()
    slots = Slots(4, stats)
    slots.put(_f(seq=RESTART_SEQ_GAP + 50), 0.0, "osc")
    assert not slots.put(_f(seq=RESTART_SEQ_GAP + 50), 0.0, "osc")
    assert not slots.put(_f(seq=RESTART_SEQ_GAP + 10), 0.0, "osc")
    assert stats.total("dropped", reason="duplicate") == 1 and stats.total("dropped", reason="stale") == 1
    slots.take(0.0)
    assert slots.put(_f(seq=1), 0.0, "osc")  # numbering started over: a restart
    [(frame, _, restart)] = slots.take(0.0)
    assert frame.seq == 1 and restart


class _Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_slots_solve_a_burst_that_arrives_at_once_without_dropping_any():
    """Frames held up on the way (a stalled sender, a backed-up socket) arrive together: they are solved one per
    tick, back to back, none lost, however many more than a few frames the burst holds."""
    stats, clock = Stats(), _Clock()
    slots = Slots(4, stats, depth=64, max_wait=0.05, clock=clock)
    for seq in range(1, 31):
        assert slots.put(_f(seq=seq), 0.0, "zmq")
    taken = []
    while batch := slots.take(0.0):
        clock.t += 0.001  # a tick
        taken += [f.seq for f, _, _ in batch]
    assert taken == list(range(1, 31)) and stats.total("dropped") == 0


def test_slots_drop_frames_that_waited_too_long_behind_newer_ones():
    """A solver that falls behind: frames older than max_wait are superseded by the newer ones at the next tick;
    the newest frame is always solved, however long it waited."""
    stats, clock = Stats(), _Clock()
    slots = Slots(4, stats, depth=64, max_wait=0.05, clock=clock)
    for seq in range(1, 11):  # a frame every 10 ms, no tick meanwhile
        slots.put(_f(seq=seq), 0.0, "zmq")
        clock.t += 0.01
    clock.t -= 0.005  # now 100.095: frames 1-5 (received at 100.00-100.04) waited over 50 ms behind newer ones
    assert [f.seq for f, _, _ in slots.take(0.0)] == [6]
    assert stats.total("dropped", stream="s", reason="superseded") == 5
    clock.t += 1.0  # a very late tick: everything but the newest frame is dropped
    assert [f.seq for f, _, _ in slots.take(0.0)] == [10] and slots.take(0.0) == []
    assert stats.total("dropped", reason="superseded") == 8
    with pytest.raises(ValueError, match="negative"):
        Slots(4, stats, max_wait=-1.0)


def test_slots_a_superseded_restart_still_resets_the_stream_before_the_next_frame():
    stats, clock = Stats(), _Clock()
    for depth, max_wait in ((2, 0.0), (64, 0.05)):
        slots = Slots(4, stats, depth=depth, max_wait=max_wait, clock=clock)
        slots.put(_f(seq=RESTART_SEQ_GAP + 50), 0.0, "zmq")
        slots.take(0.0)
        for seq in (1, 2, 3):  # numbering starts over at 1: a restart, then dropped (queue full, or waited too long)
            slots.put(_f(seq=seq), 0.0, "zmq")
            clock.t += 0.04
        got = [(f.seq, restart) for f, _, restart in slots.take(0.0)] + [
            (f.seq, restart) for f, _, restart in slots.take(0.0)
        ]
        assert got[0][1] and not any(r for _, r in got[1:]), (depth, got)  # reset before the first frame solved
        assert [seq for seq, _ in got] == sorted(seq for seq, _ in got) and got[-1][0] == 3


def test_receivers_wait_for_a_tick_then_drain_a_window(pack, monkeypatch):
    """A receiving thread waits for the tick in progress before its next message, then handles RECV_AFTER_TICK
    messages even if the next tick has started (ticks back to back must not keep frames in the sockets)."""
    import threading

    from rtik.serve import receivers
    from rtik.serve.daemon import Daemon
    from rtik.serve.receivers import RECV_AFTER_TICK
    from rtik.solve.solver import Solver

    monkeypatch.setattr(receivers, "TICK_WAIT_S", 30.0)  # (in service a receiver gives up on a tick after 50 ms)
    d = Daemon(config.from_dict({"streams": {"fps": FPS}}), Solver(pack))
    try:
        assert d.receivers.pause_for_tick(0) == 0  # no tick: go on
        d.not_solving.clear()  # a tick runs
        assert d.receivers.pause_for_tick(5) == 4  # inside its window a receiver does not wait
        done = []
        waiter = threading.Thread(target=lambda: done.append(d.receivers.pause_for_tick(0)))
        waiter.start()
        waiter.join(0.2)
        assert waiter.is_alive() and not done  # waits for the tick ...
        d.not_solving.set()  # ... until it ends
        waiter.join(5.0)
        assert done == [RECV_AFTER_TICK]
    finally:
        d.close()


def test_slots_stream_limit_and_wakeup():
    import threading

    stats = Stats()
    slots = Slots(2, stats)
    assert slots.put(_f("a"), 0, "zmq") and slots.put(_f("b"), 0, "zmq")
    assert not slots.put(_f("c"), 0, "zmq")
    assert stats.total("dropped", reason="stream_limit") == 1
    slots.take(0.0)
    t = threading.Timer(0.05, lambda: slots.put(_f("a", 2), 0, "zmq"))
    t.start()
    got = slots.take(5.0)  # woken by the put, long before the timeout
    t.join()
    assert [f.stream for f, _, _ in got] == ["a"]


def test_daemon_in_process_full_disk_keeps_the_stream_flowing(pack, clip, tmp_path):
    """A recording on a full disk stops with a counted error; the stream's poses keep coming."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if sys.platform != "linux" or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(mnt)],
                                                 capture_output=True).returncode:  # fmt: skip
        pytest.skip("cannot mount a tmpfs here")
    from rtik.serve.daemon import Daemon
    from rtik.solve.solver import Solver

    ep = {k: f"tcp://127.0.0.1:{free_port()}" for k in ("in", "out", "ctl")}
    cfg = config.from_dict({
        "ingest": {"zmq": {"bind": ep["in"]}, "osc": {"enabled": False}},
        "output": {"zmq": {"bind": ep["out"]}, "osc": {"enabled": False}, "vmc": {"enabled": False}},
        "control": {"bind": ep["ctl"]}, "streams": {"fps": FPS},
        "recording": {"folder": str(mnt), "streams": ["*"], "flush_interval": 0.05},
    })  # fmt: skip
    d = Daemon(cfg, Solver(pack))
    d.start()
    try:
        with Listener(ep["out"], ["disk"]) as rx, Sender("disk", ep["in"]) as tx:
            time.sleep(0.2)
            n = 0
            for i in range(60):
                tx.send(clip[i % len(clip)], timestamp=i / FPS)
                n += rx.recv(timeout=10) is not None
                time.sleep(0.01)
        assert n == 60
        deadline = time.monotonic() + 5
        while d.stats.total("errors", kind="record") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert d.stats.total("errors", kind="record", stream="disk") == 1
        assert d.streams["disk"].recording is None and d.stats.total("frames_out", stream="disk") == 60
    finally:
        d.stop()
        subprocess.run(["umount", str(mnt)], check=False)


def test_daemon_in_process_sub_ingest_and_idle_streams(pack, clip):
    """Frames from an existing publisher (the daemon's SUB connects to it) are solved; a silent stream closes."""
    import zmq

    from rtik.serve.daemon import Daemon
    from rtik.solve.solver import Solver

    ep = {k: f"tcp://127.0.0.1:{free_port()}" for k in ("pub", "out", "ctl")}
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(ep["pub"])
    cfg = config.from_dict({
        "ingest": {"zmq": {"bind": "", "connect": [ep["pub"]]}, "osc": {"enabled": False}},
        "output": {"zmq": {"bind": ep["out"]}, "osc": {"enabled": False}, "vmc": {"enabled": False}},
        "control": {"bind": ep["ctl"]}, "streams": {"fps": FPS, "idle_timeout": 0.3},
    })  # fmt: skip
    d = Daemon(cfg, Solver(pack))
    d.start()
    try:
        with Listener(ep["out"], ["pubbed"]) as rx:
            got = None
            for i in range(200):  # both subscriptions join asynchronously: publish until poses come back
                f = protocol.make_frame("pubbed", i + 1, i / FPS, clip[i % len(clip)])
                pub.send_multipart([b"pubbed", protocol.encode_frame(f)])
                got = rx.recv(timeout=0.05)
                if got is not None:
                    break
            assert got is not None and got.stream == "pubbed"
        assert "pubbed" in d.streams and d.stats.total("frames_in", transport="zmq") >= 1
        deadline = time.monotonic() + 5
        while "pubbed" in d.streams and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "pubbed" not in d.streams and "pubbed" not in d.solver.streams  # closed after 0.3 s of silence
        assert d.outputs.vmc_stream == ""  # the VMC output waits for the next stream
    finally:
        d.stop()
        pub.close(0)
        ctx.term()


def test_failed_start_releases_everything(pack):
    """A port already taken stops the start with a clear error, and what was bound before is released."""
    from rtik.errors import TransportError
    from rtik.serve.daemon import Daemon
    from rtik.solve.solver import Solver

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ep_in = f"tcp://127.0.0.1:{free_port()}"
    cfg = config.from_dict({
        "ingest": {"zmq": {"bind": ep_in}, "osc": {"enabled": False}},
        "output": {"osc": {"enabled": False}, "vmc": {"enabled": False}},
        "control": {"bind": f"tcp://127.0.0.1:{taken.getsockname()[1]}"},
    })  # fmt: skip
    try:
        with pytest.raises(TransportError, match="cannot bind tcp://127.0.0.1"):
            Daemon(cfg, Solver(pack)).start()
        with socket.socket() as again:  # the ingest port bound before the failure is free again
            again.bind(("127.0.0.1", int(ep_in.rsplit(":", 1)[1])))
    finally:
        taken.close()


def test_a_long_receive_burst_wakes_the_solver_without_waiting_for_its_end():
    class Counting(Slots):
        wakes = 0

        def _wake(self):
            Counting.wakes += 1
            super()._wake()

    slots = Counting(4, Stats())
    slots.put(_f(seq=1), 0.0, "zmq", notify=False)
    slots.put(_f(seq=2), 0.0, "zmq", notify=False)  # frames of one short burst: no wake until its end
    assert Counting.wakes == 0
    slots.wake()  # the receiver's wake at the end of the burst
    assert Counting.wakes == 1
    slots.take(0.0)
    slots.put(_f(seq=3), 0.0, "zmq", notify=False)
    time.sleep(2 * Slots.WAKE_AFTER_S)
    slots.put(_f(seq=4), 0.0, "zmq", notify=False)  # the burst goes on: the solver is woken for what arrived so far
    assert Counting.wakes == 2


def test_serve_freezes_what_is_loaded_out_of_the_collector(pack):
    """`rtik serve` freezes the loaded solver and runtimes out of the garbage collector before serving: a full
    collection no longer walks them (it took ~70 ms with the interpreter lock held)."""
    import gc

    from rtik.commands.serve import freeze_loaded
    from rtik.solve.solver import Solver

    solver = Solver(pack)
    try:
        tracked = len(gc.get_objects())
        n = freeze_loaded()
        assert n == gc.get_freeze_count() and n >= tracked // 2  # the solver's objects among them
        assert len(gc.get_objects()) < tracked - n // 2  # what a collection walks now
    finally:
        gc.unfreeze()
        solver.close()
