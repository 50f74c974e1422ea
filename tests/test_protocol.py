"""rtik.wire.protocol: encode/decode round trips, and clear ProtocolErrors on malformed input."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from rtik.errors import ProtocolError
from rtik.wire import protocol
from rtik.wire.protocol import Frame, Pose


def _frame(n=21, mask=False, **kw) -> Frame:
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(n, 3)).astype(np.float32)
    m = (rng.random(n) > 0.3) if mask else None
    args = dict(stream="actor1", seq=7, timestamp=12.5, positions=pos, mask=m, layout="rtik", units="cm", sent=1.7e9)
    args.update(kw)
    return protocol.make_frame(**args)


def _raw(**over) -> bytes:
    msg = {"v": 1, "type": "frame", "stream": "a", "seq": 1, "t": 0.5, "n": 2, "pos": np.zeros(6, "<f4").tobytes()}
    msg.update(over)
    return msgpack.packb({k: v for k, v in msg.items() if v is not None}, use_bin_type=True)


@pytest.mark.parametrize("mask", [False, True])
def test_frame_round_trip(mask):
    f = _frame(mask=mask)
    g = protocol.decode_frame(protocol.encode_frame(f))
    assert (g.stream, g.seq, g.timestamp, g.layout, g.units, g.sent) == ("actor1", 7, 12.5, "rtik", "cm", 1.7e9)
    np.testing.assert_array_equal(g.positions, f.positions)
    assert g.positions.dtype == np.float32 and g.positions.shape == (21, 3)
    if mask:
        np.testing.assert_array_equal(g.mask, f.mask)
    else:
        assert g.mask is None


def test_frame_positions_are_little_endian_float32_bytes():
    f = _frame(n=2)
    msg = msgpack.unpackb(protocol.encode_frame(f))
    assert msg["v"] == protocol.VERSION and msg["n"] == 2
    np.testing.assert_array_equal(np.frombuffer(msg["pos"], "<f4").reshape(2, 3), f.positions)


def test_minimal_frame_defaults():
    f = protocol.decode_frame(_raw())
    assert (f.layout, f.units, f.sent, f.mask) == ("rtik", "m", 0.0, None)


@pytest.mark.parametrize(
    "payload, words",
    [
        (b"\xc1", "not valid msgpack"),
        (msgpack.packb([1, 2]), "must be a msgpack map"),
        (_raw(v=2), "unsupported protocol version 2"),
        (_raw(v=None), "unsupported protocol version None"),
        (_raw(type="pose"), "expected a 'frame'"),
        (_raw(stream="../x"), "invalid stream name"),
        (_raw(stream="_skeleton"), "invalid stream name"),
        (_raw(stream=5), "'stream' must be str"),
        (_raw(seq=-1), "seq must be an integer"),
        (_raw(seq=1.5), "'seq' must be int"),
        (_raw(seq=True), "'seq' must be int"),
        (_raw(t="now"), "'t' must be float/int"),
        (_raw(t=float("nan")), "timestamp must be a finite"),
        (_raw(n=3), "'pos' has 24 bytes, expected 36"),
        (_raw(n=0), "outside 1..512"),
        (_raw(pos=None), "missing field 'pos'"),
        (_raw(pos=np.array([0, 0, 0, 0, 0, np.nan], "<f4").tobytes()), "NaN or inf"),
        (_raw(mask=b"\x01"), "'mask' has 1 bytes, expected 2"),
        (_raw(units="km"), "unknown units 'km'; valid units: m, cm, mm"),
        (_raw(layout=""), "layout must be a non-empty name"),
        (b"x" * (protocol.MAX_MESSAGE_BYTES + 1), "exceeds the limit"),
    ],
)
def test_malformed_frames_raise_clear_errors(payload, words):
    with pytest.raises(ProtocolError, match=words.replace("(", r"\(").replace(".", r"\.")):
        protocol.decode_frame(payload)


def test_decode_rejects_non_bytes():
    with pytest.raises(ProtocolError, match="expected a bytes payload"):
        protocol.decode_frame("text")


def test_make_frame_validates_shapes():
    with pytest.raises(ProtocolError, match=r"expected \(n, 3\)"):
        protocol.make_frame("a", 1, 0.0, np.zeros((4, 2)))
    with pytest.raises(ProtocolError, match="mask has 3 entries for 4 joints"):
        protocol.make_frame("a", 1, 0.0, np.zeros((4, 3)), mask=np.ones(3))


def test_pose_round_trip():
    q = np.random.default_rng(1).normal(size=(22, 4)).astype(np.float32)
    p = Pose("s1", 3, 1.25, 100.0, 100.001, 100.002, 850.5, True, np.array([1, 2, 3], np.float32), q)
    g = protocol.decode_pose(protocol.encode_pose(p))
    assert (g.stream, g.seq, g.timestamp, g.sent, g.recv, g.pub, g.solve_us, g.reset) == (
        "s1", 3, 1.25, 100.0, 100.001, 100.002, 850.5, True,
    )  # fmt: skip
    np.testing.assert_array_equal(g.local_quats, q)
    np.testing.assert_array_equal(g.root_pos, [1, 2, 3])


def test_pose_decode_rejects_wrong_type_and_sizes():
    with pytest.raises(ProtocolError, match="expected a 'pose'"):
        protocol.decode_pose(protocol.encode_frame(_frame()))
    bad = msgpack.unpackb(
        protocol.encode_pose(Pose("s", 1, 0, 0, 0, 0, 0, False, np.zeros(3), np.zeros((2, 4)))), raw=False
    )
    bad["root"] = b"\x00" * 8
    with pytest.raises(ProtocolError, match="'root' has 8 bytes, expected 12"):
        protocol.decode_pose(msgpack.packb(bad, use_bin_type=True))


def test_skeleton_message(bandai_skeleton):
    d = bandai_skeleton.scaled(0.01).to_dict()
    out = protocol.decode_skeleton(protocol.encode_skeleton(d, "default"))
    assert out["names"] == d["names"] and out["parents"] == d["parents"]
    np.testing.assert_allclose(out["offsets"], d["offsets"])
    with pytest.raises(ProtocolError, match="lacks 'offsets'"):
        protocol.decode_skeleton(msgpack.packb({"v": 1, "type": "skeleton", "skeleton": {"names": [], "parents": []}}))


def test_commands_and_replies():
    cmd, args = protocol.decode_command(protocol.encode_command("record_start", stream="a", name="take1"))
    assert cmd == "record_start" and args == {"stream": "a", "name": "take1"}
    with pytest.raises(ProtocolError, match="unknown command 'explode'; valid commands: status, streams"):
        protocol.decode_command(protocol.encode_command("explode"))
    assert protocol.decode_reply(protocol.encode_reply(True, {"x": 1})) == {"v": 1, "ok": True, "result": {"x": 1}}
    err = protocol.decode_reply(protocol.encode_reply(False, error="no open stream 'b'"))
    assert err["ok"] is False and "no open stream" in err["error"]
    with pytest.raises(ProtocolError, match="boolean 'ok'"):
        protocol.decode_reply(msgpack.packb({"v": 1}))


@pytest.mark.parametrize("name", ["a", "actor_1", "Cam-2.left", "x" * 64])
def test_valid_stream_names(name):
    assert protocol.check_stream_name(name) == name


@pytest.mark.parametrize("name", ["", "_x", "-x", "a/b", "a b", "x" * 65, "é", None])
def test_invalid_stream_names(name):
    with pytest.raises(ProtocolError, match="invalid stream name"):
        protocol.check_stream_name(name)
