"""rtik.formats.rig: any BVH rig onto the body and back, on one real clip of every rig the corpus holds."""

from pathlib import Path

import numpy as np
import pytest

from rtik.formats import bvh
from rtik.formats.rig import BODY_NAMES, Rig, RigError, clip_arrays
from rtik.geometry import rotations as rot
from rtik.geometry.kinematics import forward_kinematics
from rtik.geometry.skeleton import Skeleton

MOCAP = Path(__file__).resolve().parents[2] / "shared" / "mocap"
SAMPLES = sorted((MOCAP / "extra" / "sample").glob("*.bvh")) + sorted((MOCAP / "sample").glob("*.bvh"))[:2]
pytestmark = pytest.mark.skipif(not SAMPLES, reason="the mocap samples (../shared/mocap) are not beside the repo")
#: rigs whose mapped chains are rigid in the body: FK of the body lands on the rig's joints
RIGID = (
    "dataset-2",
    "mpi-poseprior",
    "sst",
    "motorcycle",
    "handspring",
    "tennisData",
    "broad_jump",
    "PushStep",
    "woddy2",
)


def _clip(path, frames=120):
    m = bvh.read(path)
    skel, q, root = clip_arrays(m)
    return m, skel, q[:frames], root[:frames]


@pytest.fixture(scope="module", params=SAMPLES, ids=lambda p: p.stem[:40])
def sample(request):
    m, skel, q, root = _clip(request.param)
    return request.param.name, Rig.from_motion(m), skel, q, root


def _mapped_positions(rig, skel, q, root):
    bq, hips = rig.to_body(q, root)
    P, _ = forward_kinematics(rig.body, bq, hips)
    Pr = forward_kinematics(skel, q, root)[0] @ rig._A.T
    b = [BODY_NAMES.index(k) for k in rig.mapping]
    r = [rig.mapping[k] for k in rig.mapping]
    return P[:, b], Pr[:, r], np.ptp(Pr[0], axis=0).max()


def test_every_rig_maps_and_lands_on_its_joints(sample):
    name, rig, skel, q, root = sample
    assert set(rig.mapping) >= {"Hips", "Chest", "Head", "Hand_L", "Hand_R", "Foot_L", "Toes_R"}
    assert len(set(rig.mapping.values())) == len(rig.mapping)  # no rig joint claimed twice
    body, body_pos, height = _mapped_positions(rig, skel, q, root)
    err = np.linalg.norm(body - body_pos, axis=-1).max() / height
    # shoulders hung from a neck joint (SNU 22 joints) or a spine turning at the hips (CMU 31) move in ways the
    # body cannot follow: within 2.5 % of the height
    assert err < (1e-6 if any(k in name for k in RIGID) else 0.025), err


def test_rest_pose_is_a_t_pose(sample):
    _, rig, *_ = sample
    off = dict(zip(BODY_NAMES, rig.body.offsets, strict=True))
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    np.testing.assert_allclose(unit(off["LowerArm_L"]), [1, 0, 0], atol=1e-9)
    np.testing.assert_allclose(unit(off["Hand_R"]), [-1, 0, 0], atol=1e-9)
    np.testing.assert_allclose(unit(off["Foot_L"]), [0, -1, 0], atol=1e-9)
    np.testing.assert_allclose(unit(off["Toes_R"]), [0, 0, 1], atol=1e-9)
    np.testing.assert_allclose(unit(off["Head"]), [0, 1, 0], atol=1e-9)
    assert off["UpperLeg_L"][0] > 0 > off["UpperLeg_R"][0]  # the performer's left is +X
    assert rig.body.dummy_root() == 0


def test_rig_to_body_to_rig_is_exact_where_the_body_covers_the_rig():
    m, skel, q, root = _clip(MOCAP / "sample" / "dataset-2_walk_active_020.bvh")
    rig = Rig.from_motion(m)
    bq, hips = rig.to_body(q, root)
    q2, root2 = rig.from_body(bq, hips)
    assert rot.quat_geodesic(q2[:, 1:], q[:, 1:]).max() < 1e-6  # every joint but the static dummy root
    np.testing.assert_allclose(forward_kinematics(skel, q2, root2)[0], forward_kinematics(skel, q, root)[0],
                               atol=1e-6)  # fmt: skip


def test_same_motion_on_two_rigs_gives_the_same_body_rotations():
    """A Bandai clip retargeted onto the MPI rig (T-pose, Z-less spine) through the body and read back: every
    joint both rigs have turns the same in the world."""
    m, skel, q, root = _clip(MOCAP / "sample" / "dataset-2_wave-left-hand_masculine_010.bvh")
    a = Rig.from_motion(m)
    bq, hips = a.to_body(q, root)
    mb = bvh.read(MOCAP / "extra" / "sample" / "mpi-poseprior_03100_S7.bvh")
    b = Rig.from_skeleton(clip_arrays(mb)[0])
    qb, rootb = b.from_body(bq, hips)
    bq2, hips2 = b.to_body(qb, rootb)
    both = [i for i, n in enumerate(BODY_NAMES) if n in a.mapping and n in b.mapping]
    _, ga = forward_kinematics(a.body, bq, hips)
    _, gb = forward_kinematics(b.body, bq2, hips2)
    assert rot.quat_geodesic(ga[:, both], gb[:, both]).max() < 1e-6
    np.testing.assert_allclose(hips2, hips, atol=1e-6)


def test_zero_pose_that_does_not_stand_takes_its_up_axis_from_the_motion():
    m, skel, q, root = _clip(MOCAP / "extra" / "sample" / "snu-vsports_s_003_6_1.bvh")
    rig = Rig.from_motion(m)  # every bone along +X at zero rotation, Y up in the motion
    assert rig.up == "+Y"
    _, hips = rig.to_body(q, root)
    assert hips[:, 1].mean() > 0.5 * np.ptp(rig.body.offsets, axis=0).max()  # the hips stand above the floor


def test_fit_aligns_twist_of_turned_joints_only():
    m, skel, q, root = _clip(MOCAP / "sample" / "dataset-2_walk_active_020.bvh", frames=400)
    rig = Rig.from_motion(m)  # every Bandai bone is turned into the T-pose, so fit() aligns them
    bq, _ = rig.to_body(q, root)
    i = BODY_NAMES.index("LowerArm_L")
    _, tw = rot.swing_twist(bq[:, i], [1.0, 0, 0])
    ang = 2 * np.arctan2(tw[:, 0], tw[:, 3])
    assert abs(np.angle(np.mean(np.exp(1j * ang)))) < 1e-6  # the mean twist is the reference (zero)
    j = BODY_NAMES.index("Hand_L")  # a leaf: its mean orientation relative to the forearm is the identity
    mean = np.linalg.eigh(bq[:, j].T @ bq[:, j])[1][:, -1]
    assert rot.quat_angle(mean) < 1e-6
    t = Rig.from_motion(bvh.read(MOCAP / "extra" / "sample" / "mpi-poseprior_03100_S7.bvh"))
    assert max(t.posed.values()) < 25  # a T-pose rig keeps its own twist: nothing to align


def _skeleton(names, parents, offsets):
    return Skeleton(tuple(names), np.array(parents), np.array(offsets, dtype=float))


def test_unmappable_rigs_are_refused_with_what_was_found():
    m = bvh.read(MOCAP / "extra" / "sample" / "mpi-poseprior_03100_S7.bvh")
    skel = m.skeleton
    no_hands = _skeleton([n.replace("Hand", "Paw") for n in skel.names], skel.parents, skel.offsets)
    with pytest.raises(RigError, match="no joint found for Hand_L, Hand_R.*its joints: Hips"):
        Rig.from_skeleton(no_hands)
    stub = _skeleton(["Hips", "Head"], [-1, 0], [[0, 0, 0], [0, 1, 0]])
    with pytest.raises(RigError, match="Hand_L"):
        Rig.from_skeleton(stub)
    # a leg of only a foot: thigh and shin missing
    names = ["Hips", "Spine", "Head", "LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand", "RightShoulder",
             "RightArm", "RightForeArm", "RightHand", "LeftFoot", "LeftToe", "RightFoot", "RightToe"]  # fmt: skip
    parents = [-1, 0, 1, 1, 3, 4, 5, 1, 7, 8, 9, 0, 11, 0, 13]
    offsets = [[0, 0, 0], [0, 1, 0], [0, 1, 0], [0.1, 0.9, 0], [0.1, 0, 0], [0.3, 0, 0], [0.3, 0, 0],
               [-0.1, 0.9, 0], [-0.1, 0, 0], [-0.3, 0, 0], [-0.3, 0, 0], [0.1, -0.9, 0], [0, -0.1, 0.1],
               [-0.1, -0.9, 0], [0, -0.1, 0.1]]  # fmt: skip
    with pytest.raises(RigError, match="leg of this rig has fewer than thigh, shin and foot"):
        Rig.from_skeleton(_skeleton(names, parents, offsets))


def test_up_axis_is_checked():
    m = bvh.read(MOCAP / "extra" / "sample" / "mpi-poseprior_03100_S7.bvh")
    with pytest.raises(RigError, match="up axis"):
        Rig.from_skeleton(m.skeleton, up="up")


def test_layout_feeds_body_joints_by_structure_not_names_alone():
    """CMU's ``LeftShoulder`` is an upper arm and ``LeftCollar`` the clavicle; name aliases alone get it wrong."""
    m = bvh.read(MOCAP / "extra" / "sample" / "animated-drawings_cmu_14_14_short.bvh")
    lay = Rig.from_skeleton(clip_arrays(m)[0]).layout()
    assert lay.joints == m.skeleton.names
    assert lay.rows["UpperArm_L"] == (("LeftShoulder", 1.0),) and lay.rows["Shoulder_L"] == (("LeftCollar", 1.0),)
    assert lay.rows["UpperLeg_R"] == (("RightHip", 1.0),) and lay.rows["Hand_R"] == (("RightWrist", 1.0),)


def test_describe_names_every_body_joints_source():
    rig = Rig.from_motion(bvh.read(MOCAP / "extra" / "sample" / "mpi-poseprior_03100_S7.bvh"))
    lines = rig.describe()
    assert lines[0] == "Hips <- Hips"  # the rig's joint 0
    assert "Spine <- virtual (on its chain, turns with its parent)" in lines and "Chest <- Spine" in lines


def test_leaves_align_on_their_tips_whatever_the_rigs_zero_pose_makes_of_them():
    """Two rigs of one performer that differ only in their head's and left toe's zero pose (the joint frames
    turned by a constant, the End Sites with them, so every point moves the same in the world): after fit() the
    body's head and toe point the same way in both, and their tips sit along the canonical marker directions."""
    from rtik.formats import markers

    m, skel, q, root = _clip(MOCAP / "extra" / "sample" / "mpi-poseprior_03100_S7.bvh", frames=200)
    a = Rig.from_skeleton(skel).fit([(q, root)])
    turn = {"Head": rot.axis_angle_to_quat(np.radians(35.0) * np.array([1.0, 0.2, 0.0]) / np.hypot(1, 0.2)),
            "LeftToeBase": rot.axis_angle_to_quat(np.radians(-60.0) * np.array([1.0, 0.0, 0.0]))}  # fmt: skip
    ends, q2 = list(skel.end_sites), q.copy()
    for name, s in turn.items():
        j = skel.index(name)
        ends[j] = rot.quat_apply(rot.quat_conj(s), ends[j])  # the same tip in the turned frame
        q2[:, j] = rot.quat_mul(q[:, j], s)  # the same world motion of the leaf
    skel2 = Skeleton(skel.names, skel.parents, skel.offsets, skel.channels, tuple(ends))
    b = Rig.from_skeleton(skel2).fit([(q2, root)])
    assert b.tipped["Head"] > 20 and b.tipped["Toes_L"] > 20  # the turn was there to undo
    ga, _ = a.body_globals(q, root)
    gb, _ = b.body_globals(q2, root)
    for leaf, marker in (("Head", "HeadTop"), ("Toes_L", "ToeTip_L")):
        i = BODY_NAMES.index(leaf)
        c = np.array(markers.BY_NAME[marker].offset) / np.linalg.norm(markers.BY_NAME[marker].offset)
        cos = np.einsum("fi,fi->f", ga[:, i] @ c, gb[:, i] @ c)
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 0.5, leaf
        for rig, qq in ((a, q), (b, q2)):
            tip = rig.tip_offsets(qq, root)[marker]
            assert np.degrees(np.arccos(np.clip(tip @ c / np.linalg.norm(tip), -1, 1))) < 0.5
