"""rtik.formats.bvh: a golden file with known angles and positions, round trips, parser robustness, every error path,
archives."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from rtik.errors import BVHError
from rtik.formats import bvh
from rtik.geometry import rotations as rot

GOLDEN = Path(__file__).resolve().parent / "data" / "golden.bvh"
NAMES = ("Hips", "Chest", "Head", "Leg", "Foot", "Arm", "Hand")
# Known local rotations of tests/data/golden.bvh, per frame: joint -> (intrinsic scipy sequence, degrees).
# Channel orders: Hips ZXY (6 ch), Chest XYZ, Head YXZ, Leg XZY (6 ch, position channels on a non-root joint),
# Foot ZXY, Arm ZYX, Hand no channels (identity).
KNOWN_ROTATIONS = [
    {},
    {"Hips": ("Z", 90)},
    {"Chest": ("X", 90), "Leg": ("X", -90), "Arm": ("Y", 90)},
    {"Head": ("Y", 90), "Leg": ("XZ", [90, 90]), "Arm": ("ZX", [90, 90])},
    {"Hips": ("Y", 180)},
]
# Known global positions (cm) worked out by hand, frame by frame, in NAMES order
KNOWN_POSITIONS = [
    [(0, 0, 0), (0, 10, 0), (0, 20, 0), (5, 0, 0), (5, -20, 0), (-5, 8, 0), (-15, 8, 0)],
    [(1, 2, 3), (-9, 2, 3), (-19, 2, 3), (1, 7, 3), (21, 7, 3), (-7, -3, 3), (-7, -13, 3)],
    [(0, 0, 0), (0, 10, 0), (0, 10, 10), (5, 0, 0), (5, 0, 20), (-5, 8, 0), (-5, 8, 10)],
    [(0, 0, 0), (0, 10, 0), (0, 20, 0), (5, 1, 0), (25, 1, 0), (-5, 8, 0), (-5, -2, 0)],
    [(0, 0, 0), (0, 10, 0), (0, 20, 0), (-5, 0, 0), (-5, -20, 0), (5, 8, 0), (15, 8, 0)],
]


@pytest.fixture(scope="module")
def golden() -> bvh.Motion:
    return bvh.read(GOLDEN)


def golden_text() -> str:
    return GOLDEN.read_text()


def assert_same_motion(a: bvh.Motion, b: bvh.Motion, atol=1e-9):
    assert a.skeleton.names == b.skeleton.names and a.skeleton.channels == b.skeleton.channels
    np.testing.assert_array_equal(a.skeleton.parents, b.skeleton.parents)
    np.testing.assert_allclose(a.skeleton.offsets, b.skeleton.offsets, atol=atol)
    for ea, eb in zip(a.skeleton.end_sites, b.skeleton.end_sites, strict=True):
        assert (ea is None) == (eb is None)
        if ea is not None:
            np.testing.assert_allclose(ea, eb, atol=atol)
    assert a.frame_time == pytest.approx(b.frame_time, rel=1e-9)
    np.testing.assert_allclose(a.channels, b.channels, atol=atol)


# ------------------------------------------------------------------------------------------------- golden
def test_golden_structure(golden):
    s = golden.skeleton
    assert s.names == NAMES
    assert s.parents.tolist() == [-1, 0, 1, 0, 3, 0, 5]
    assert [s.rotation_order(j) for j in range(len(s))] == ["ZXY", "XYZ", "YXZ", "XZY", "ZXY", "ZYX", ""]
    assert [len(c) for c in s.channels] == [6, 3, 3, 6, 3, 3, 0]
    assert golden.num_frames == 5 and golden.channels.shape == (5, 24)
    assert golden.frame_time == 0.04 and golden.fps == pytest.approx(25.0)
    np.testing.assert_array_equal(s.end_sites[2], [0, 5, 0])
    np.testing.assert_array_equal(s.end_sites[6], [-4, 0, 0])
    assert s.end_sites[0] is None
    np.testing.assert_array_equal(s.offsets[4], [0, -20, 0])


@pytest.mark.parametrize("frame", range(5))
def test_golden_known_angles(golden, frame):
    q = golden.local_quats()[frame]
    for j, name in enumerate(NAMES):
        seq, deg = KNOWN_ROTATIONS[frame].get(name, ("X", 0))
        ref = Rotation.from_euler(seq, deg, degrees=True).as_quat()
        assert np.degrees(rot.quat_geodesic(q[j], ref)) < 1e-9, f"frame {frame} joint {name}"


@pytest.mark.parametrize("frame", range(5))
def test_golden_known_positions(golden, frame):
    np.testing.assert_allclose(golden.positions()[frame], KNOWN_POSITIONS[frame], atol=1e-12)


def test_golden_local_positions_use_position_channels(golden):
    lp = golden.local_positions()
    np.testing.assert_array_equal(lp[1, 0], [1, 2, 3])  # the root's position channels
    np.testing.assert_array_equal(lp[3, 3], [5, 1, 0])  # Leg's own position channels replace its OFFSET
    np.testing.assert_array_equal(lp[:, 1], np.broadcast_to([0, 10, 0], (5, 3)))  # no position channels: OFFSET


def test_golden_save_reload_exact(golden, tmp_path):
    out = tmp_path / "copy.bvh"
    bvh.write(out, golden)
    again = bvh.read(out)
    assert_same_motion(golden, again)
    for f in range(golden.num_frames):  # frame by frame, angles to 1e-4 degrees
        np.testing.assert_allclose(again.channels[f], golden.channels[f], atol=1e-4)
    assert not (tmp_path / "copy.bvh.tmp").exists()


def test_golden_round_trip_through_rotations(golden):
    """Channels -> quaternions -> channels: the writer's Euler extraction gives back the file's angles."""
    q = golden.local_quats()
    rebuilt = bvh.Motion(
        golden.skeleton,
        golden.frame_time,
        bvh.channels_from_pose(golden.skeleton, q, local_pos=golden.local_positions()),
    )
    diff = rebuilt.channels - golden.channels
    diff = (diff + 180.0) % 360.0 - 180.0  # 180 and -180 degrees are one angle
    np.testing.assert_allclose(diff, 0, atol=1e-4)
    reparsed = bvh.parse(bvh.dumps(rebuilt), "rebuilt")
    np.testing.assert_allclose(rot.quat_geodesic(reparsed.local_quats(), q), 0, atol=np.radians(1e-4))
    np.testing.assert_allclose(reparsed.positions(), golden.positions(), atol=1e-5)


def test_from_pose_and_header(golden):
    q = golden.local_quats()
    root = golden.local_positions()[:, 0]
    m = bvh.from_pose(golden.skeleton, q, golden.frame_time, root_pos=root, source="x")
    np.testing.assert_allclose(m.positions()[:, :3], golden.positions()[:, :3], atol=1e-9)
    h = bvh.header(golden.skeleton, 1 / 30, 7, frames_width=10)
    assert "Frames: 7         \n" in h and h.startswith("HIERARCHY\nROOT Hips\n{\n")
    assert "\tCHANNELS 0\n" in h and "End Site" in h
    assert bvh.parse(h + "\n".join(["0 " * 24] * 7), "h").num_frames == 7


def test_writer_never_prints_negative_zero():
    line = bvh.format_frames(np.array([[-0.0, -1e-9, 1.5, -2.25]]))
    assert line == "0.000000 0.000000 1.500000 -2.250000\n"


# -------------------------------------------------------------------------------------------- robustness
def _variant(transform) -> bvh.Motion:
    return bvh.parse(transform(golden_text()), "variant")


@pytest.mark.parametrize(
    "transform",
    [
        pytest.param(lambda t: t.replace("\n", "\r\n"), id="crlf"),
        pytest.param(lambda t: t.replace("\n", "\r"), id="cr-only"),
        pytest.param(lambda t: t.replace(" ", "\t"), id="tabs"),
        pytest.param(lambda t: t.replace(" ", "   ").replace("\t", " \t "), id="repeated-spaces"),
        pytest.param(lambda t: "\n\n" + t.replace("MOTION\n", "MOTION\n\n") + "\n\n\n", id="blank-lines"),
        pytest.param(lambda t: t.replace(" 90", " 9.0e1").replace(" 5 ", " 5.000E+00 "), id="scientific"),
        pytest.param(
            lambda t: t.replace(" 2 3 ", " +2.0 3. ").replace(
                " 0 0 0 0 0 0 0 0 0 0 0 0 5", " -0 .0 0 0 0 0 0 0 0 0 0 0 5"
            ),
            id="signs",
        ),  # noqa: E501
        pytest.param(lambda t: t.replace("End Site", "End  Site").replace("OFFSET", "OFFSET "), id="spacing"),
        pytest.param(lambda t: t.rstrip("\n"), id="no-final-newline"),
        pytest.param(lambda t: t + "1 2 3\n", id="extra-lines-ignored"),
        pytest.param(lambda t: t + "end of take: walk\n", id="extra-words-ignored"),
    ],
)
def test_parser_variants_equal_golden(golden, transform):
    assert_same_motion(_variant(transform), golden)


def test_parse_bytes_and_file_objects(golden):
    raw = GOLDEN.read_bytes()
    assert_same_motion(bvh.parse(raw), golden)
    assert_same_motion(bvh.read(io.BytesIO(raw), name="mem.bvh"), golden)
    assert_same_motion(bvh.read(io.StringIO(raw.decode())), golden)
    latin = raw.replace(b"Hand", "Händ".encode("latin-1"))
    assert bvh.parse(latin).skeleton.names[-1] == "Händ"


def test_three_or_six_channels_anywhere():
    text = golden_text()
    # give the Chest 6 channels and the root only 3 rotation channels
    text = text.replace(
        "CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation",
        "CHANNELS 3 Zrotation Xrotation Yrotation",
    ).replace(
        "CHANNELS 3 Xrotation Yrotation Zrotation",
        "CHANNELS 6 Xrotation Yrotation Zrotation Xposition Yposition Zposition",
    )
    lines = text.splitlines()
    start = lines.index("Frame Time: 0.04") + 1
    for i in range(start, len(lines)):
        v = lines[i].split()
        lines[i] = " ".join(v[3:6] + v[6:9] + ["0", "10", "0"] + v[9:])
    m = bvh.parse("\n".join(lines), "moved")
    assert [len(c) for c in m.skeleton.channels] == [3, 6, 3, 6, 3, 3, 0]
    assert m.skeleton.channels[1][3:] == ("Xposition", "Yposition", "Zposition")
    pos = m.positions()
    np.testing.assert_allclose(pos[2], KNOWN_POSITIONS[2], atol=1e-12)
    np.testing.assert_allclose(pos[4], KNOWN_POSITIONS[4], atol=1e-12)


def test_partial_rotation_channels_round_trip():
    text = "HIERARCHY\nROOT a\n{\nOFFSET 0 0 0\nCHANNELS 1 Yrotation\nJOINT b\n{\nOFFSET 1 0 0\nCHANNELS 0\n}\n}\n"
    m = bvh.parse(text + "MOTION\nFrames: 2\nFrame Time: 0.1\n30\n-45\n", "one-channel")
    np.testing.assert_allclose(m.positions()[1, 1], [np.cos(np.radians(45)), 0, np.sin(np.radians(45))])
    back = bvh.channels_from_pose(m.skeleton, m.local_quats())
    np.testing.assert_allclose(back, m.channels, atol=1e-9)


def test_numbers_parse_bit_exact():
    """The vectorised number reader agrees with float() on awkward tokens."""
    from rtik.formats._bvh_parse import parse_floats

    toks = ["0", "-0", "1.", ".5", "-.25", "+7", "123456789012345", "0.1", "-2.675", "1e-3", "1.87007e-05",
            "12345678901234567890.5", "3.14159265358979", "-999.999999", "nan"]  # fmt: skip
    vals, ends = parse_floats(("\t ".join(toks) + "\r\n").encode())
    ref = np.array([float(t) for t in toks])
    np.testing.assert_array_equal(vals[:-1], ref[:-1])
    assert np.isnan(vals[-1]) and len(ends) == len(toks)
    assert np.signbit(vals[1])
    rng = np.random.default_rng(0)
    x = rng.normal(scale=10.0 ** rng.integers(-6, 6, 5000), size=5000)
    text = " ".join(f"{v:.{rng.integers(0, 9)}f}" for v in x)
    np.testing.assert_array_equal(parse_floats(text.encode())[0], [float(t) for t in text.split()])
    assert parse_floats(b"1 2 x3") is None and parse_floats(b"1 2-3") is None and parse_floats(b"1 . 3") is None


# ------------------------------------------------------------------------------------------------- errors
def _line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def _lines(text: str):
    return text.split("\n")


def _motion_line(k: int) -> int:
    """1-based line number of motion frame ``k`` in the golden file."""
    return _lines(golden_text()).index("Frame Time: 0.04") + 2 + k


ERROR_CASES = [
    ("truncated", lambda t: t.rsplit("\n", 2)[0] + "\n", "truncated motion: header says 5 frames, file has 4", None),
    ("columns", lambda t: t.replace("1 2 3 90", "1 2 3"), "frame 1 has 23 values, expected 24", _motion_line(1)),
    ("non-numeric", lambda t: t.replace("1 2 3 90", "1 two 3 90"), "non-numeric value 'two' in frame 1", _motion_line(1)),  # noqa: E501
    ("nan-value", lambda t: t.replace("1 2 3 90", "1 nan 3 90"), "non-finite value 'nan' in frame 1", _motion_line(1)),
    ("missing-brace", lambda t: t.replace("\t}\n\tJOINT Leg", "\tJOINT Leg", 1), "unbalanced braces", None),
    ("extra-brace", lambda t: t.replace("MOTION", "}\nMOTION"), "unbalanced braces: '}' after the ROOT", None),
    ("bad-channel", lambda t: t.replace("Zrotation Yrotation Xrotation", "Zrotation Yrot Xrotation"), "invalid channel 'Yrot' in joint 'Arm'; valid: Xposition", _line_of(golden_text(), "CHANNELS 3 Zrotation Yrotation Xrotation")),  # noqa: E501
    ("repeated-channel", lambda t: t.replace("Zrotation Yrotation Xrotation", "Zrotation Zrotation Xrotation"), "repeated channel", None),  # noqa: E501
    ("channel-count", lambda t: t.replace("CHANNELS 0", "CHANNELS 7"), "channel count 7 outside 0..6", None),
    ("bad-offset", lambda t: t.replace("OFFSET -10.0", "OFFSET minus10"), "expected a number, found 'minus10'", None),
    ("no-hierarchy", lambda t: t.replace("HIERARCHY", "HIERARCHIE"), "expected 'HIERARCHY', found 'HIERARCHIE'", 1),
    ("frames", lambda t: t.replace("Frames: 5", "Frames: five"), "expected a frame count, found 'five'", None),
    ("frame-time", lambda t: t.replace("Frame Time: 0.04", "Frame Time: 0"), "frame time must be positive", None),
    ("duplicate", lambda t: t.replace("JOINT Foot", "JOINT Leg"), "duplicate joint name 'Leg'", None),
    ("empty", lambda t: "", "expected 'HIERARCHY'|unexpected end of file", None),
    ("header-only", lambda t: t.split("MOTION")[0], "unexpected end of file", None),
]  # fmt: skip


@pytest.mark.parametrize(("case", "transform", "message", "line"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_errors_name_file_and_line(tmp_path, case, transform, message, line):
    path = tmp_path / f"{case}.bvh"
    path.write_text(transform(golden_text()))
    with pytest.raises(BVHError) as info:
        bvh.read(path)
    msg = str(info.value)
    assert re.search(message, msg), msg
    m = re.match(rf"{re.escape(str(path))}:(\d+): ", msg)
    assert m, f"no file:line prefix in {msg!r}"
    if line is not None:
        assert int(m.group(1)) == line, msg


def test_missing_file(tmp_path):
    path = tmp_path / "nope.bvh"
    with pytest.raises(BVHError, match=rf"{re.escape(str(path))}: cannot read: No such file"):
        bvh.read(path)


def test_format_frames_rejects_bad_shape():
    with pytest.raises(BVHError, match="expected \\(frames, channels\\)"):
        bvh.format_frames(np.zeros(3))


# ----------------------------------------------------------------------------------------------- archives
def test_iter_archive(tmp_path):
    good = GOLDEN.read_bytes()
    bad = golden_text().replace("1 2 3 90", "1 2 3").encode()
    arc = tmp_path / "clips.tar.xz"
    with tarfile.open(arc, "w:xz") as tar:
        for name, data in (("set/data/a.bvh", good), ("set/data/b.BVH", bad), ("set/README.txt", b"hi"),
                           ("set/data/c.bvh", good)):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    got = list(bvh.iter_archive(arc))
    assert [n for n, _ in got] == ["set/data/a.bvh", "set/data/b.BVH", "set/data/c.bvh"]
    assert isinstance(got[0][1], bvh.Motion) and isinstance(got[2][1], bvh.Motion)
    assert isinstance(got[1][1], BVHError)
    assert f"{arc}:set/data/b.BVH:" in str(got[1][1]) and "frame 1 has 23 values" in str(got[1][1])
    assert got[0][1].source == f"{arc}:set/data/a.bvh"
    assert [n for n, _ in bvh.iter_archive(arc, pattern="c.bvh")] == ["set/data/c.bvh"]


def test_damaged_archive(tmp_path):
    arc = tmp_path / "broken.tar.xz"
    arc.write_bytes(b"\xfd7zXZ\x00 this is not really xz")
    with pytest.raises(BVHError, match="cannot read archive"):
        list(bvh.iter_archive(arc))
    # a good archive cut short, and one damaged in the middle of its compressed data
    good = tmp_path / "good.tar.xz"
    with tarfile.open(good, "w:xz") as tar:
        for k in range(3):
            data = golden_text().replace("Frame Time: 0.04", f"Frame Time: 0.0{k + 1}").encode() * 1
            info = tarfile.TarInfo(f"c{k}.bvh")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = good.read_bytes()
    for name, data in (("cut.tar.xz", raw[: len(raw) // 2]), ("flipped.tar.xz", raw[:200] + bytes(50) + raw[250:])):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(BVHError, match=f"{name}: cannot read archive"):
            list(bvh.iter_archive(tmp_path / name))


def test_write_errors_are_bvh_errors(golden, tmp_path):
    with pytest.raises(BVHError, match="cannot write"):
        bvh.write(tmp_path / "no" / "such" / "dir.bvh", golden)
