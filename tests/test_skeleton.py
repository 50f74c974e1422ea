"""rtik.geometry.skeleton: joint groups, mirror map, lookups, validation and (de)serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rtik.errors import SkeletonError
from rtik.geometry.skeleton import CHANNEL_NAMES, DETERMINED, GROUPS, LEAF, LIMB, Skeleton

SIX = ("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")
BANDAI_GROUPS = {
    DETERMINED: {"Hips", "Chest"},
    LIMB: {"Spine", "Neck", "Shoulder_L", "Shoulder_R", "UpperArm_L", "UpperArm_R", "LowerArm_L", "LowerArm_R",
           "UpperLeg_L", "UpperLeg_R", "LowerLeg_L", "LowerLeg_R", "Foot_L", "Foot_R"},
    LEAF: {"Head", "Hand_L", "Hand_R", "Toes_L", "Toes_R"},
}  # fmt: skip


def tiny(**kw) -> Skeleton:
    """root -> a -> b (a chain along X) and root -> c (along Y)."""
    args = dict(
        names=("root", "a", "b", "c"),
        parents=[-1, 0, 1, 0],
        offsets=[[0, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0]],
        channels=(SIX[:3] + SIX[3:], SIX[3:], SIX[3:], ("Xrotation",)),
        end_sites=(None, None, [0.5, 0, 0], None),
    )
    args.update(kw)
    return Skeleton(**args)


# ---------------------------------------------------------------------------------------------- Bandai data
def test_bandai_groups(bandai_skeleton):
    s = bandai_skeleton
    assert len(s) == s.num_joints == 22
    for group, names in BANDAI_GROUPS.items():
        got = {s.names[j] for j in s.group_indices(group, exclude=[s.dummy_root()])}
        assert got == names, group
    assert s.dummy_root() == s.index("joint_Root") == 0
    assert s.motion_root() == s.index("Hips")
    assert s.groups[s.index("Hips")] == DETERMINED


def test_bandai_channels_and_tree(bandai_skeleton):
    s = bandai_skeleton
    assert all(c == SIX for c in s.channels)
    assert s.num_channels == 22 * 6
    assert {s.rotation_order(j) for j in range(len(s))} == {"ZXY"}
    assert all(s.has_position_channels(j) for j in range(len(s)))
    assert s.parents[s.index("Toes_L")] == s.index("Foot_L")
    assert sorted(s.names[c] for c in s.children(s.index("Chest"))) == ["Neck", "Shoulder_L", "Shoulder_R"]
    # the motion root is no bone of the dummy root
    assert s.bone_children(0) == []
    lines = s.tree_lines()
    assert lines[0] == "joint_Root  [dummy root]" and lines[1] == "  Hips  [determined]"
    assert len(lines) == 22 and "              Hand_L  [leaf]" in lines


def test_bandai_mirror_map(bandai_skeleton):
    s = bandai_skeleton
    m = s.mirror_map()
    np.testing.assert_array_equal(m[m], np.arange(len(s)))  # an involution
    for name in ("Hand_L", "UpperLeg_R", "Shoulder_L", "Toes_R"):
        other = name[:-1] + ("R" if name.endswith("L") else "L")
        assert s.names[m[s.index(name)]] == other
    for name in ("joint_Root", "Hips", "Spine", "Chest", "Neck", "Head"):
        assert m[s.index(name)] == s.index(name)
    # mirrored offsets: same lengths left and right
    np.testing.assert_allclose(s.bone_lengths()[m], s.bone_lengths(), rtol=1e-4)


# ------------------------------------------------------------------------------------------------ synthetic
def test_groups_on_a_synthetic_tree():
    s = tiny()
    assert s.groups == (DETERMINED, LIMB, LIMB, LEAF)  # b has a non-zero End Site: one bone
    assert s.dummy_root() is None and s.motion_root() == 0
    collinear = tiny(offsets=[[0, 0, 0], [1, 0, 0], [1, 0, 0], [2, 0, 0]])
    assert collinear.group(0) == LIMB  # two child bones along one line do not fix the twist
    no_end = tiny(end_sites=(None, None, [0, 0, 0], None))
    assert no_end.group(2) == LEAF  # a zero End Site is no bone
    assert list(tiny().group_indices(LIMB)) == [1, 2]
    assert list(tiny().group_indices(LIMB, exclude=[1])) == [2]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (("Root", "LeftArm", "RightArm"), [0, 2, 1]),
        (("Root", "arm.L", "arm.R"), [0, 2, 1]),
        (("Root", "L_arm", "R_arm"), [0, 2, 1]),
        (("Root", "l_arm", "r_arm"), [0, 2, 1]),
        (("Root", "Hand_L", "Lamp"), [0, 1, 2]),  # no counterpart: itself
    ],
)
def test_mirror_conventions(names, expected):
    s = Skeleton(names, [-1, 0, 0], [[0, 0, 0], [1, 0, 0], [-1, 0, 0]])
    assert s.mirror_map().tolist() == expected


def test_index_errors_list_valid_names():
    s = tiny()
    assert s.index("b") == 2
    assert s.indices(["c", "root"]).tolist() == [3, 0]
    with pytest.raises(SkeletonError, match=r"joint 'nope' does not exist\. Available names: root, a, b, c"):
        s.index("nope")
    with pytest.raises(SkeletonError, match="valid groups: determined, limb, leaf"):
        s.group_indices("arm")
    assert GROUPS == (DETERMINED, LIMB, LEAF)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(names=()), "at least one joint"),
        (dict(names=("root", "a", "a", "c")), "duplicate joint names: a"),
        (dict(names=("root", "a", "b c", "c")), "without spaces"),
        (dict(parents=[-1, 0, 1]), r"parents has shape \(3,\), expected \(4,\)"),
        (dict(parents=[-1, 0, 3, 0]), "parents first"),
        (dict(parents=[0, 0, 1, 0]), "parents first"),
        (dict(offsets=[[0, 0, 0]] * 3), r"offsets has shape \(3, 3\), expected \(4, 3\)"),
        (dict(offsets=[[0, 0, 0], [np.nan, 0, 0], [1, 0, 0], [0, 1, 0]]), "offset of joint 'a' is not finite"),
        (dict(channels=(SIX,)), "one entry per joint"),
        (dict(channels=(SIX, ("Xrot",), (), ())), "joint 'a': unknown channel 'Xrot'; valid channels: Xposition"),
        (dict(channels=(SIX, ("Xrotation", "Xrotation"), (), ())), "repeated channel"),
        (dict(end_sites=(None, None, [1, 2], None)), "End Site of joint 'b' must be 3 finite numbers"),
    ],
)
def test_validation_errors(change, message):
    with pytest.raises(SkeletonError, match=message):
        tiny(**change)


def test_arrays_are_read_only_and_normalised():
    s = tiny()
    assert s.parents.dtype == np.int64 and s.offsets.dtype == np.float64
    with pytest.raises(ValueError):
        s.offsets[0, 0] = 1.0
    assert s.channels[3] == ("Xrotation",) and s.rotation_order(3) == "X" and not s.has_position_channels(3)
    assert s.rotation_order(0) == "ZXY" and set(CHANNEL_NAMES) >= set(SIX)


def test_dict_round_trip_through_json(bandai_skeleton):
    for s in (tiny(), bandai_skeleton):
        d = json.loads(json.dumps(s.to_dict()))
        r = Skeleton.from_dict(d)
        assert r.names == s.names and r.channels == s.channels
        np.testing.assert_array_equal(r.parents, s.parents)
        np.testing.assert_array_equal(r.offsets, s.offsets)
        for a, b in zip(r.end_sites, s.end_sites, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_array_equal(a, b)
        assert r.groups == s.groups
    minimal = Skeleton.from_dict({"names": ["r"], "parents": [-1], "offsets": [[0, 0, 0]]})
    assert minimal.channels == ((),) and minimal.end_sites == (None,)


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ([1, 2], "must be a dict"),
        ({"names": ["r"]}, "lacks parents, offsets"),
        ({"names": ["r"], "parents": [-1], "offsets": "abc"}, "invalid skeleton description|offsets"),
        ({"names": ["r"], "parents": [-1], "offsets": [[0, 0, 0]], "channels": [["Qrotation"]]}, "unknown channel"),
    ],
)
def test_from_dict_errors(d, message):
    with pytest.raises(SkeletonError, match=message):
        Skeleton.from_dict(d)


def test_scaled_and_with_offsets():
    s = tiny()
    t = s.scaled(0.01)
    np.testing.assert_allclose(t.offsets, s.offsets * 0.01)
    np.testing.assert_allclose(t.end_sites[2], [0.005, 0, 0])
    np.testing.assert_allclose(t.bone_lengths(), [0, 0.01, 0.01, 0.01])
    assert t.names == s.names and t.channels == s.channels
    u = s.with_offsets(s.offsets * 2)
    np.testing.assert_allclose(u.end_sites[2], s.end_sites[2])  # End Sites kept unless scaled
