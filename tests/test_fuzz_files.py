"""Fuzzing the file readers: BVH text (mutated valid files, random tokens), npz and csv inputs of `rtik solve` and
`rtik send` raise their documented errors (BVHError, InputError: both RtikError) or read cleanly."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtik.commands.send import load_positions
from rtik.errors import BVHError, RtikError
from rtik.formats import bvh, points

# deterministic by default; RTIK_FUZZ_EXAMPLES=3000 RTIK_FUZZ_RANDOM=1 pytest ... explores further
FUZZ = settings(
    max_examples=int(os.environ.get("RTIK_FUZZ_EXAMPLES", 200)),
    derandomize="RTIK_FUZZ_RANDOM" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
GOLDEN = (Path(__file__).resolve().parent / "data" / "golden.bvh").read_text()
TOKENS = ["HIERARCHY", "ROOT", "JOINT", "End", "Site", "OFFSET", "CHANNELS", "{", "}", "MOTION", "Frames:",
          "Frame", "Time:", "Xposition", "Zrotation", "6", "3", "-1", "1e309", "nan", "0.0333", "\n", " "]  # fmt: skip


@st.composite
def mutated_bvh(draw):
    words = GOLDEN.split(" ")
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["drop", "dup", "swap", "token", "cut"]))
        i = draw(st.integers(0, len(words) - 1))
        if op == "drop" and len(words) > 1:
            del words[i]
        elif op == "dup":
            words.insert(i, words[i])
        elif op == "swap":
            j = draw(st.integers(0, len(words) - 1))
            words[i], words[j] = words[j], words[i]
        elif op == "token":
            words[i] = draw(st.sampled_from(TOKENS) | st.text(max_size=6))
        elif op == "cut":
            words = words[: max(i, 1)]
    return " ".join(words)


@FUZZ
@given(mutated_bvh())
def test_mutated_bvh(text):
    try:
        m = bvh.parse(text, "fuzz.bvh")
    except BVHError as e:
        assert "fuzz.bvh" in str(e)  # the message names the file
        return
    assert m.channels.shape[0] == m.num_frames and np.isfinite(m.channels).all()


@FUZZ
@given(st.lists(st.sampled_from(TOKENS) | st.text(max_size=5), max_size=80))
def test_random_bvh_tokens(tokens):
    with pytest.raises(BVHError):
        bvh.parse(" ".join(tokens), "fuzz.bvh")


@FUZZ
@given(st.binary(max_size=600))
def test_random_bvh_bytes(data):
    try:
        bvh.parse(data, "fuzz.bvh")
    except BVHError:
        pass


ARRAYS = st.sampled_from([
    np.zeros((2, 3, 3)), np.zeros((2, 3)), np.zeros(0), np.array(["a", "b", "c"]), np.array(30.0), np.array("cm"),
    np.array([np.nan, np.inf]), np.ones((2, 3), bool), np.zeros((1, 3, 3), np.float16), np.array([b"x"]),
    np.array(-1.0), np.zeros((3, 3, 3)), np.array([1 + 2j]),
])  # fmt: skip
NPZ = st.dictionaries(st.sampled_from(["positions", "joints", "fps", "units", "mask", "other"]), ARRAYS, max_size=6)


def _npz(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@FUZZ
@given(NPZ | NPZ.map(_npz) | st.binary(max_size=300), st.data())
def test_npz_inputs(tmp_path, content, data):
    raw = content if isinstance(content, bytes) else _npz(content)
    if isinstance(content, bytes) and content[:2] == b"PK" and data.draw(st.booleans()):
        raw = content[: data.draw(st.integers(0, len(content)))]  # a truncated archive
    p = tmp_path / "in.npz"
    p.write_bytes(raw)
    for read in (points.read_npz, load_positions):
        try:
            read(p)
        except RtikError as e:
            assert str(p) in str(e)


CELLS = st.sampled_from(["", "0", "1.5", "-2", "nan", "inf", "x", "1e400", " ", "3,4", '"', "\x00"])
HEAD = st.lists(st.sampled_from(["frame", "time", "Hips_x", "Hips_y", "Hips_z", "Head_x", "Head_y", "a_x", "",
                                 "Head_z"]), max_size=8)  # fmt: skip


@FUZZ
@given(HEAD, st.lists(st.lists(CELLS, max_size=9), max_size=5), st.binary(max_size=40))
def test_csv_inputs(tmp_path, head, rows, junk):
    p = tmp_path / "in.csv"
    p.write_bytes((",".join(head) + "\n" + "\n".join(",".join(r) for r in rows)).encode() + junk)
    try:
        clip = points.read_csv(p)
    except RtikError as e:
        assert str(p) in str(e)
        return
    assert clip.positions.shape[1:] == (len(clip.joints), 3) and clip.fps > 0


def test_a_zip_bomb_like_npz_is_refused_cheaply(tmp_path):
    p = tmp_path / "bomb.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("positions.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, "
                   b"'shape': (1000000000, 3, 3), }" + b" " * 40 + b"\n")  # fmt: skip
    with pytest.raises(RtikError, match=str(p)):
        points.read_npz(p)
