"""Input joint layouts: named layouts, name matching with aliases, partial pose-estimation layouts."""

from __future__ import annotations

import numpy as np
import pytest

from rtik.errors import InputError
from rtik.formats import layouts

MODEL = (
    "Hips", "Spine", "Chest", "Neck", "Head", "Shoulder_L", "UpperArm_L", "LowerArm_L", "Hand_L", "Shoulder_R",
    "UpperArm_R", "LowerArm_R", "Hand_R", "UpperLeg_L", "LowerLeg_L", "Foot_L", "Toes_L", "UpperLeg_R", "LowerLeg_R",
    "Foot_R", "Toes_R",
)  # fmt: skip
MIXAMO = (
    "mixamorig:Hips", "mixamorig:Spine", "mixamorig:Spine1", "mixamorig:Spine2", "mixamorig:Neck", "mixamorig:Head",
    "mixamorig:LeftShoulder", "mixamorig:LeftArm", "mixamorig:LeftForeArm", "mixamorig:LeftHand",
    "mixamorig:RightShoulder", "mixamorig:RightArm", "mixamorig:RightForeArm", "mixamorig:RightHand",
    "mixamorig:LeftUpLeg", "mixamorig:LeftLeg", "mixamorig:LeftFoot", "mixamorig:LeftToeBase",
    "mixamorig:RightUpLeg", "mixamorig:RightLeg", "mixamorig:RightFoot", "mixamorig:RightToeBase",
)  # fmt: skip


def test_rtik_layout_is_the_identity():
    m = layouts.resolve(layouts.get("rtik", MODEL), MODEL)
    assert m.provided.all() and m.index is not None
    P = np.arange(len(MODEL) * 3, dtype=float).reshape(-1, 3)
    out, mask = m.apply(P, None)
    np.testing.assert_array_equal(out, P)
    assert mask.all()


def test_unknown_layout_lists_valid_ones():
    with pytest.raises(
        InputError, match="unknown layout 'kinect'; valid layouts: rtik, rtik\\+markers, bvh, mediapipe33, coco17"
    ):
        layouts.get("kinect", MODEL)


def test_bvh_layout_needs_names():
    with pytest.raises(InputError, match="give the source's joint names"):
        layouts.get("bvh", MODEL)


def test_mixamo_names_match_every_joint():
    lay = layouts.get("bvh", MODEL, names=MIXAMO)
    assert set(lay.rows) == set(MODEL)
    assert lay.rows["Chest"] == (("mixamorig:Spine2", 1.0),)
    assert lay.rows["UpperArm_L"] == (("mixamorig:LeftArm", 1.0),)
    assert lay.rows["Shoulder_R"] == (("mixamorig:RightShoulder", 1.0),)
    assert lay.rows["LowerLeg_R"] == (("mixamorig:RightLeg", 1.0),)
    m = layouts.resolve(lay, MODEL)
    P = np.random.default_rng(0).normal(size=(len(MIXAMO), 3))
    out, _ = m.apply(P, None)
    np.testing.assert_array_equal(out[MODEL.index("Toes_L")], P[MIXAMO.index("mixamorig:LeftToeBase")])


def test_exact_names_win_over_aliases_and_extra_joints_are_ignored():
    names = ("Hips", "Spine", "Chest", "Spine1", "Extra", *MODEL[3:])
    lay = layouts.from_names(names, MODEL)
    assert lay.rows["Chest"] == (("Chest", 1.0),)
    assert "Extra" not in {s for src in lay.rows.values() for s, _ in src}


def test_cmu_style_names():
    names = ("hip", "abdomen", "chest", "neck", "head", "lCollar", "lShldr", "lForeArm", "lHand", "lThigh", "lShin")
    lay = layouts.from_names(names, MODEL)
    assert lay.rows["UpperArm_L"] == (("lShldr", 1.0),)
    assert lay.rows["LowerLeg_L"] == (("lShin", 1.0),)
    assert "Foot_L" not in lay.rows


def test_mediapipe_maps_what_exists_and_masks_the_rest():
    lay = layouts.get("mediapipe33", MODEL)
    assert len(lay.joints) == 33
    m = layouts.resolve(lay, MODEL)
    missing = {MODEL[i] for i in np.flatnonzero(~m.provided)}
    assert missing == {"Spine", "Chest", "Neck", "Shoulder_L", "Shoulder_R"}
    assert "Hips" in lay.notes and "Head" in lay.notes
    P = np.random.default_rng(1).normal(size=(33, 3))
    out, mask = m.apply(P, None)
    hips = MODEL.index("Hips")
    np.testing.assert_allclose(out[hips], (P[23] + P[24]) / 2)
    np.testing.assert_allclose(out[MODEL.index("LowerArm_R")], P[14])
    assert not mask[MODEL.index("Chest")] and np.all(out[~mask] == 0)
    # a derived joint is missing when one of its sources is
    src_mask = np.ones(33, bool)
    src_mask[24] = False
    _, mask = m.apply(P, src_mask)
    assert not mask[hips] and not mask[MODEL.index("UpperLeg_R")] and mask[MODEL.index("UpperLeg_L")]


def test_coco_has_no_toes():
    m = layouts.resolve(layouts.get("coco17", MODEL), MODEL)
    assert m.num_source_joints == 17
    assert not m.provided[MODEL.index("Toes_L")] and m.provided[MODEL.index("Foot_L")]
    assert any("Hips <- 0.5*left_hip + 0.5*right_hip" in line for line in layouts.get("coco17", MODEL).describe())
