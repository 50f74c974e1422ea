"""rtik.wire.client and the send / listen commands against real loopback sockets (no daemon needed)."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
import zmq

from rtik.cli import main
from rtik.commands.send import load_positions
from rtik.errors import InputError, ProtocolError, TransportError
from rtik.formats import bvh
from rtik.wire import osc, protocol
from rtik.wire.client import Control, ControlError, Listener, Sender, wait_for_daemon
from rtik.wire.protocol import Pose


def endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def pull_all(sock, n, timeout=5.0) -> list[protocol.Frame]:
    out, deadline = [], time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        if sock.poll(100):
            out.append(protocol.decode_frame(sock.recv_multipart()[-1]))
    return out


def test_sender_zmq(ctx):
    ep = endpoint()
    pull = ctx.socket(zmq.PULL)
    pull.bind(ep)
    with Sender("cam", ep, units="cm") as tx:
        pos = np.arange(9.0).reshape(3, 3)
        before = time.time()
        assert tx.send(pos) and tx.send(pos + 1, timestamp=5.0, mask=[1, 0, 1]) and tx.send(pos, seq=10)
    a, b, c = pull_all(pull, 3)
    assert (a.stream, a.seq, a.units, b.seq, c.seq) == ("cam", 1, "cm", 2, 10)
    assert before <= a.timestamp <= time.time() and a.sent >= before and b.timestamp == 5.0
    np.testing.assert_array_equal(b.positions, pos + 1)
    np.testing.assert_array_equal(b.mask, [True, False, True])
    pull.close(0)


def test_sender_osc():
    rx = osc.udp_receiver("127.0.0.1", 0, timeout=2.0)
    port = rx.getsockname()[1]
    with Sender("cam", osc=("127.0.0.1", port)) as tx:
        tx.send(np.ones((4, 3)), timestamp=1.5)
    [(address, args)] = osc.parse_datagram(rx.recv(65536))
    f = osc.frame_from_args(args)
    assert address == "/rtik/frame" and f.stream == "cam" and f.timestamp == 1.5 and f.positions.shape == (4, 3)
    rx.close()


def test_sender_validates():
    with pytest.raises(ProtocolError, match="unknown units 'inch'"):
        Sender("a", units="inch")
    with pytest.raises(ProtocolError, match="invalid stream name"):
        Sender("a/b")
    with Sender("a", endpoint()) as tx, pytest.raises(ProtocolError, match=r"expected \(n, 3\)"):
        tx.send(np.zeros(5))


def test_listener(ctx):
    ep = endpoint()
    pub = ctx.socket(zmq.PUB)
    pub.bind(ep)
    skel = {"names": ["a", "b"], "parents": [-1, 0], "offsets": [[0, 0, 0], [0, 1, 0]]}
    pose = Pose("s1", 4, 1.0, 0.5, 0.6, 0.7, 100.0, False, np.zeros(3), np.tile([0, 0, 0, 1.0], (2, 1)))
    with Listener(ep, ["s1"]) as rx:
        got = None
        for _ in range(100):  # the SUB joins asynchronously
            pub.send_multipart([b"_skeleton", protocol.encode_skeleton(skel)])
            pub.send_multipart([b"s2", protocol.encode_pose(pose)])  # not subscribed
            pub.send_multipart([b"s1", b"garbage"])
            pub.send_multipart([b"s1", protocol.encode_pose(pose)])
            got = rx.recv(timeout=0.05)
            if got is not None:
                break
        assert got is not None and got.stream == "s1" and got.seq == 4
        assert rx.skeleton["names"] == ["a", "b"] and rx.errors >= 1
        while rx.recv(timeout=0.05) is not None:
            pass
        t = time.monotonic()
        assert rx.recv(timeout=0.1) is None and time.monotonic() - t >= 0.09
    pub.close(0)


def _router(ctx, ep, replies: dict, stop: threading.Event):
    router = ctx.socket(zmq.ROUTER)
    router.bind(ep)
    while not stop.is_set():
        if router.poll(50):
            *env, payload = router.recv_multipart()
            cmd, args = protocol.decode_command(payload)
            if cmd == "streams":
                continue  # never answers: the client must time out
            ok, res = replies.get(cmd, (False, f"no {cmd}"))
            router.send_multipart([*env, protocol.encode_reply(ok, res if ok else None, "" if ok else res)])
    router.close(0)


def test_control(ctx):
    ep = endpoint()
    stop = threading.Event()
    replies = {"status": (True, {"streams": 2}), "reset": (False, "no open stream 'x'; open streams: a")}
    t = threading.Thread(target=_router, args=(ctx, ep, replies, stop))
    t.start()
    try:
        with Control(ep, timeout=0.3) as ctl:
            assert ctl.status() == {"streams": 2}
            with pytest.raises(ControlError, match="reset: no open stream 'x'"):
                ctl.reset("x")
            with pytest.raises(ControlError, match="no reply from .* within 0.3 s"):
                ctl.streams()
            assert ctl.status() == {"streams": 2}  # a late reply does not confuse the next request
        assert wait_for_daemon(ep, timeout=2)["streams"] == 2
    finally:
        stop.set()
        t.join()


def test_control_with_nowhere_to_send_fails_in_time(ctx):
    """A DEALER with no connection to queue on (a daemon that refused this client's key drops it) would block a
    plain send forever; a request waits for room as long as for a reply, then fails, and the next one can too."""
    with Control(endpoint(), timeout=0.3) as ctl:
        ctl._sock.close(0)
        ctl._sock = ctx.socket(zmq.DEALER)
        ctl._sock.setsockopt(zmq.IMMEDIATE, 1)  # queue only on completed connections: there are none
        ctl._sock.connect(endpoint())
        t = time.monotonic()
        with pytest.raises(ControlError, match="no reply from .* within 0.3 s"):
            ctl.status()
        assert time.monotonic() - t < 3.0


def test_wait_for_daemon_times_out():
    with pytest.raises(TransportError, match="no rtik daemon answered"):
        wait_for_daemon(endpoint(), timeout=0.3)


# --------------------------------------------------------------------------------------------- rtik send
def test_load_positions_bvh(sample_clips):
    pos, mask, fps = load_positions(sample_clips[0])
    m = bvh.read(sample_clips[0])
    assert mask is None and fps == pytest.approx(m.fps) and pos.shape == (m.num_frames, 21, 3)
    np.testing.assert_allclose(pos, m.positions()[:, 1:] / 100.0)  # centimetres -> metres, no dummy root


def test_load_positions_npz(tmp_path):
    p = tmp_path / "c.npz"
    np.savez(p, positions=np.ones((5, 4, 3)) * 10, mask=np.ones((5, 4), bool), fps=60.0)
    pos, mask, fps = load_positions(p, "cm")
    assert pos.max() == pytest.approx(0.1) and mask.shape == (5, 4) and fps == 60.0
    np.savez(tmp_path / "norate.npz", positions=np.ones((5, 4, 3)))
    assert load_positions(tmp_path / "norate.npz")[2] is None  # no rate is made up ...
    assert main(["send", str(tmp_path / "norate.npz"), "--endpoint", "tcp://127.0.0.1:1"]) == 1  # ... --rate is asked
    np.savez(tmp_path / "zero.npz", positions=np.ones((5, 4, 3)), fps=0.0)
    with pytest.raises(InputError, match="fps must be a positive number"):
        load_positions(tmp_path / "zero.npz")
    np.savez(tmp_path / "bad.npz", positions=np.ones((5, 4)))
    with pytest.raises(InputError, match=r"expected \(F, n, 3\)"):
        load_positions(tmp_path / "bad.npz")
    with pytest.raises(InputError, match="unsupported file type '.txt'; use .bvh or .npz"):
        load_positions(tmp_path / "x.txt")


@pytest.mark.parametrize("use_osc", [False, True])
def test_send_command(ctx, sample_clips, capsys, use_osc):
    clip = sample_clips[0]
    ref, _, _ = load_positions(clip)
    n = len(ref) + 5  # --loop wraps around
    if use_osc:
        rx = osc.udp_receiver("127.0.0.1", 0, timeout=2.0)
        args = ["--osc", "--osc-port", str(rx.getsockname()[1])]
    else:
        ep = endpoint()
        pull = ctx.socket(zmq.PULL)
        pull.bind(ep)
        args = ["--endpoint", ep]
    code = main(["send", str(clip), "--rate", "2000", "--stream", "rep", "--loop", "--count", str(n), *args])
    assert code == 0 and f"sent {n} frames of stream 'rep'" in capsys.readouterr().out
    if use_osc:
        frames = [osc.frame_from_args(a) for _ in range(n) for _, a in osc.parse_datagram(rx.recv(65536))]
        rx.close()
    else:
        frames = pull_all(pull, n)
        pull.close(0)
    assert [f.seq for f in frames] == list(range(1, n + 1)) and {f.stream for f in frames} == {"rep"}
    np.testing.assert_allclose(frames[len(ref) + 2].positions, ref[2], atol=1e-6)
    ts = np.array([f.timestamp for f in frames])
    np.testing.assert_allclose(np.diff(ts), 1 / 2000, atol=1e-6)  # wall-clock seconds in float64


def test_send_noise(ctx, sample_clips):
    ep = endpoint()
    pull = ctx.socket(zmq.PULL)
    pull.bind(ep)
    assert main(["send", str(sample_clips[0]), "--endpoint", ep, "--rate", "1000", "--count", "20",
                 "--noise-mm", "10"]) == 0  # fmt: skip
    ref, _, _ = load_positions(sample_clips[0])
    got = np.stack([f.positions for f in pull_all(pull, 20)])
    err = got - ref[:20]
    assert 0.007 < err.std() < 0.013  # 10 mm per coordinate
    pull.close(0)


# ------------------------------------------------------------------------------------------- rtik listen
def test_listen_command_prints_and_records(ctx, bandai_skeleton, tmp_path, capsys):
    ep = endpoint()
    pub = ctx.socket(zmq.PUB)
    pub.bind(ep)
    skel = bandai_skeleton.scaled(0.01)
    stop = threading.Event()
    sent = []

    def publish():
        seq = 0
        while not stop.is_set():
            seq += 1
            q = np.tile([0, 0, 0, 1.0], (len(skel), 1)).astype(np.float32)
            now = time.time()
            pub.send_multipart([b"_skeleton", protocol.encode_skeleton(skel.to_dict())])
            p = Pose("a", seq, now, now, now, now, 50.0, False, np.array([0, 0.9, 0], np.float32), q)
            pub.send_multipart([b"a", protocol.encode_pose(p)])
            sent.append(seq)
            time.sleep(0.01)

    t = threading.Thread(target=publish)
    t.start()
    out_bvh = tmp_path / "heard.bvh"
    try:
        code = main(["listen", "--endpoint", ep, "--control", endpoint(), "--duration", "1.3", "--bvh", str(out_bvh)])
    finally:
        stop.set()
        t.join()
        pub.close(0)
    text = capsys.readouterr().out
    assert code == 0 and "a: " in text and "Hz  latency p50" in text and "summary over" in text
    m = bvh.read(out_bvh)
    assert 10 < m.num_frames <= len(sent) and m.skeleton.names == skel.names
    np.testing.assert_allclose(m.local_positions()[:, 1], np.tile([0, 90.0, 0], (m.num_frames, 1)), atol=1e-4)
