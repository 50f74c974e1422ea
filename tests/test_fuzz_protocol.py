"""Fuzzing the msgpack decoders (frames, poses, skeleton, control) and what the daemon does with whatever gets
through: random bytes, random msgpack documents and mutated valid payloads raise ProtocolError or nothing, and
the daemon's control handler and solver tick never raise (errors are counted)."""

from __future__ import annotations

import os

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtik.errors import ProtocolError
from rtik.serve import config
from rtik.wire import protocol

# deterministic by default; RTIK_FUZZ_EXAMPLES=3000 RTIK_FUZZ_RANDOM=1 pytest ... explores further
FUZZ = settings(
    max_examples=int(os.environ.get("RTIK_FUZZ_EXAMPLES", 200)),
    derandomize="RTIK_FUZZ_RANDOM" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

DECODERS = [protocol.decode_frame, protocol.decode_pose, protocol.decode_skeleton, protocol.decode_command,
            protocol.decode_reply]  # fmt: skip

# msgpack values: scalars, bytes, nested lists and maps, the keys of the real schema among random ones
KEYS = st.sampled_from(["v", "type", "stream", "seq", "t", "sent", "layout", "units", "n", "pos", "mask", "cmd",
                        "name", "ok", "result", "skeleton", "root", "quats"]) | st.text(max_size=8)  # fmt: skip
SCALARS = (st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.floats() | st.text(max_size=20)
           | st.binary(max_size=64) | st.sampled_from([1, "frame", "pose", "m", "cm", "rtik", "status"]))  # fmt: skip
VALUES = st.recursive(SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(KEYS, c, max_size=5), max_leaves=12)
DOCS = st.dictionaries(KEYS, VALUES, max_size=12) | st.fixed_dictionaries(
    {"v": st.just(1)},
    optional={k: VALUES for k in ("type", "stream", "seq", "t", "n", "pos", "mask", "units", "layout", "cmd", "sent")},
)


def _valid_frame(n=21, mask=True) -> bytes:
    rng = np.random.default_rng(0)
    f = protocol.make_frame("actor1", 7, 1.5, rng.normal(size=(n, 3)), np.ones(n, bool) if mask else None, sent=2.0)
    return protocol.encode_frame(f)


VALID = [
    _valid_frame(),
    _valid_frame(3, mask=False),
    protocol.encode_pose(protocol.Pose("a", 1, 0.5, 0.0, 1.0, 2.0, 3.0, True, np.zeros(3), np.zeros((22, 4)))),
    protocol.encode_skeleton({"names": ["a"], "parents": [-1], "offsets": [[0, 0, 0]]}, "m"),
    protocol.encode_command("record_start", stream="a", name="take"),
    protocol.encode_reply(True, {"x": 1}),
]


@st.composite
def mutated(draw):
    """A valid payload with a few random edits: byte flips, truncation, insertion, a duplicated slice."""
    b = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup", "set"]))
        i = draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "flip" and b:
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            b = b[:i]
        elif op == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "dup":
            b[i:i] = b[i : i + draw(st.integers(1, 32))]
        elif op == "set" and b:
            b[i] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xC1, 0xDC, 0xDD, 0xDE, 0xDF, 0xFF, 0xCF, 0xD3, 0xC6]))
    return bytes(b)


def _only_protocol_errors(data) -> None:
    for decode in DECODERS:
        try:
            decode(data)
        except ProtocolError as e:
            assert str(e)  # a message naming what was wrong


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data):
    _only_protocol_errors(data)


@FUZZ
@given(DOCS)
def test_random_msgpack_documents(doc):
    _only_protocol_errors(msgpack.packb(doc, use_bin_type=True))


@FUZZ
@given(mutated())
def test_mutated_valid_payloads(data):
    _only_protocol_errors(data)


@FUZZ
@given(VALUES)
def test_non_map_payloads_and_wrong_types(value):
    _only_protocol_errors(msgpack.packb(value, use_bin_type=True))
    for decode in DECODERS:
        with pytest.raises(ProtocolError):
            decode(value if not isinstance(value, bytes) else 12345)  # not bytes at all


def test_hostile_sizes_are_refused_with_a_clear_message():
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        protocol.decode_frame(b"\x80" * (protocol.MAX_MESSAGE_BYTES + 1))
    big = {"v": 1, "stream": "a", "seq": 1, "t": 0.0, "n": protocol.MAX_JOINTS + 1,
           "pos": b"\0" * 12 * (protocol.MAX_JOINTS + 1)}  # fmt: skip
    with pytest.raises(ProtocolError, match="outside 1..512"):
        protocol.decode_frame(msgpack.packb(big))
    with pytest.raises(ProtocolError, match="not valid msgpack"):
        protocol.decode_frame(b"\xdd\xff\xff\xff\xff")  # an array header claiming 4 G items and nothing after
    deep = b"\x91" * 100_000 + b"\x00"  # 100,000 nested one-element arrays
    with pytest.raises(ProtocolError):
        protocol.decode_frame(deep)


# ------------------------------------------------------------------------- what gets through, in the daemon
@pytest.fixture(scope="module")
def daemon():
    """A daemon that is never started (no sockets): its control handler and solver tick on real objects."""
    import steppack

    from rtik.serve.daemon import Daemon
    from rtik.solve.solver import Solver

    pack = steppack.cached_pack()
    if pack is None:
        pytest.skip("mocap sample not found (the test model pack is built from it)")
    cfg = config.from_dict({"streams": {"fps": 30.0, "max_streams": 4}, "recording": {"folder": "/nonexistent/rec"}})
    d = Daemon(cfg, Solver(pack))
    yield d
    d.close()


class _Router:
    """Stands in for the ROUTER socket: keeps what the handler sends back."""

    def __init__(self):
        self.sent = []

    def send_multipart(self, parts):
        self.sent.append(parts)


CMD_ARGS = st.dictionaries(st.sampled_from(["stream", "name", "x", "path"]) | st.text(max_size=5), VALUES, max_size=3)


@FUZZ
@given(st.sampled_from([*protocol.COMMANDS, "fly", ""]) | st.text(max_size=12), CMD_ARGS)
def test_control_commands_always_get_a_reply(daemon, cmd, args):
    sock = _Router()
    daemon.commands.handle(sock, [b"id", b"", msgpack.packb({"v": 1, "cmd": cmd, **args}, use_bin_type=True)])
    [parts] = sock.sent
    reply = protocol.decode_reply(parts[-1])
    assert parts[:-1] == [b"id", b""]
    if not reply["ok"]:
        assert reply["error"]
    assert not daemon.record_dir.exists()  # nothing was written, least of all outside the folder


@FUZZ
@given(st.one_of(st.binary(max_size=64), mutated()))
def test_control_garbage_gets_an_error_reply(daemon, payload):
    sock = _Router()
    before = daemon.stats.total("errors", kind="protocol")
    daemon.commands.handle(sock, [b"id", payload])
    [parts] = sock.sent
    reply = protocol.decode_reply(parts[-1])
    try:
        protocol.decode_command(payload)
    except ProtocolError:  # no request at all: an error reply, counted
        assert not reply["ok"] and daemon.stats.total("errors", kind="protocol") == before + 1


FRAMES = st.builds(
    lambda stream, seq, n, layout, units, masked, scale: protocol.make_frame(
        stream, seq, seq / 30.0, np.random.default_rng(seq).normal(size=(n, 3)) * scale,
        np.random.default_rng(n).random(n) > masked, layout, units),
    st.sampled_from(["a", "b", "c", "d", "e", "f"]), st.integers(0, 1 << 40),
    st.sampled_from([1, 2, 17, 21, 22, 33, 200]),
    st.sampled_from(["rtik", "bvh", "mediapipe33", "coco17", "unknown", "x" * 64]), st.sampled_from(protocol.UNITS),
    st.sampled_from([-1.0, 0.3, 0.9, 1.0]), st.sampled_from([0.0, 1e-3, 1.0, 1e3, 1e30]),
)  # fmt: skip


@FUZZ
@given(st.lists(FRAMES, min_size=1, max_size=6))
def test_any_decodable_frame_is_solved_or_counted(daemon, frames):
    """Whatever passes the decoder (any layout name, joint count, mask, scale) never escapes the tick."""
    before = daemon.stats.total("errors")
    daemon._tick([(f, 0.0, False) for f in frames])
    assert daemon.stats.total("errors") >= before
    assert daemon.stats.total("errors", kind="thread") == 0
