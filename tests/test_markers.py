"""Leaf markers: the table, where BVH rigs and pose layouts provide them, how training places them, and a model
pack that reads them, exported and run through the solver."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

from rtik.formats import bvh, layouts, markers
from rtik.formats.points import read_input
from rtik.formats.rig import BODY_NAMES, Rig, clip_arrays
from rtik.geometry import rotations as rot
from rtik.geometry.kinematics import forward_kinematics

VSPORTS = "snu-vsports_s_003_6_1.bvh"
BANDAI = "dataset-2_wave-left-hand_elderly_020.bvh"


def test_every_marker_rides_a_body_joint_and_sides_mirror():
    assert len(set(markers.NAMES)) == len(markers.MARKERS)
    for m in markers.MARKERS:
        assert m.parent in BODY_NAMES and m.group in ("head", "hand", "foot")
        if m.name.endswith("_L"):
            r = markers.BY_NAME[m.name[:-2] + "_R"]
            np.testing.assert_allclose(r.offset, np.array(m.offset) * [-1, 1, 1])
            assert r.parent == m.parent.replace("_L", "_R")


def test_layouts_give_markers_only_to_a_pack_that_reads_them():
    rows = ("Hips", "Head", "Hand_L") + markers.NAMES
    mp = layouts.get("mediapipe33", rows)
    assert mp.rows["Nose"] == (("nose", 1.0),) and mp.rows["ToeTip_R"] == (("right_foot_index", 1.0),)
    assert mp.rows["Thumb_L"] == (("left_thumb", 1.0),) and "HeadTop" not in mp.rows  # no head top in MediaPipe
    coco = layouts.get("coco17", rows)
    assert {"Nose", "Eye_L", "Ear_R"} <= set(coco.rows) and "Index_L" not in coco.rows
    assert "Nose" not in layouts.get("mediapipe33", ("Hips", "Head")).rows  # a joints-only pack: no markers
    assert layouts.get("rtik", rows).joints == ("Hips", "Head", "Hand_L")  # rtik: the input joints only
    assert layouts.get("rtik+markers", rows).joints == rows  # then every marker, in the pack's order
    names = ("Hips", "LeftHandEnd", "RightHand_End", "Head_End", "LeftHandThumb3", "rtoes_End", "Nose")
    got = {m: src[0][0] for m, src in layouts.from_names(names, markers.NAMES).rows.items()}
    assert got == {"HandTip_L": "LeftHandEnd", "HandTip_R": "RightHand_End", "HeadTop": "Head_End",
                   "Thumb_L": "LeftHandThumb3", "ToeTip_R": "rtoes_End", "Nose": "Nose"}  # fmt: skip


def test_bvh_end_sites_with_a_length_become_rows(mocap):
    path = mocap / "extra" / "sample" / VSPORTS
    clip = read_input(path)
    m = bvh.read(path)
    J = len(m.skeleton)
    ends = clip.joints[J:]
    assert {"Head_End", "LeftHand_End", "RightToe_End"} <= set(ends) and all(e.endswith("_End") for e in ends)
    P = m.positions()
    for e in ("Head_End", "LeftHand_End"):
        j = m.skeleton.index(e[:-4])
        d = np.linalg.norm(clip.positions[:, clip.joints.index(e)] - P[:, j], axis=-1)
        np.testing.assert_allclose(d, np.linalg.norm(m.skeleton.end_sites[j]), rtol=1e-6)
    np.testing.assert_allclose(clip.positions[:, :J], P, atol=1e-6)
    flat = read_input(mocap / "sample" / BANDAI)  # Bandai's end sites have no length: no rows
    assert len(flat.joints) == len(bvh.read(mocap / "sample" / BANDAI).skeleton)


def test_rig_tip_offsets_put_the_tips_back(mocap):
    m = bvh.read(mocap / "extra" / "sample" / VSPORTS)
    skel, q, r = clip_arrays(m)
    rig = Rig.from_skeleton(skel)
    tips = rig.tip_offsets(q, r)
    assert {"HeadTop", "HandTip_L", "HandTip_R", "ToeTip_L", "ToeTip_R"} <= set(tips)
    G, pos = rig.body_globals(q, r)
    clip = read_input(mocap / "extra" / "sample" / VSPORTS)
    A = rig._A
    for mk, src in (("HeadTop", "Head_End"), ("HandTip_L", "LeftHand_End"), ("ToeTip_R", "RightToe_End")):
        j = BODY_NAMES.index(markers.BY_NAME[mk].parent)
        back = pos[:, j] + np.einsum("fij,j->fi", G[:, j], tips[mk])
        truth = clip.positions[:, clip.joints.index(src)] @ A.T
        err = np.linalg.norm(back - truth, axis=-1)
        assert np.median(err) < 0.01 * np.linalg.norm(tips[mk]), mk  # rigid on its joint: within 1 % of its length


@pytest.fixture(scope="module")
def example_maker(mocap):
    pytest.importorskip("torch")
    from train.batches import AugmentConfig, ExampleMaker
    from train.data import load_clips

    clips = load_clips(mocap / "sample", cache=False, progress=False)
    none = AugmentConfig(mirror=0, mix_upper=0, perturb=0, rates=(1,), rate_p=(1.0,), speed=(1.0, 1.0), warp=0.0,
                         bones=0, noise=0, occlude=0, outliers=0, mid_start=0)  # fmt: skip
    return clips, none, ExampleMaker


def test_training_places_markers_on_their_joints(example_maker):
    from dataclasses import replace

    clips, none, ExampleMaker = example_maker
    cfg = replace(none, markers_none=0.0, markers_estimator=0.0, marker_deg=0.0, marker_scale=(1.0, 1.0))
    maker = ExampleMaker(clips, cfg, markers=markers.NAMES)
    ex = maker.make(0, np.random.default_rng(0))
    Ji, K = len(maker.names), len(markers.NAMES)
    assert ex["pos"].shape[1] == ex["mask"].shape[1] == ex["pos_gt"].shape[1] == Ji + K
    skel = clips.skeleton_of(0)
    leg = sum(np.linalg.norm(skel.offsets[skel.index(n)]) for n in ("LowerLeg_L", "Foot_L"))
    # pos_gt: heading frame, body sizes; a marker sits at its joint + G_joint (offset scaled to the body's legs)
    size = np.linalg.norm(ex["pos_gt"][:, maker.names.index("Head")] - ex["pos_gt"][:, maker.names.index("Hips")],
                          axis=-1)  # fmt: skip
    for name in ("Nose", "HandTip_L", "ToeTip_R"):
        k, par = Ji + markers.NAMES.index(name), maker.names.index(markers.BY_NAME[name].parent)
        d = ex["pos_gt"][:, k] - ex["pos_gt"][:, par]
        want = np.einsum("fij,j->fi", ex["G"][:, par], markers.BY_NAME[name].offset) * leg / markers.REFERENCE_LEG
        ratio = np.linalg.norm(want, axis=-1) / np.linalg.norm(d, axis=-1)
        # same direction, one scale factor (the body size) on every frame
        cos = np.einsum("fi,fi->f", d, want) / np.linalg.norm(d, axis=-1) / np.linalg.norm(want, axis=-1)
        assert cos.min() > 0.9999 and np.ptp(ratio) < 1e-3 * ratio.mean(), name
    assert size.std() < 0.05 * size.mean()


def test_estimator_examples_drop_the_joints_an_estimator_lacks(example_maker):
    from dataclasses import replace

    clips, none, ExampleMaker = example_maker
    cfg = replace(none, markers_none=0.0, markers_estimator=1.0, estimator_joints=1.0)
    maker = ExampleMaker(clips, cfg, markers=markers.NAMES)
    ex = maker.make(1, np.random.default_rng(1))
    Ji = len(maker.names)
    mask = ex["mask"].astype(bool)
    for j in ("Spine", "Chest", "Neck", "Shoulder_L", "Shoulder_R"):
        assert not mask[:, maker.names.index(j)].any(), j
    have = {markers.NAMES[k] for k in np.flatnonzero(mask[:, Ji:].all(0))}
    assert have == {n for n in markers.NAMES if n.split("_")[0] in
                    ("Nose", "Eye", "Ear", "Index", "Pinky", "Thumb", "Heel", "ToeTip")}  # fmt: skip


def test_estimator_joints_are_what_the_mediapipe33_layout_makes_of_landmarks():
    """markers.as_estimator_joints (training and rtik eval --markers estimator) against the real layout: the
    mediapipe33 layout fed the same landmarks gives the same hips, head and toes."""
    rng = np.random.default_rng(4)
    names = list(BODY_NAMES)
    rows = {m: len(names) + k for k, m in enumerate(markers.NAMES)}
    P = rng.normal(size=(3, len(names) + len(markers.NAMES), 3))
    out = markers.as_estimator_joints(P, names, rows)
    lay = layouts.get("mediapipe33", tuple(names) + markers.NAMES)
    lm = np.full((3, len(lay.joints), 3), np.nan)  # the landmarks: thighs from the joints, the rest markers
    for row, src in (("UpperLeg_L", names.index("UpperLeg_L")), ("UpperLeg_R", names.index("UpperLeg_R")),
                     *((m, r) for m, r in rows.items() if m in lay.rows)):  # fmt: skip
        lm[:, lay.joints.index(lay.rows[row][0][0])] = P[:, src]
    for joint in ("Hips", "Head", "Toes_L", "Toes_R"):
        want = sum(w * lm[:, lay.joints.index(n)] for n, w in lay.rows[joint])
        np.testing.assert_allclose(out[:, names.index(joint)], want, atol=1e-12)
    untouched = [names.index(j) for j in ("Chest", "Hand_L", "Foot_R")]
    np.testing.assert_array_equal(out[:, untouched], P[:, untouched])
    assert not np.shares_memory(out, P)


@pytest.fixture(scope="module")
def marker_pack(mocap, tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    from train.export import export_pack, pack_meta
    from train.model import IKModel, ModelConfig

    m = bvh.read(mocap / "extra" / "sample" / VSPORTS)
    skel, _, _ = clip_arrays(m)
    body = Rig.from_skeleton(skel).body.scaled(0.01)
    torch.manual_seed(0)
    model = IKModel(body, ModelConfig(hidden=16, layers=1, den_hidden=16, markers=markers.NAMES)).eval()
    with torch.no_grad():  # non-trivial heads: the markers must reach the output
        for lin in (model.ik_head, model.den_head):
            lin.weight.normal_(0.0, 0.2)
    logging.disable(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pack = export_pack(model, tmp_path_factory.mktemp("markers"), pack_meta(model, "markers"))
    logging.disable(logging.NOTSET)
    return model, pack


def test_pack_reads_markers_after_its_joints(marker_pack):
    model, pack = marker_pack
    assert pack.markers == markers.NAMES
    assert pack.input_rows == pack.input_joints + markers.NAMES
    assert pack.step_shapes()["pos"] == ("B", len(pack.input_joints) + len(markers.NAMES), 3)


def test_exported_step_matches_the_model_with_markers(marker_pack):
    import torch

    from rtik.models.backends.base import open_backend

    model, pack = marker_pack
    rng = np.random.default_rng(0)
    n = model.num_rows
    pos = rng.normal(0, 0.2, (3, n, 3)).astype(np.float32)
    mask = (rng.random((3, n)) > 0.3).astype(np.float32)
    pos *= mask[..., None]
    state = rng.normal(0, 0.1, (3, pack.state_size)).astype(np.float32)
    with torch.no_grad():
        want = [t.numpy() for t in model.step(*(torch.from_numpy(a) for a in (pos, mask, state)))]
    got = open_backend(pack, "onnx").step(pos, mask, state)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-4)


def _frames(pack, n=12):
    """Joints and markers of the pack's body in a still T-pose, metres, in ``pack.input_rows`` order."""
    skel = pack.skeleton
    q = rot.quat_identity((n, len(skel)))
    P, G = forward_kinematics(skel, q, np.tile([0.0, 0.9, 0.0], (n, 1)))
    par = skel.indices([markers.BY_NAME[m].parent for m in pack.markers])
    M = P[:, par] + rot.quat_apply(G[:, par], markers.offsets(pack.markers))
    return np.concatenate([P[:, skel.indices(pack.input_joints)], M], axis=1)


def test_solver_feeds_markers_and_masks_absent_ones(marker_pack):
    from rtik.solve.solver import Solver

    _, pack = marker_pack
    sv = Solver(pack)
    X = _frames(pack)
    Ji = len(pack.input_joints)
    sv.open_stream("joints", layout="rtik")
    sv.open_stream("tips", layout="rtik+markers")
    sv.open_stream("masked", layout=list(pack.input_rows))
    sv.open_stream("turned", layout=list(pack.input_rows))
    assert sv._streams["joints"].markers is None and sv._streams["tips"].markers.provided.all()
    turned = X.copy()
    head = Ji + np.array([pack.markers.index(m) for m in ("HeadTop", "Nose", "Eye_L", "Eye_R", "Ear_L", "Ear_R")])
    hp = X[:, pack.input_joints.index("Head")][:, None]
    turned[:, head] = hp + (X[:, head] - hp) @ rot.quat_to_matrix(rot.axis_angle_to_quat([0, 1.2, 0])).T
    miss = np.ones(X.shape[1], bool)
    miss[Ji:] = False
    out = {}
    for t in range(len(X)):
        sv.push("joints", X[t, :Ji], t / 30)
        sv.push("tips", X[t], t / 30)
        sv.push("masked", np.where(miss[:, None], X[t], np.nan), t / 30, mask=miss)
        sv.push("turned", turned[t], t / 30)
        out = sv.tick()
    q = {k: v.local_quats for k, v in out.items()}
    np.testing.assert_allclose(q["masked"], q["joints"], atol=1e-5)  # masked markers = no markers
    assert np.abs(q["tips"] - q["joints"]).max() > 1e-3  # markers reach the network
    assert np.abs(q["turned"] - q["tips"]).max() > 1e-3  # and where they are matters
    snap = sv.export_stream("tips")
    assert snap["arrays"]["p_mpos"].shape == (len(pack.markers), 3)  # a stream's markers travel with its state


def test_mediapipe_landmarks_feed_the_estimator_markers(marker_pack):
    from rtik.solve.solver import Solver

    _, pack = marker_pack
    sv = Solver(pack)
    info = sv.open_stream("cam", layout="mediapipe33")
    have = {pack.markers[k] for k in np.flatnonzero(info.markers.provided)}
    assert have == {"Nose", "Eye_L", "Eye_R", "Ear_L", "Ear_R", "Index_L", "Index_R", "Pinky_L", "Pinky_R",
                    "Thumb_L", "Thumb_R", "Heel_L", "Heel_R", "ToeTip_L", "ToeTip_R"}  # fmt: skip


def test_warm_start_from_a_model_without_markers_changes_nothing_at_first(mocap):
    torch = pytest.importorskip("torch")
    from train.model import IKModel, ModelConfig

    m = bvh.read(mocap / "extra" / "sample" / VSPORTS)
    body = Rig.from_skeleton(clip_arrays(m)[0]).body.scaled(0.01)
    torch.manual_seed(0)
    old = IKModel(body, ModelConfig(hidden=16, layers=2, den_hidden=8)).eval()
    with torch.no_grad():
        for p in old.parameters():
            p.normal_(0.0, 0.3)
    new = IKModel(body, ModelConfig(hidden=16, layers=2, den_hidden=8, markers=markers.NAMES)).eval()
    new.load_without_markers(old.state_dict())
    Ji, K = old.num_inputs, len(markers.NAMES)
    g = torch.Generator().manual_seed(1)
    pos = torch.randn(2, 5, Ji + K, 3, generator=g) * 0.3
    mask = (torch.rand(2, 5, Ji + K, generator=g) > 0.2).float()
    with torch.no_grad():
        a = old(pos[:, :, :Ji], mask[:, :, :Ji])
        b = new(pos, mask)
    for k in ("G", "L", "state"):
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a["pos_clean"], b["pos_clean"][:, :, :Ji], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="shape"):  # other sizes are refused, not half loaded
        IKModel(body, ModelConfig(hidden=8, layers=2, den_hidden=8, markers=markers.NAMES)).load_without_markers(
            old.state_dict()
        )
