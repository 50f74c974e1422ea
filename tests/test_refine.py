"""Refinement math: swings, branch-free quaternions, vectorised FK, and exact correction on clean targets."""

from __future__ import annotations

import numpy as np
import pytest

from rtik.geometry import kinematics
from rtik.geometry import rotations as rot
from rtik.geometry.skeleton import Skeleton
from rtik.solve import refine as rf


@pytest.fixture(scope="module")
def skel():
    """A small tree: root -> hips (motion root) -> {spine -> head, leg_l, leg_r}."""
    offsets = [[0, 0, 0], [0, 1, 0], [0, 0.3, 0], [0, 0.3, 0.02], [0.1, -0.1, 0], [-0.1, -0.1, 0]]
    ch = [("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")] * 6
    return Skeleton(["root", "hips", "spine", "head", "leg_l", "leg_r"], [-1, 0, 1, 2, 1, 1], offsets, ch)


def test_matrix_to_quat_every_angle():
    rng = np.random.default_rng(0)
    q = rot.quat_normalize(rng.normal(size=(5000, 4)))
    q = np.concatenate([q, [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]]])
    got = rf.matrix_to_quat(rot.quat_to_matrix(q))
    np.testing.assert_allclose(rot.quat_geodesic(got, q), 0, atol=1e-7)
    assert (got[:, 3] >= 0).all()


def test_swing_turns_u_onto_v_minimally():
    rng = np.random.default_rng(1)
    u = rf._unit(rng.normal(size=(100, 3)))
    v = rf._unit(rng.normal(size=(100, 3)))
    v[0] = -u[0]  # antiparallel
    v[1] = u[1]  # identical
    R = rf.swing(u, v)
    np.testing.assert_allclose((R @ u[..., None])[..., 0], v, atol=1e-9)
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-9)
    # minimal: the rotation angle equals the angle between u and v
    ang = rot.quat_angle(rf.matrix_to_quat(R))
    np.testing.assert_allclose(ang[2:], np.arccos(np.clip((u * v).sum(-1), -1, 1))[2:], atol=1e-7)


def test_cross_matches_numpy():
    rng = np.random.default_rng(2)
    u, v = rng.normal(size=(2, 7, 4, 3))
    np.testing.assert_allclose(rf.cross(u, v), np.cross(u, v), atol=1e-12)


def test_refine_reaches_clean_targets_and_keeps_leaves(skel):
    rng = np.random.default_rng(3)
    t = rf.Tables.build(skel)
    true = rot.quat_normalize(rng.normal(size=(4, 6, 4)))
    true[:, 0] = [0, 0, 0, 1]
    root = rng.normal(size=(4, 3))
    P, _ = kinematics.forward_kinematics(skel, true, root)
    net = rot.quat_normalize(true + 0.3 * rng.normal(size=true.shape))  # a network that is somewhat off
    net[:, 0] = [0, 0, 0, 1]
    L = rot.quat_to_matrix(net)
    G = rf.global_rotations(L, t)
    off = np.broadcast_to(skel.offsets, (4, 6, 3)).copy()
    Lr, Gr = rf.refine(G, L, off, P, np.ones((4, 6)), t)
    X = rf.positions(Gr, off, root, t)
    np.testing.assert_allclose(X, P, atol=1e-9)
    # the head is a leaf: its local rotation stays the network's
    np.testing.assert_allclose(Lr[:, 3], L[:, 3])
    # the hips are determined by their three child bones: the true rotation comes back
    np.testing.assert_allclose(Gr[:, 1], rot.quat_to_matrix(true[:, 1]), atol=1e-9)
    # beta = 0 keeps the network's rotations
    L0, _ = rf.refine(G, L, off, P, np.zeros((4, 6)), t)
    np.testing.assert_allclose(L0[:, 1:], L[:, 1:], atol=1e-9)


def test_global_rotations_match_kinematics(skel):
    rng = np.random.default_rng(4)
    q = rot.quat_normalize(rng.normal(size=(3, 6, 4)))
    t = rf.Tables.build(skel)
    G = rf.global_rotations(rot.quat_to_matrix(q), t)
    want = rot.quat_to_matrix(kinematics.local_to_global(skel, q))
    inner = t.inner
    np.testing.assert_allclose(G[:, inner], want[:, inner], atol=1e-12)
