"""Mean-pose twists: the joints of a pack's ``twist_prior`` turn about their own bones to the twist of the mean
pose swung onto the observed bone (what the analytic solver with the mean-pose prior gives); no joint moves."""

from __future__ import annotations

import json

import numpy as np
import pytest
import steppack

from rtik.errors import InputError, ModelError
from rtik.geometry import rotations as rot
from rtik.models import modelpack
from rtik.solve import refine as rf
from rtik.solve.solver import Solver, SolverOptions, solve_sequence


def _random_rotations(rng, shape):
    return rot.quat_to_matrix(rot.quat_normalize(rng.normal(size=(*shape, 4))))


def test_twist_tables_put_parents_first_and_skip_joints_without_a_bone():
    skel = steppack.chain()
    prior = rot.quat_normalize(np.random.default_rng(0).normal(size=(4, 4)))
    idx, Lp = rf.twist_tables(skel, ("lower", "end", "root", "upper", "nope"), prior)
    assert idx.tolist() == [[1, 0, 2], [2, 1, 3]]  # end: no child bone; root: no parent; nope: not in the rig
    np.testing.assert_allclose(Lp, rot.quat_to_matrix(prior[[1, 2]]), atol=1e-12)
    idx, Lp = rf.twist_tables(skel, (), prior)
    assert idx.shape == (0, 3) and Lp.shape == (0, 3, 3)


def test_the_mean_pose_twist_moves_no_joint_and_is_the_prior_swung_onto_the_bone():
    skel = steppack.chain()
    t = rf.Tables.build(skel)
    rng = np.random.default_rng(2)
    B = 32
    G = _random_rotations(rng, (B, 4))
    off = np.broadcast_to(skel.offsets, (B, 4, 3)).copy()
    prior = rot.quat_normalize(rng.normal(size=(4, 4)))
    idx, Lp = rf.twist_tables(skel, ("upper", "lower"), prior)
    before = rf.positions(G, off, np.zeros((B, 3)), t)
    out = G.copy()
    rf.prior_twists(out, off, idx, Lp, 1.0)
    np.testing.assert_allclose(rf.positions(out, off, np.zeros((B, 3)), t), before, atol=1e-12)
    np.testing.assert_array_equal(out[:, 0], G[:, 0])  # the root is not listed
    for j, p, c in idx:  # parents first: each hangs from its parent's new rotation
        d = (out[:, j] @ off[:, c, :, None])[..., 0]
        M = out[:, p] @ rot.quat_to_matrix(prior[j])
        e = (M @ off[:, c, :, None])[..., 0]
        want = rf.swing(e / np.linalg.norm(e, axis=-1, keepdims=True), d / np.linalg.norm(d, axis=-1, keepdims=True))
        np.testing.assert_allclose(out[:, j], want @ M, atol=1e-9)
    # weight 0 leaves the network's rotations; 0.5 turns half way about the bone
    none = G.copy()
    rf.prior_twists(none, off, idx[:1], Lp[:1], 0.0)
    np.testing.assert_allclose(none, G, atol=1e-15)
    half = G.copy()
    rf.prior_twists(half, off, idx[:1], Lp[:1], 0.5)
    a_full = rot.quat_to_axis_angle(rot.matrix_to_quat(out[:, 1] @ np.swapaxes(G[:, 1], -1, -2)))
    a_half = rot.quat_to_axis_angle(rot.matrix_to_quat(half[:, 1] @ np.swapaxes(G[:, 1], -1, -2)))
    np.testing.assert_allclose(a_half, 0.5 * a_full, atol=1e-9)


def test_the_solver_keeps_positions_and_takes_the_mean_pose_twist(pack, pack_motion):
    twisted = steppack.twisted(pack)
    X = pack_motion.positions()[:60, 1:] / 100.0  # metres, the pack's input joints
    res = {}
    for name, w in (("network", 0.0), ("prior", 1.0)):
        sv = Solver(twisted, options=SolverOptions(kernels="numpy", hinge=None, smooth=None, twist_prior=w))
        assert len(sv.twist_idx) == (13 if w else 0)
        res[name] = solve_sequence(sv, X, pack_motion.fps)
    np.testing.assert_allclose(res["prior"]["positions"], res["network"]["positions"], atol=1e-5)
    s = twisted.skeleton
    q = res["prior"]["local_quats"].astype(np.float64)
    for name in ("Neck", "Shoulder_L", "UpperArm_R"):  # its local rotation: the mean pose swung onto the bone
        j = s.index(name)
        b = s.offsets[s.bone_children(j)[0]]
        b = b / np.linalg.norm(b)
        Lp = rot.quat_to_matrix(twisted.prior_local[j])
        L = rot.quat_to_matrix(q[:, j])
        want = rf.swing(np.broadcast_to(Lp @ b, (len(L), 3)), L @ b) @ Lp
        np.testing.assert_allclose(L, want, atol=1e-4)
        L0 = rot.quat_to_matrix(res["network"]["local_quats"][:, j].astype(np.float64))
        assert np.abs(L0 - want).max() > 1e-2  # the network's twist was another


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), "x"])
def test_twist_prior_option_is_checked(pack, bad):
    with pytest.raises(InputError, match="twist_prior must be within 0..1"):
        Solver(pack, options=SolverOptions(twist_prior=bad))


def test_twist_prior_is_read_and_checked(pack, tmp_path):
    import shutil

    copy = tmp_path / "pack"
    shutil.copytree(pack.path, copy)
    assert pack.twist_prior == ()  # absent: the network's twists
    meta = json.loads((copy / "model.json").read_text())
    meta["twist_prior"] = ["Neck", "UpperLeg_L"]
    (copy / "model.json").write_text(json.dumps(meta))
    assert modelpack.load(copy).twist_prior == ("Neck", "UpperLeg_L")
    for bad, msg in (
        (["Knee"], "joint 'Knee' does not exist"),
        (["Hand_L"], "needs a parent and a child bone"),
        (["Neck", "Neck"], "lists a joint twice"),
        ("Neck", "must be a list of joint names"),
    ):
        meta["twist_prior"] = bad
        (copy / "model.json").write_text(json.dumps(meta))
        with pytest.raises(ModelError, match=msg):
            modelpack.load(copy)


def test_the_compiled_twist_equals_the_reference_also_where_the_mean_pose_points_away():
    pytest.importorskip("numba")
    from rtik.solve import kernels

    skel = steppack.chain()
    rng = np.random.default_rng(5)
    B = 64
    G = _random_rotations(rng, (B, 4))
    off = np.broadcast_to(skel.offsets, (B, 4, 3)).copy()
    prior = rot.quat_normalize(rng.normal(size=(4, 4)))
    idx, Lp = rf.twist_tables(skel, ("lower",), prior)
    # the first streams: the network's bone exactly opposite the mean pose's (the half-turn branch), twisted
    bone = np.array([0.0, -1.0, 0.0])
    for b in range(4):
        R = G[b, 1] @ Lp[0]
        a = np.cross(R @ bone, rng.normal(size=3))
        G[b, 2] = rf._turn(a / np.linalg.norm(a), np.array(np.pi)) @ R @ rf._turn(bone, np.array(0.3 + 0.2 * b))
        np.testing.assert_allclose(G[b, 2] @ bone, -(R @ bone), atol=1e-12)
    ref = G.copy()
    rf.prior_twists(ref, off, idx, Lp, 0.7)
    out = G.copy()
    M, T, tmp, u, v = np.empty((3, 3)), np.empty((3, 3)), np.empty((3, 3)), np.empty(3), np.empty(3)
    for b in range(B):
        j, p, c = idx[0]
        kernels._prior_twist(out[b], off, b, j, p, c, Lp[0], 0.7, rf.MIN_BONE, M, T, tmp, u, v)
    np.testing.assert_allclose(out, ref, atol=1e-9)
