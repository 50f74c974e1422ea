"""Augmentation properties: mirroring is an FK-consistent involution, bone scaling, resampling, heading."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from rtik.formats import bvh  # noqa: E402
from rtik.geometry import rotations as rot  # noqa: E402
from rtik.geometry.kinematics import forward_kinematics, mean_local_rotations  # noqa: E402
from train import augment as aug  # noqa: E402
from train.data import CM  # noqa: E402


@pytest.fixture(scope="module")
def clip(mocap):
    m = bvh.read(mocap / "sample" / "dataset-2_wave-left-hand_elderly_020.bvh")
    skel = m.skeleton.scaled(CM)
    q = m.local_quats()[:120]
    r = m.local_positions()[:120, skel.motion_root()] * CM
    return skel, q, r


def _same_rotations(a, b, tol_deg=1e-3):
    return np.degrees(rot.quat_geodesic(a, b)).max() < tol_deg


def test_mirror_twice_is_identity(clip):
    skel, q, r = clip
    N = aug.mirror_reflections(skel, mean_local_rotations(q))
    q1, r1 = aug.mirror(skel, N, q, r)
    q2, r2 = aug.mirror(skel, N, q1, r1)
    assert _same_rotations(q2, q, 1e-2)
    np.testing.assert_allclose(r2, r, atol=1e-6)


def test_mirror_is_fk_consistent(clip):
    skel, q, r = clip
    N = aug.mirror_reflections(skel, mean_local_rotations(q))
    q1, r1 = aug.mirror(skel, N, q, r)
    P = forward_kinematics(skel, q, root_pos=r)[0]
    P1 = forward_kinematics(skel, q1.astype(np.float64), root_pos=r1)[0]
    expected = P[:, skel.mirror_map()] * np.array([-1.0, 1.0, 1.0])
    assert np.abs(P1 - expected).max() < 2e-3  # the two sides' bones differ by < 1 mm in the data
    assert not np.allclose(P1, P, atol=1e-2)


def test_bone_scaling_changes_lengths_as_asked(clip):
    skel, _, _ = clip
    f = np.linspace(0.8, 1.2, len(skel))
    s = aug.scale_skeleton(skel, f)
    bones = skel.bone_lengths() > 1e-6
    bones[skel.motion_root()] = False
    np.testing.assert_allclose(s.bone_lengths()[bones], skel.bone_lengths()[bones] * f[bones], rtol=1e-12)
    s2, f2 = aug.scale_bones(skel, np.random.default_rng(0), body=(1.1, 1.1))
    m = skel.mirror_map()
    assert np.allclose(f2, f2[m], rtol=0.2)  # left and right alike up to the small asymmetry


def test_resampling_keeps_endpoints(clip):
    _, q, r = clip
    for factor in (2, 4):
        q2, r2 = aug.resample(q, r, factor)
        assert len(q2) == (len(q) - 1) * factor + 1
        assert _same_rotations(q2[0], q[0]) and _same_rotations(q2[-1], q[-1])
        assert _same_rotations(q2[::factor], q, 1e-2)
        np.testing.assert_allclose(r2[-1], r[-1], atol=1e-6)
    q3, _ = aug.resample(q, r, 2, speed=1.2, warp=0.3, rng=np.random.default_rng(1))
    assert 1.5 * len(q) < len(q3) < 2 * len(q)


def test_heading_rotation_turns_positions(clip):
    skel, q, r = clip
    q2, r2 = aug.rotate_heading(skel, q, r, np.pi / 2, (1.0, 0.0))
    P = forward_kinematics(skel, q, root_pos=r)[0]
    P2 = forward_kinematics(skel, q2.astype(np.float64), root_pos=r2)[0]
    turned = np.stack([P[..., 2], P[..., 1], -P[..., 0]], -1) + np.array([1.0, 0, 0])
    np.testing.assert_allclose(P2[:, 1:], turned[:, 1:], atol=1e-4)  # the dummy root stays at the origin


def test_perturbation_and_mixing_are_small_and_local(clip):
    skel, q, r = clip
    rng = np.random.default_rng(0)
    joints = np.array([skel.index("LowerArm_L")])
    p = aug.perturb_pose(q, joints, rng, 5.0)
    ang = np.degrees(rot.quat_geodesic(p[:, joints], q[:, joints]))
    assert 0 < ang.max() < 40 and _same_rotations(np.delete(p, joints, 1), np.delete(q, joints, 1))
    upper = aug.subtree(skel, skel.index("Spine"))
    mixed = aug.mix_upper_body(q, q[::-1], upper)
    assert _same_rotations(mixed[:, upper], q[::-1][:, upper]) and _same_rotations(mixed[:, :2], q[:, :2])
