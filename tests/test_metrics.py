import os
from pathlib import Path

import numpy as np
import pytest

from rtik.errors import InputError
from rtik.eval import metrics
from rtik.formats import bvh
from rtik.geometry import kinematics as kin
from rtik.geometry import rotations as rot

MOCAP = Path(__file__).resolve().parents[1].parent / "shared" / "mocap"
if not MOCAP.is_dir():
    MOCAP = Path(os.environ.get("RTIK_MOCAP", MOCAP))
CLIP = MOCAP / "sample" / "dataset-2_walk_active_020.bvh"


@pytest.fixture(scope="module")
def clip():
    if not CLIP.is_file():
        pytest.skip(f"mocap sample not found at {CLIP}")
    m = bvh.read(CLIP)
    skel = m.skeleton.scaled(0.01)
    return skel, m.local_quats(), m.positions() * 0.01, m.fps


def test_identical_is_zero(clip):
    skel, q, p, fps = clip
    s = metrics.clip_errors(skel, q, p, q, p, fps).summary()
    for k in metrics.KEYS:
        if k == "jerk_ratio":
            assert s[k] == pytest.approx(1.0)
        else:
            assert s[k] == pytest.approx(0.0, abs=1e-6), k
    assert s["frames"] == len(q) and s["clips"] == 1


def test_known_twist_offset(clip):
    """A 30 degree twist of one forearm about its bone: that joint's local error is 30 degrees, its global
    error (and its hand's) too; positions do not move, since the hand lies on the twist axis."""
    skel, q, p, fps = clip
    j = skel.index("LowerArm_L")
    hand = skel.index("Hand_L")
    axis = skel.offsets[hand] / np.linalg.norm(skel.offsets[hand])
    twist = rot.axis_angle_to_quat(axis * np.radians(30.0))
    q2 = q.copy()
    q2[:, j] = rot.quat_mul(q[:, j], twist)
    p2, _ = kin.forward_kinematics(skel, q2, local_pos=np.broadcast_to(skel.offsets, p.shape).copy())
    p2[:, 1:] += p[:, 1:2] - p2[:, 1:2]  # same root translation as the GT
    e = metrics.clip_errors(skel, q2, p2, q, p, fps)
    pj = e.per_joint()
    assert pj["rot_deg"][j] == pytest.approx(30.0, abs=1e-6)
    assert pj["grot_deg"][j] == pytest.approx(30.0, abs=1e-6)
    assert pj["grot_deg"][hand] == pytest.approx(30.0, abs=1e-6)
    others = np.ones(len(skel), bool)
    others[[0, j]] = False
    assert np.nanmax(pj["rot_deg"][others]) < 1e-6
    assert np.isnan(pj["rot_deg"][0])  # dummy root excluded
    s = e.summary()
    assert s["mpjpe_mm"] < 1e-3
    assert s["rot_all_deg"] == pytest.approx(30.0 / 21)
    n_limb = sum(g == "limb" for g in skel.groups[1:])
    assert s["rot_limb_deg"] == pytest.approx(30.0 / n_limb)
    assert s["rot_leaf_deg"] == pytest.approx(0.0, abs=1e-6)


def test_known_position_offset(clip):
    skel, q, p, fps = clip
    p2 = p + np.array([0.003, 0.0, 0.004])  # 5 mm everywhere, the dummy root too (excluded)
    s = metrics.clip_errors(skel, q, p2, q, p, fps).summary()
    assert s["mpjpe_mm"] == pytest.approx(5.0)
    assert s["jerk_ratio"] == pytest.approx(1.0)  # a constant offset has no jerk


def test_known_jerk():
    """Cubic trajectories have a constant third derivative: p = a t^3 / 6 has jerk |a| exactly."""
    from rtik.geometry.skeleton import Skeleton

    skel = Skeleton(["a", "b"], [-1, 0], [[0, 0, 0], [0.1, 0, 0]])
    fps = 60.0
    t = np.arange(50) / fps
    gt = np.zeros((50, 2, 3))
    gt[:, :, 1] = (2.0 * t**3 / 6)[:, None]  # jerk 2 m/s^3
    out = gt.copy()
    out[:, :, 1] = (6.0 * t**3 / 6)[:, None]  # jerk 6 m/s^3
    np.testing.assert_allclose(metrics.jerk(gt, fps), 2.0, rtol=1e-6)
    q = rot.quat_identity((50, 2))
    assert metrics.clip_errors(skel, q, out, q, gt, fps).summary()["jerk_ratio"] == pytest.approx(3.0, rel=1e-6)


def test_jerk_ratio_of_several_clips_is_frame_weighted():
    from rtik.geometry.skeleton import Skeleton

    skel = Skeleton(["a", "b"], [-1, 0], [[0, 0, 0], [0.1, 0, 0]])
    fps = 30.0

    def clip(F, gt_jerk, out_jerk):
        t = np.arange(F) / fps
        gt = np.zeros((F, 2, 3))
        out = np.zeros((F, 2, 3))
        gt[:, :, 0] = (gt_jerk * t**3 / 6)[:, None]
        out[:, :, 0] = (out_jerk * t**3 / 6)[:, None]
        q = rot.quat_identity((F, 2))
        return metrics.clip_errors(skel, q, out, q, gt, fps)

    s = metrics.combine([clip(50, 1.0, 3.0), clip(100, 10.0, 10.0)]).summary()
    assert s["jerk_ratio"] == pytest.approx((50 * 3.0 + 100 * 1.0) / 150, rel=1e-6)
    assert s["jerk_ratio_pooled"] == pytest.approx((47 * 3.0 + 97 * 10.0) / (47 * 1.0 + 97 * 10.0), rel=1e-6)


def test_combine_weights_by_frames(clip):
    skel, q, p, fps = clip
    a = metrics.clip_errors(skel, q[:100], p[:100] + [0.001, 0, 0], q[:100], p[:100], fps)
    b = metrics.clip_errors(skel, q[100:], p[100:] + [0.004, 0, 0], q[100:], p[100:], fps)
    s = metrics.combine([a, b]).summary()
    n_b = len(q) - 100
    assert s["mpjpe_mm"] == pytest.approx((100 * 1.0 + n_b * 4.0) / len(q))
    assert s["clips"] == 2 and s["frames"] == len(q)


def test_shape_errors(clip):
    skel, q, p, fps = clip
    with pytest.raises(InputError, match="out_positions has shape"):
        metrics.clip_errors(skel, q, p[:, :5], q, p, fps)
    with pytest.raises(InputError, match="fps"):
        metrics.clip_errors(skel, q, p, q, p, 0.0)
    with pytest.raises(InputError, match="no clips"):
        metrics.combine([])
