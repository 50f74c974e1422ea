"""Fuzzing the OSC decoders: random datagrams, mutated valid ``/rtik/frame`` messages and bundles, and random
argument lists raise ProtocolError or nothing."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtik.errors import ProtocolError
from rtik.wire import osc, protocol

# deterministic by default; RTIK_FUZZ_EXAMPLES=3000 RTIK_FUZZ_RANDOM=1 pytest ... explores further
FUZZ = settings(
    max_examples=int(os.environ.get("RTIK_FUZZ_EXAMPLES", 300)),
    derandomize="RTIK_FUZZ_RANDOM" not in os.environ,
    deadline=None,
)

_F = protocol.make_frame("actor1", 9, 0.25, np.random.default_rng(0).normal(size=(21, 3)), np.ones(21, bool))
VALID = [
    osc.encode_frame(_F),
    osc.encode_message(osc.FRAME_ADDRESS, "sidsb", "a", 1, 0.0, "m", b"\0" * 12),
    *osc.bundles([osc.encode_frame(_F), osc.encode_frame(_F)], limit=4096),
    osc.encode_pose(protocol.Pose("a", 1, 0.5, 0.0, 1.0, 2.0, 3.0, True, np.zeros(3), np.zeros((22, 4)))),
]


@st.composite
def mutated(draw):
    b = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "set32"]))
        i = draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "flip" and b:
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            b = b[:i]
        elif op == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "set32" and len(b) >= i + 4:  # a size or count field set to something hostile
            b[i : i + 4] = draw(st.sampled_from([b"\x7f\xff\xff\xff", b"\xff\xff\xff\xff", b"\0\0\0\0", b"\0\0\1\0"]))
    return bytes(b)


def _decode(dgram) -> None:
    try:
        messages = osc.parse_datagram(dgram)
    except ProtocolError as e:
        assert str(e)
        return
    for address, args in messages:
        for decode in (osc.frame_from_args, osc.pose_from_args):
            try:
                decode(args)
            except ProtocolError as e:
                assert str(e)
        del address


@FUZZ
@given(st.binary(max_size=1500))
def test_random_datagrams(dgram):
    _decode(dgram)


@FUZZ
@given(mutated())
def test_mutated_valid_datagrams(dgram):
    _decode(dgram)


ARGS = st.lists(st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats() | st.text(max_size=70)
                | st.binary(max_size=300) | st.tuples(st.integers(), st.integers()), max_size=9)  # fmt: skip


@FUZZ
@given(ARGS)
def test_random_frame_arguments(args):
    for decode in (osc.frame_from_args, osc.pose_from_args):
        try:
            decode(args)
        except ProtocolError as e:
            assert str(e)


def test_a_valid_frame_survives_the_round_trip():
    [(address, args)] = osc.parse_datagram(VALID[0])
    f = osc.frame_from_args(args)
    assert address == osc.FRAME_ADDRESS and f.seq == 9 and np.array_equal(f.positions, _F.positions)


def test_timestamps_no_clock_reads_are_refused():
    """Found by benchmarks/fuzz.py: a flipped exponent bit made a 1e300 s timestamp, which the VMC output could
    not encode as float32 (the solver thread died). Such frames are protocol errors now."""
    for t in (1e300, -1e13, float("inf")):
        dgram = osc.encode_message(osc.FRAME_ADDRESS, "sidsb", "a", 1, t, "m", b"\0" * 12)
        [(_, args)] = osc.parse_datagram(dgram)
        with pytest.raises(ProtocolError, match="timestamp"):
            osc.frame_from_args(args)
    assert osc.frame_from_args(osc.parse_datagram(osc.encode_message(
        osc.FRAME_ADDRESS, "sidsb", "a", 1, 1.7e9, "m", b"\0" * 12))[0][1]).timestamp == 1.7e9  # fmt: skip
