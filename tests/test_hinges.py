"""Hinge limbs: axes measured on clips, their tables, and the solver step that turns a bent limb's upper bone
and lower joint about the bones themselves (no joint moves)."""

from __future__ import annotations

import numpy as np
import pytest
import steppack

from rtik.errors import InputError
from rtik.geometry import rotations as rot
from rtik.solve import refine as rf
from rtik.solve.solver import Solver, SolverOptions, solve_sequence
from train.hinges import hinge_axes


@pytest.fixture(scope="module")
def hinged(pack, pack_motion):
    return steppack.hinged(pack)


def test_hinge_axes_are_the_mean_axis_of_bent_frames_normal_to_the_bone():
    skel = steppack.chain()
    rng = np.random.default_rng(0)
    axis = np.array([1.0, 0.3, 0.0])  # not normal to the bone (-Y): made so
    angles = rng.uniform(0.0, 2.0, 400)  # radians, some below MIN_BEND
    wobble = rng.normal(0, 0.02, (400, 3))
    q = np.tile(rot.quat_identity(), (400, 4, 1))
    k = axis / np.linalg.norm(axis) + wobble
    q[:, 2] = rot.axis_angle_to_quat(k / np.linalg.norm(k, axis=-1, keepdims=True) * angles[:, None])
    q[:, 2] = np.where(rng.random((400, 1)) < 0.5, -q[:, 2], q[:, 2])  # either sign of a quaternion
    axes, report = hinge_axes(q, skel, joints=("lower", "upper", "nope"))
    assert set(axes) == {"lower"}  # the upper joint never turns; unknown joints are skipped
    np.testing.assert_allclose(axes["lower"], [1, 0, 0], atol=0.01)
    assert report["lower"]["frames"] == int((angles > np.radians(30)).sum()) and report["lower"]["spread_deg"] < 5


def test_hinge_tables_keep_straight_limbs_with_a_child_bone():
    skel = steppack.chain()
    idx, ax = rf.hinge_tables(skel, {"lower": np.array([1.0, 0.5, 0.0]), "end": np.array([1.0, 0, 0])})
    assert idx.tolist() == [[1, 2, 3]]  # "end" has no child bone
    np.testing.assert_allclose(ax, [[1, 0, 0]])  # normal to the bone, unit
    bent = skel.with_offsets(skel.offsets + np.array([[0, 0, 0], [0, 0, 0], [0, 0, 0], [0.1, 0, 0]]))
    assert len(rf.hinge_tables(bent, {"lower": np.array([1.0, 0, 0])})[0]) == 0  # rest pose bent 45°
    assert len(rf.hinge_tables(skel, {"upper": [1, 0, 0], "lower": [1, 0, 0]})[0]) == 1  # no shared joints


def test_a_bent_limb_becomes_a_pure_hinge_and_nothing_moves():
    skel = steppack.chain()
    t = rf.Tables.build(skel)
    idx, ax = rf.hinge_tables(skel, {"lower": np.array([1.0, 0, 0])})
    rng = np.random.default_rng(1)
    B = 64
    G = np.zeros((B, 4, 3, 3))
    for j in range(4):
        G[:, j] = rot.quat_to_matrix(rot.quat_normalize(rng.normal(size=(B, 4))))
    off = np.broadcast_to(skel.offsets, (B, 4, 3)).copy()
    before = rf.positions(G, off, np.zeros((B, 3)), t)
    out = G.copy()
    ramp = np.radians([10.0, 25.0])
    rf.hinges(out, off, idx, ax, ramp)
    np.testing.assert_allclose(rf.positions(out, off, np.zeros((B, 3)), t), before, atol=1e-12)
    a = (G[:, 1] @ off[:, 2, :, None])[..., 0]
    b = (G[:, 2] @ off[:, 3, :, None])[..., 0]
    theta = np.degrees(
        np.arccos(np.clip((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1), -1, 1))
    )
    L = np.swapaxes(out[:, 1], -1, -2) @ out[:, 2]  # the lower joint's local rotation
    aa = rot.quat_to_axis_angle(rot.matrix_to_quat(L))
    full = theta > 25
    assert full.sum() > 20
    # a pure turn about +x (flexion) by the bend
    np.testing.assert_allclose(
        aa[full] / np.linalg.norm(aa[full], axis=-1, keepdims=True), [[1, 0, 0]] * full.sum(), atol=1e-9
    )
    np.testing.assert_allclose(np.degrees(np.linalg.norm(aa[full], axis=-1)), theta[full], atol=1e-7)
    straight = theta < 10
    np.testing.assert_array_equal(out[straight], G[straight])  # a nearly straight limb is left as it was


def test_the_solver_keeps_positions_and_turns_bent_limbs(hinged, pack_motion):
    X = pack_motion.positions()[:60, 1:] / 100.0  # metres, the pack's input joints
    plain = Solver(hinged, options=SolverOptions(hinge=None, kernels="numpy"))
    assert len(plain.hinge_idx) == 0
    res = {}
    for name, sv in (("plain", plain), ("hinge", Solver(hinged, options=SolverOptions(kernels="numpy")))):
        res[name] = solve_sequence(sv, X, pack_motion.fps)
    assert len(Solver(hinged).hinge_idx) == 4
    np.testing.assert_allclose(res["hinge"]["positions"], res["plain"]["positions"], atol=1e-5)
    s = hinged.skeleton
    elbow = s.index("LowerArm_R")
    P = res["plain"]["positions"]
    u = P[:, elbow] - P[:, s.index("UpperArm_R")]
    v = P[:, s.index("Hand_R")] - P[:, elbow]
    bend = np.degrees(
        np.arccos(np.clip((u * v).sum(-1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1), -1, 1))
    )
    assert (bend > 25).sum() > 5
    # bent: the elbow's local rotation is a turn about its hinge axis, which the network's was not
    q = res["hinge"]["local_quats"][bend > 25, elbow].astype(np.float64)
    aa = rot.quat_to_axis_angle(q)
    np.testing.assert_allclose(
        aa / np.linalg.norm(aa, axis=-1, keepdims=True) @ hinged.hinges["LowerArm_R"], 1.0, atol=1e-4
    )
    q0 = res["plain"]["local_quats"][bend > 25, elbow].astype(np.float64)
    aa0 = rot.quat_to_axis_angle(q0)
    assert np.min(aa0 / np.linalg.norm(aa0, axis=-1, keepdims=True) @ hinged.hinges["LowerArm_R"]) < 0.99


@pytest.mark.parametrize("bad", [(25.0, 10.0), (0.0, 20.0), (10.0,), "x", (10.0, 200.0)])
def test_hinge_option_is_checked(pack, bad):
    with pytest.raises(InputError, match="hinge must be"):
        Solver(pack, options=SolverOptions(hinge=bad))
