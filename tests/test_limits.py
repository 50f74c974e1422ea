"""Limits and what happens past each (docs/reliability.md#limits): message size (ZMQ_MAXMSGSIZE, OSC datagram
size), streams, joints, the per-stream rate; and overload, where the newest frame wins and waits at most a tick."""

from __future__ import annotations

import socket
import time

import msgpack
import numpy as np
import pytest
import steppack
import zmq
from loopback import free_port

from rtik.serve import config
from rtik.serve.ingest import Slots
from rtik.serve.security import TokenBucket
from rtik.serve.stats import Stats
from rtik.wire import osc, protocol
from rtik.wire.client import Listener, Sender

FPS = 30.0


@pytest.fixture(scope="module")
def clip(sample_clips):
    from rtik.commands.send import load_positions

    return load_positions(sample_clips[2])[0][:40]


def start(limits: dict, streams: dict, solver=None):
    from rtik.serve.daemon import Daemon
    from rtik.solve.solver import Solver

    pack = steppack.cached_pack()
    if pack is None:
        pytest.skip("mocap sample not found (the test model pack is built from it)")
    ep = {k: f"tcp://127.0.0.1:{free_port()}" for k in ("in", "out", "ctl")}
    ep["osc"] = free_port(socket.SOCK_DGRAM)
    cfg = config.from_dict({
        "ingest": {"zmq": {"bind": ep["in"]}, "osc": {"port": ep["osc"]}},
        "output": {"zmq": {"bind": ep["out"]}, "osc": {"enabled": False}, "vmc": {"enabled": False}},
        "control": {"bind": ep["ctl"]}, "streams": {"fps": FPS, **streams}, "limits": limits,
    })  # fmt: skip
    d = Daemon(cfg, solver or Solver(pack))
    d.start()
    return d, ep


def wait_for(cond, seconds=5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    return cond()


@pytest.fixture(scope="module")
def limited():
    d, ep = start({"max_message_bytes": 2048}, {"max_streams": 3})
    yield d, ep
    d.stop()


def test_message_size_limit(limited, clip):
    """A ZeroMQ message over max_message_bytes: ZeroMQ closes that sender's connection (the sender's PUSH
    reconnects by itself; the message is lost, not counted: the daemon never sees it). An OSC datagram over it:
    dropped and counted (too_large). Other senders are served throughout."""
    d, ep = limited
    ctx = zmq.Context.instance()
    big = ctx.socket(zmq.PUSH)
    big.connect(ep["in"])
    payload = protocol.encode_frame(protocol.make_frame("big", 1, 0.0, np.zeros((200, 3))))  # 2.5 kB
    assert len(payload) > 2048
    with Listener(ep["out"], ["small"]) as rx, Sender("small", ep["in"]) as tx:
        time.sleep(0.2)
        for i in range(5):
            big.send(payload, zmq.NOBLOCK)
            tx.send(clip[i], timestamp=i / FPS)
            assert rx.recv(timeout=10).seq == i + 1
    big.close(0)
    assert d.stats.total("frames_in", stream="big") == 0 and d.stats.total("errors", kind="protocol") == 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(osc.encode_frame(protocol.make_frame("bigosc", 1, 0.0, np.zeros((200, 3)))), ("127.0.0.1", ep["osc"]))
        s.sendto(osc.encode_frame(protocol.make_frame("okosc", 1, 0.0, clip[0])), ("127.0.0.1", ep["osc"]))
    assert wait_for(lambda: d.stats.total("frames_in", stream="okosc") == 1)
    assert d.stats.total("dropped", reason="too_large", transport="osc") == 1


def test_joint_limit(limited):
    """More than protocol.MAX_JOINTS (512) joints: a protocol error, counted; nothing reaches a stream."""
    d, ep = limited
    before = d.stats.total("errors", kind="protocol")
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.PUSH)
    s.connect(ep["in"])
    n = protocol.MAX_JOINTS + 1
    s.send(msgpack.packb({"v": 1, "stream": "many", "seq": 1, "t": 0.0, "n": n, "pos": b"\0" * 4}))
    s.close(1000)
    assert wait_for(lambda: d.stats.total("errors", kind="protocol") > before)
    assert d.stats.total("errors", kind="protocol") - before == 1 and d.stats.total("frames_in", stream="many") == 0
    with pytest.raises(protocol.ProtocolError, match="1 <= n <= 512"):
        protocol.make_frame("many", 1, 0.0, np.zeros((n, 3)))


def test_stream_limit(limited, clip):
    """Past max_streams, frames of new streams are dropped and counted (stream_limit, without the name: a flood
    of names cannot grow the counters); open streams go on."""
    d, ep = limited
    with Listener(ep["out"]) as rx:
        time.sleep(0.2)
        senders = [Sender(f"s{k}", ep["in"]) for k in range(5)]
        for tx in senders:
            tx.send(clip[0], timestamp=0.0)
        got = set()
        while (p := rx.recv(timeout=1.0)) is not None:
            got.add(p.stream)
        for tx in senders:
            tx.close()
    assert len(d.slots.slots) == 3  # small and okosc from the test above, or the first of these
    assert d.stats.total("dropped", reason="stream_limit") >= 2
    assert not any("stream" in dict(lab) for (n, lab) in d.stats.counters if n == "dropped" and
                   dict(lab).get("reason") == "stream_limit")  # fmt: skip
    assert got <= set(d.slots.slots)


def test_token_bucket():
    b = TokenBucket(10.0)  # 10 per second, bursts of 2
    t0 = b.last
    assert [b.take(t0) for _ in range(3)] == [True, True, False]
    assert not b.take(t0 + 0.05) and b.take(t0 + 0.15)  # 1.5 tokens back after 0.15 s
    assert TokenBucket(1000.0).burst == 100.0


def test_rate_limit_in_the_slots():
    stats = Stats()
    slots = Slots(4, stats, max_rate=10.0)
    t0 = time.monotonic()
    ok = sum(slots.put(protocol.make_frame("fast", i + 1, i / 1000, np.zeros((3, 3))), 0.0, "zmq") for i in range(50))
    elapsed = time.monotonic() - t0
    assert 2 <= ok <= 2 + int(elapsed * 10.0) + 1  # the burst, plus what the elapsed time refilled
    assert stats.total("dropped", stream="fast", reason="rate_limit") == 50 - ok
    assert slots.put(protocol.make_frame("slow", 1, 0.0, np.zeros((3, 3))), 0.0, "zmq")  # per stream


def test_rate_limit_live(clip):
    """A source sending faster than max_rate: the excess is dropped and counted (rate_limit); the sender sees
    nothing (its sends succeed)."""
    d, ep = start({"max_rate": 20.0}, {})
    try:
        with Sender("flood", ep["in"]) as tx:
            sent = sum(tx.send(clip[i % len(clip)], timestamp=i / 1000) for i in range(300))
        assert wait_for(lambda: d.stats.total("frames_in", stream="flood")
                        + d.stats.total("dropped", stream="flood", reason="rate_limit") == 300)  # fmt: skip
        assert sent == 300 and d.stats.total("dropped", stream="flood", reason="rate_limit") > 200
    finally:
        d.stop()


class SlowSolver:
    """The real solver, with a tick that takes 50 ms more: a solver that cannot keep up."""

    def __init__(self, solver):
        self._s = solver

    def __getattr__(self, name):
        return getattr(self._s, name)

    def tick(self):
        time.sleep(0.05)
        return self._s.tick()


@pytest.mark.parametrize(("depth", "max_wait"), [(1, 0.0), (4, 0.0), (64, 0.02)])
def test_overload_newest_frames_win(clip, depth, max_wait):
    """Frames at ~500 Hz into a solver that manages ~20 ticks a second, with a queue of ``depth`` frames per
    stream: the oldest waiting frames are counted as superseded, poses come out in order, the last frame sent is
    solved, and no frame waits for more than the tick in progress plus ``depth`` (each pose's frame arrived after
    the pose ``depth + 1`` before it was published); with ``max_wait`` shorter than a tick, a queue as deep as 64
    frames still holds no backlog."""
    from rtik.solve.solver import Solver

    d, ep = start({}, {"queue": depth, "max_wait": max_wait}, SlowSolver(Solver(steppack.cached_pack())))
    try:
        with Listener(ep["out"], ["busy"]) as rx, Sender("busy", ep["in"]) as tx:
            time.sleep(0.2)
            for i in range(300):
                tx.send(clip[i % len(clip)], timestamp=i / 500, seq=i + 1)
                time.sleep(0.002)
            poses = []
            while (p := rx.recv(timeout=1.0)) is not None:
                poses.append(p)
        seqs = [p.seq for p in poses]
        assert seqs == sorted(set(seqs)) and seqs[-1] == 300 and len(seqs) < 300
        superseded = d.stats.total("dropped", stream="busy", reason="superseded")
        assert superseded == d.stats.total("frames_in", stream="busy") - len(poses)
        assert superseded > 0
        assert all(poses[k].recv >= poses[k - depth - 1].pub for k in range(depth + 1, len(poses)))
        if max_wait:  # a backlog is never worked through: once the last frame is in, the tick in progress, one
            # tick for the frames still fresh (< max_wait old), and the last frame itself, everything else superseded
            assert sum(p.pub > poses[-1].recv for p in poses) <= 3
    finally:
        d.stop()


def test_streams_that_come_and_go_keep_the_counters_bounded(clip):
    """Names that come and go (tracking ids, a sender cycling names): when a stream closes its counters are
    merged under stream="_closed", so the totals stay and the label sets do not grow."""
    from rtik.serve.daemon import Daemon
    from rtik.solve.solver import Solver

    d = Daemon(config.from_dict({"streams": {"fps": FPS}}), Solver(steppack.cached_pack()))
    try:
        sizes = []
        for k in range(60):
            name = f"person-{k}"
            for i in range(3):
                f = protocol.make_frame(name, i + 1, i / FPS, clip[i] if k % 3 else np.zeros((5, 3)))
                assert d.slots.put(f, 0.0, "zmq")
                d._tick(d.slots.take(0.0))
            d._close_stream(name)
            sizes.append(len(d.stats.counters))
        assert sizes[-1] == sizes[10] and d.stats.total("frames_in") == 180  # bounded, nothing lost from the totals
        assert d.stats.total("frames_out", stream="_closed") == 40 * 3
        assert d.stats.total("errors", kind="input", stream="_closed") == 20 * 3 and not d._log_times
    finally:
        d.close()
