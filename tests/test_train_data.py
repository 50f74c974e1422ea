"""Training data: clip sets from BVH, split by take, leave-content-out, npz cache round trip."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from rtik.errors import InputError  # noqa: E402
from rtik.formats import bvh  # noqa: E402
from train.data import CM, ClipSet, load_clips, normalized_positions, parse_name  # noqa: E402


@pytest.fixture(scope="module")
def clips(mocap, tmp_path_factory):
    src = tmp_path_factory.mktemp("bvh")
    for p in sorted((mocap / "sample").glob("*.bvh"))[:3]:
        (src / p.name).symlink_to(p)
    return src, load_clips(src, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


def test_parse_name():
    assert parse_name("x/dataset-2_walk-turn-left_normal_010.bvh") == ("walk-turn-left", "normal", 10)
    assert parse_name("other.bvh") == ("", "", -1)


def test_clips_match_bvh_in_metres(clips, mocap):
    src, cs = clips
    first = sorted(src.glob("*.bvh"))[0]
    m = bvh.read(first)
    assert cs.names[0] == first.name
    q, r = cs.clip(0)
    assert q.shape == (m.num_frames, len(m.skeleton), 4) and r.shape == (m.num_frames, 3)
    np.testing.assert_allclose(cs.positions(0), m.positions() * CM, atol=1e-5)
    assert np.allclose(cs.skeleton.offsets, m.skeleton.offsets * CM)


def test_cache_round_trip(clips):
    src, cs = clips
    cache = next(iter(src.parent.glob("cache*")))
    again = load_clips(src, cache_dir=cache, progress=False)
    assert list(cache.glob("*.npz")), "a cache file was written"
    assert again.names == cs.names and again.contents == cs.contents
    np.testing.assert_array_equal(again.quats, cs.quats)
    np.testing.assert_array_equal(again.starts, cs.starts)
    assert again.skeleton.names == cs.skeleton.names


def _fake(names):
    J = 3
    n = len(names)
    meta = [parse_name(x) for x in names]
    from rtik.geometry.skeleton import Skeleton

    skel = Skeleton(("a", "b", "c"), [-1, 0, 1], np.eye(3))
    return ClipSet(
        skel, 30.0, np.tile([0, 0, 0, 1.0], (2 * n, J, 1)).astype(np.float32), np.zeros((2 * n, 3), np.float32),
        np.arange(0, 2 * n + 1, 2), tuple(names), tuple(m[0] for m in meta), tuple(m[1] for m in meta),
        np.array([m[2] for m in meta]),
    )  # fmt: skip


def test_split_by_take_and_content():
    names = [f"dataset-2_{c}_normal_{t:03d}.bvh" for c in ("walk", "run") for t in (1, 9, 10, 20, 21)]
    cs = _fake(names)
    tr, va = cs.split("train"), cs.split("val")
    assert all(t % 10 for t in tr.takes) and all(t % 10 == 0 for t in va.takes)
    assert len(tr) + len(va) == len(cs)
    tr2, held = cs.split("train", ["run"]), cs.split("heldout", ["run"])
    assert set(tr2.contents) == {"walk"} and set(held.contents) == {"run"} and len(held) == 5
    with pytest.raises(InputError, match="walk"):
        cs.split("train", ["jump"])
    with pytest.raises(InputError, match="valid splits"):
        cs.split("test")


def test_normalized_positions_face_forward(clips):
    _, cs = clips
    pos, yaw, size = normalized_positions(cs.skeleton, cs.positions(0))
    hips = cs.skeleton.index("Hips") - 1
    assert np.abs(pos[:, hips]).max() < 1e-6
    i = {n: cs.skeleton.index(n) - 1 for n in ("UpperLeg_L", "UpperLeg_R", "UpperArm_L", "UpperArm_R")}
    lat = pos[:, i["UpperLeg_L"]] - pos[:, i["UpperLeg_R"]] + pos[:, i["UpperArm_L"]] - pos[:, i["UpperArm_R"]]
    assert np.all(lat[:, 0] > 0) and np.abs(lat[:, 2]).max() < 1e-5
    assert 1.5 < size < 2.5 and yaw.shape == (len(pos),)
