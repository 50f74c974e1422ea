"""Transports: the OSC encoder against python-osc's parser, OSC frames over real UDP loopback, ZeroMQ sockets."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import zmq
from loopback import free_port
from pythonosc.osc_message_builder import OscMessageBuilder

from rtik.errors import ProtocolError, TransportError
from rtik.wire import osc, protocol
from rtik.wire.protocol import Pose
from rtik.wire.zmq import PosePublisher, bind, connect, send_nowait, split_request


# --------------------------------------------------------------------------------------------------- OSC
def test_encoder_matches_python_osc_builder():
    b = OscMessageBuilder("/a/b")
    for tag, val in (("s", "hello"), ("i", -3), ("h", 1 << 40), ("f", 0.5), ("d", 1e-9), ("b", b"\x01\x02\x03")):
        b.add_arg(val, tag)
    assert osc.encode_message("/a/b", "sihfdb", "hello", -3, 1 << 40, 0.5, 1e-9, b"\x01\x02\x03") == b.build().dgram


def test_encoder_errors_are_clear():
    with pytest.raises(ProtocolError, match="2 type tags for 1 arguments"):
        osc.encode_message("/x", "ii", 1)
    with pytest.raises(ProtocolError, match="unsupported OSC type tag 'q'"):
        osc.encode_message("/x", "q", 1)
    with pytest.raises(ProtocolError, match="does not match its type tag"):
        osc.encode_message("/x", "i", "text")


def test_bundles_split_below_the_limit_and_parse():
    msgs = [osc.encode_message("/m", "si", f"name{k}", k) for k in range(100)]
    dgrams = osc.bundles(msgs, limit=400)
    assert len(dgrams) > 1 and all(len(d) <= 400 for d in dgrams)
    got = [m for d in dgrams for m in osc.parse_datagram(d)]
    assert got == [("/m", [f"name{k}", k]) for k in range(100)]


@pytest.mark.parametrize("mask", [False, True])
def test_frame_message_round_trip(mask):
    pos = np.arange(63, dtype=np.float32).reshape(21, 3) / 10
    m = np.arange(21) % 3 != 0 if mask else None
    f = protocol.make_frame("cam1", 5, 3.25, pos, m, "mediapipe33", "mm", sent=99.5)
    [(address, args)] = osc.parse_datagram(osc.encode_frame(f))
    assert address == osc.FRAME_ADDRESS
    g = osc.frame_from_args(args)
    assert (g.stream, g.seq, g.timestamp, g.units, g.layout, g.sent) == ("cam1", 5, 3.25, "mm", "mediapipe33", 99.5)
    np.testing.assert_array_equal(g.positions, pos)
    np.testing.assert_array_equal(g.mask, m) if mask else None
    assert mask or g.mask is None


def test_frame_message_from_a_plain_osc_library():
    """The documented minimum: stream s, seq i, timestamp d, units s, positions b."""
    pos = np.ones((2, 3), "<f4")
    b = OscMessageBuilder("/rtik/frame")
    for tag, val in (("s", "a"), ("i", 1), ("d", 0.5), ("s", "m"), ("b", pos.tobytes())):
        b.add_arg(val, tag)
    [(_, args)] = osc.parse_datagram(b.build().dgram)
    f = osc.frame_from_args(args)
    assert f.stream == "a" and f.positions.shape == (2, 3) and f.layout == "rtik" and f.mask is None


def test_large_sequence_numbers_use_int64():
    f = protocol.make_frame("a", 1 << 40, 0.0, np.zeros((1, 3)))
    [(_, args)] = osc.parse_datagram(osc.encode_frame(f))
    assert osc.frame_from_args(args).seq == 1 << 40


@pytest.mark.parametrize(
    "args, words",
    [
        (["a", 1, 0.5, "m"], "at least 5 arguments"),
        ([1, 1, 0.5, "m", b"x" * 12], "must be strings"),
        (["a", "1", 0.5, "m", b"x" * 12], "seq .* must be an int"),
        (["a", 1, "t", "m", b"x" * 12], "timestamp .* must be a double"),
        (["a", 1, 0.5, "m", b"x" * 10], "multiple of 12 bytes"),
        (["a", 1, 0.5, "m", np.full(3, np.inf, "<f4").tobytes()], "NaN or inf"),
        (["a", 1, 0.5, "m", np.zeros(3, "<f4").tobytes(), b"\x01\x01"], "mask blob has 2 bytes, expected 1"),
        (["a", 1, 0.5, "m", np.zeros(3, "<f4").tobytes(), 7], "unexpected optional argument of type int"),
        (["a", 1, 0.5, "ft", np.zeros(3, "<f4").tobytes()], "unknown units 'ft'"),
    ],
)
def test_malformed_frame_messages(args, words):
    with pytest.raises(ProtocolError, match=words):
        osc.frame_from_args(args)


def test_malformed_datagram():
    with pytest.raises(ProtocolError, match="malformed OSC datagram"):
        osc.parse_datagram(b"not osc at all")


def test_pose_message_round_trip():
    q = np.random.default_rng(0).normal(size=(22, 4)).astype(np.float32)
    p = Pose("s", 1 << 33, 2.5, 1.0, 1.001, 1.002, 420.0, True, np.array([0.1, 0.9, -2], np.float32), q)
    [(address, args)] = osc.parse_datagram(osc.encode_pose(p))
    g = osc.pose_from_args(args)
    assert address == osc.POSE_ADDRESS and (g.stream, g.seq, g.timestamp, g.reset) == ("s", 1 << 33, 2.5, True)
    np.testing.assert_array_equal(g.local_quats, q)
    np.testing.assert_array_equal(g.root_pos, p.root_pos)


def test_osc_frames_over_udp_loopback():
    port = free_port(socket.SOCK_DGRAM)
    rx = osc.udp_receiver("127.0.0.1", port, timeout=2.0)
    tx = osc.UdpSender("127.0.0.1", port)
    try:
        pos = np.random.default_rng(3).normal(size=(21, 3)).astype(np.float32)
        for seq in range(3):
            assert tx.send(osc.encode_frame(protocol.make_frame("u", seq, seq / 30, pos + seq)))
        for seq in range(3):
            [(_, args)] = osc.parse_datagram(rx.recv(65536))
            f = osc.frame_from_args(args)
            assert f.seq == seq
            np.testing.assert_array_equal(f.positions, pos + seq)
    finally:
        rx.close()
        tx.close()


def test_udp_sender_counts_errors_instead_of_raising():
    tx = osc.UdpSender("127.0.0.1", 9)
    tx.sock.close()  # a closed socket: every send fails
    assert tx.send(b"x") is False and tx.errors == 1


# -------------------------------------------------------------------------------------------------- ZeroMQ
def test_push_pull_pub_sub_and_router_on_loopback():
    ctx = zmq.Context()
    try:
        ep_in, ep_out, ep_ctl = (f"tcp://127.0.0.1:{free_port()}" for _ in range(3))
        pull = bind(ctx, zmq.PULL, ep_in)
        push = connect(ctx, zmq.PUSH, ep_in)
        f = protocol.make_frame("z", 1, 0.0, np.ones((3, 3)))
        assert send_nowait(push, [protocol.encode_frame(f)])
        assert pull.poll(2000)
        assert protocol.decode_frame(pull.recv_multipart()[-1]).stream == "z"

        pub = PosePublisher(ctx, ep_out)
        sub = connect(ctx, zmq.SUB, ep_out, subscribe=["z"])
        p = Pose("z", 1, 0, 0, 0, 0, 0, False, np.zeros(3), np.tile([0, 0, 0, 1.0], (2, 1)))
        for _ in range(200):  # a SUB joins asynchronously: publish until it has subscribed
            pub.publish("z", protocol.encode_pose(p))
            pub.publish("other", protocol.encode_pose(p))
            if sub.poll(10):
                break
        topic, payload = sub.recv_multipart()
        assert topic == b"z" and protocol.decode_pose(payload).seq == 1
        assert pub.sent > 0 and pub.dropped == 0

        router = bind(ctx, zmq.ROUTER, ep_ctl)
        dealer = connect(ctx, zmq.DEALER, ep_ctl)
        dealer.send_multipart([b"", protocol.encode_command("status")])
        assert router.poll(2000)
        envelope, payload = split_request(router.recv_multipart())
        assert protocol.decode_command(payload) == ("status", {})
        router.send_multipart([*envelope, protocol.encode_reply(True, "fine")])
        assert dealer.poll(2000) and protocol.decode_reply(dealer.recv_multipart()[-1])["result"] == "fine"
        for s in (pull, push, sub, router, dealer):
            s.close(0)
        pub.close()
    finally:
        ctx.term()


def test_bind_conflict_names_the_endpoint():
    ctx = zmq.Context()
    ep = f"tcp://127.0.0.1:{free_port()}"
    a = bind(ctx, zmq.PULL, ep)
    try:
        with pytest.raises(TransportError, match=f"cannot bind {ep}"):
            bind(ctx, zmq.PULL, ep)
        with pytest.raises(TransportError, match="cannot connect to nonsense"):
            connect(ctx, zmq.PUSH, "nonsense")
    finally:
        a.close(0)
        ctx.term()


def test_push_without_room_counts_a_drop():
    ctx = zmq.Context()
    try:
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.setsockopt(zmq.SNDHWM, 1)
        push.bind(f"tcp://127.0.0.1:{free_port()}")  # no peer ever connects: PUSH has nowhere to queue
        assert send_nowait(push, [b"x"]) is False
        push.close(0)
    finally:
        ctx.term()


def test_split_request_needs_an_identity():
    with pytest.raises(TransportError, match="expected an identity and a payload"):
        split_request([b"payload"])
