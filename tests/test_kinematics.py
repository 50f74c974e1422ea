"""rtik.geometry.kinematics: FK against bvhio as oracle, analytic IK, calibration, local/global conversions."""

from __future__ import annotations

import numpy as np
import pytest

from rtik.errors import InputError
from rtik.geometry import kinematics as kin
from rtik.geometry import rotations as rot
from rtik.geometry.skeleton import Skeleton

IK_TOL_CM = 0.05  # analytic IK must reproduce positions within 0.5 mm (the data is in centimetres)
ORACLE_CLIPS = (  # one clip per kind of motion keeps the (slow) oracle affordable
    "dataset-2_walk_active_020.bvh",
    "dataset-2_run_feminine_030.bvh",
    "dataset-2_walk-turn-left_elderly_020.bvh",
    "dataset-2_wave-both-hands_active_010.bvh",
    "dataset-2_raise-up-right-hand_exhausted_020.bvh",
)


def all_frames(sample_motions):
    """Local rotations, root translations and positions of every sample clip, concatenated."""
    skel = sample_motions[0][1].skeleton
    q = np.concatenate([m.local_quats() for _, m in sample_motions])
    P = np.concatenate([m.positions() for _, m in sample_motions])
    return skel, q, P


@pytest.mark.parametrize("clip", ORACLE_CLIPS)
def test_fk_matches_bvhio(mocap, clip):
    bvhio = pytest.importorskip("bvhio")
    from rtik.formats import bvh

    path = mocap / "sample" / clip
    m = bvh.read(path)
    P = m.positions()
    root = bvhio.readAsHierarchy(str(path))
    joints = [j for j, _, _ in root.layout()]
    idx = [m.skeleton.index(j.Name) for j in joints]
    frames = range(0, m.num_frames, 7)
    ref = np.empty((len(frames), len(joints), 3))
    for k, f in enumerate(frames):
        root.loadPose(f)
        ref[k] = [tuple(j.PositionWorld) for j in joints]
    np.testing.assert_allclose(P[list(frames)][:, idx], ref, atol=1e-3)  # cm; bvhio computes in float32


def test_fk_hand_computed_chain():
    s = Skeleton(("r", "a", "b"), [-1, 0, 1], [[1, 2, 3], [2, 0, 0], [0, 3, 0]])
    q = rot.quat_identity((2, 3))
    q[1, 0] = rot.axis_angle_to_quat([0, 0, np.pi / 2])  # root turns 90 degrees about Z in frame 1
    q[1, 1] = rot.axis_angle_to_quat([np.pi / 2, 0, 0])  # a turns 90 degrees about X
    P, G = kin.forward_kinematics(s, q)
    np.testing.assert_allclose(P[0], [[1, 2, 3], [3, 2, 3], [3, 5, 3]], atol=1e-12)
    # frame 1: a's offset (2,0,0) -> (0,2,0); b's offset (0,3,0) -> Rx: (0,0,3) -> Rz: (0,0,3)
    np.testing.assert_allclose(P[1], [[1, 2, 3], [1, 4, 3], [1, 4, 6]], atol=1e-12)
    np.testing.assert_allclose(rot.quat_geodesic(G[1, 2], rot.quat_mul(q[1, 0], q[1, 1])), 0, atol=1e-7)
    # root_pos replaces the motion root's translation; local_pos replaces every offset
    P2, _ = kin.forward_kinematics(s, q, root_pos=np.zeros((2, 3)))
    np.testing.assert_allclose(P2, P - [1, 2, 3], atol=1e-12)
    lp = np.broadcast_to(s.offsets * 2, (2, 3, 3))
    P3, _ = kin.forward_kinematics(s, q, local_pos=lp)
    np.testing.assert_allclose(P3[0], [[2, 4, 6], [6, 4, 6], [6, 10, 6]], atol=1e-12)


def test_fk_keeps_float32():
    s = Skeleton(("r", "a"), [-1, 0], [[0, 0, 0], [1, 0, 0]])
    P, G = kin.forward_kinematics(s, rot.quat_identity((4, 2), np.float32))
    assert P.dtype == np.float32 and G.dtype == np.float32


def test_fk_rejects_wrong_shapes():
    s = Skeleton(("r", "a"), [-1, 0], [[0, 0, 0], [1, 0, 0]])
    with pytest.raises(InputError, match=r"local_quats has shape \(4, 3, 4\), expected \(F, 2, 4\)"):
        kin.forward_kinematics(s, np.zeros((4, 3, 4)))


def test_analytic_ik_reproduces_every_sample_clip(sample_motions):
    for path, m in sample_motions:
        skel, P = m.skeleton, m.positions()
        q, root = kin.analytic_ik(skel, P)
        P2, _ = kin.forward_kinematics(skel, q, root_pos=root)
        err = np.linalg.norm(P2 - P, axis=-1).max()
        assert err < IK_TOL_CM, f"{path.name}: {err:.4f} cm"
        np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-9)


def test_analytic_ik_with_prior(sample_motions):
    skel, q_gt, P = all_frames(sample_motions)
    prior = kin.mean_local_rotations(q_gt)
    assert prior.shape == (len(skel), 4)
    q_plain, root = kin.analytic_ik(skel, P)
    q_prior, root2 = kin.analytic_ik(skel, P, prior_local=prior)
    np.testing.assert_allclose(root, root2)
    P2, _ = kin.forward_kinematics(skel, q_prior, root_pos=root2)
    assert np.linalg.norm(P2 - P, axis=-1).max() < IK_TOL_CM
    # determined joints are fixed by the positions: both recover the true global rotation
    _, G_gt = kin.forward_kinematics(skel, q_gt)
    for qq in (q_plain, q_prior):
        G = kin.local_to_global(skel, qq)
        for name in ("Hips", "Chest"):
            j = skel.index(name)
            assert np.degrees(rot.quat_geodesic(G[:, j], G_gt[:, j])).max() < 0.01, name
    # the prior's twist is far closer to the performer's than zero twist (the analytic_prior baseline)
    limbs = skel.group_indices("limb")
    err_plain = np.degrees(rot.quat_geodesic(q_plain[:, limbs], q_gt[:, limbs])).mean()
    err_prior = np.degrees(rot.quat_geodesic(q_prior[:, limbs], q_gt[:, limbs])).mean()
    assert err_prior < 0.5 * err_plain
    # leaves keep the reference rotation exactly
    leaf = skel.index("Head")
    np.testing.assert_allclose(rot.quat_geodesic(q_prior[:, leaf], prior[leaf]), 0, atol=1e-6)


def test_analytic_ik_rejects_bad_input(bandai_skeleton):
    with pytest.raises(InputError, match="expected"):
        kin.analytic_ik(bandai_skeleton, np.zeros((3, 21, 3)))
    P = np.zeros((3, 22, 3))
    P[1, 4, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        kin.analytic_ik(bandai_skeleton, P)


def test_bone_lengths_and_rescale_on_scaled_data(sample_motions):
    _, m = sample_motions[0]
    skel, q = m.skeleton, m.local_quats()
    rest = skel.bone_lengths()
    # uniform scale
    L = kin.bone_lengths(skel, m.positions() * 1.3)
    has_bone = np.arange(len(skel)) > skel.motion_root()  # the dummy root and Hips hang from no bone
    assert L[0] == L[skel.motion_root()] == 0
    np.testing.assert_allclose(L[has_bone], 1.3 * rest[has_bone], rtol=1e-6)
    # non-uniform: longer legs, shorter arms
    factor = np.ones(len(skel))
    for name in ("UpperLeg_L", "UpperLeg_R", "LowerLeg_L", "LowerLeg_R"):
        factor[skel.index(name)] = 1.15
    for name in ("LowerArm_L", "LowerArm_R", "Hand_L", "Hand_R"):
        factor[skel.index(name)] = 0.9
    body = skel.with_offsets(skel.offsets * factor[:, None])
    P, _ = kin.forward_kinematics(body, q, root_pos=m.local_positions()[:, skel.motion_root()])
    L = kin.bone_lengths(skel, P)
    fitted = kin.rescale_skeleton(skel, L)
    np.testing.assert_allclose(fitted.bone_lengths()[has_bone], body.bone_lengths()[has_bone], rtol=1e-6)
    np.testing.assert_array_equal(fitted.offsets[skel.motion_root()], skel.offsets[skel.motion_root()])
    q2, root = kin.analytic_ik(fitted, P)
    P2, _ = kin.forward_kinematics(fitted, q2, root_pos=root)
    assert np.linalg.norm(P2 - P, axis=-1).max() < IK_TOL_CM


def test_bone_lengths_mask_and_missing():
    s = Skeleton(("r", "a", "b"), [-1, 0, 1], [[0, 0, 0], [2, 0, 0], [3, 0, 0]])
    P = np.array([[[0, 0, 0], [2, 0, 0], [5, 0, 0]]] * 5, dtype=float)
    P[0, 2] = [50, 0, 0]  # one outlier frame: the median ignores it
    np.testing.assert_allclose(kin.bone_lengths(s, P), [0, 2, 3])
    mask = np.ones((5, 3), bool)
    mask[:, 2] = False  # b never observed
    L = kin.bone_lengths(s, P, mask=mask)
    assert L[1] == 2 and np.isnan(L[2])
    # an unmeasured bone is scaled by the median ratio of the measured ones
    r = kin.rescale_skeleton(s, [0, 4, np.nan])
    np.testing.assert_allclose(r.offsets, [[0, 0, 0], [4, 0, 0], [6, 0, 0]])


def test_global_local_inverse(sample_motions):
    _, m = sample_motions[1]
    skel, q = m.skeleton, m.local_quats()
    G = kin.local_to_global(skel, q)
    _, G_fk = kin.forward_kinematics(skel, q)
    np.testing.assert_allclose(rot.quat_geodesic(G, G_fk), 0, atol=1e-6)
    back = kin.global_to_local(skel, G)
    np.testing.assert_allclose(rot.quat_geodesic(back, q), 0, atol=1e-6)
    rng = np.random.default_rng(0)
    G_rand = rot.quat_normalize(rng.normal(size=(10, len(skel), 4)))
    np.testing.assert_allclose(
        rot.quat_geodesic(kin.local_to_global(skel, kin.global_to_local(skel, G_rand)), G_rand), 0, atol=1e-6
    )


def test_mean_local_rotations():
    rng = np.random.default_rng(1)
    base = rot.quat_normalize(rng.normal(size=(3, 4)))
    small = rot.axis_angle_to_quat(rng.normal(scale=0.05, size=(200, 3, 3)))
    q = rot.quat_mul(base, small)
    q[::2] *= -1  # sign flips do not matter
    mean = kin.mean_local_rotations(q)
    assert np.all(mean[:, 3] >= 0)
    assert np.degrees(rot.quat_geodesic(mean, base)).max() < 1.0
    const = np.broadcast_to(base, (7, 3, 4))
    np.testing.assert_allclose(rot.quat_geodesic(kin.mean_local_rotations(const), base), 0, atol=1e-7)
