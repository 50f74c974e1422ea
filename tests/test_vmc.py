"""VMC: the T-pose reference, the conversion to Unity humanoid rotations, handedness, and the OSC messages."""

from __future__ import annotations

import numpy as np
import pytest

from rtik.errors import ConfigError
from rtik.geometry import kinematics as kin
from rtik.geometry import rotations as rot
from rtik.wire.osc import parse_datagram
from rtik.wire.vmc import BANDAI_TO_UNITY, VmcRig, to_unity_position, to_unity_quat


@pytest.fixture(scope="module")
def skel(bandai_skeleton):
    return bandai_skeleton.scaled(0.01)


@pytest.fixture(scope="module")
def prior(sample_motions):
    return kin.mean_local_rotations(np.concatenate([m.local_quats() for _, m in sample_motions]))


@pytest.fixture(scope="module", params=["prior", "rest"])
def rig(request, skel, prior):
    return VmcRig(skel, reference_local=prior if request.param == "prior" else None)


def _unity_globals(rig, U):
    """Unity global rotations ``(B, 4)`` from Unity local rotations, along the mapped hierarchy."""
    skel, idx = rig.skeleton, {int(j): b for b, j in enumerate(rig.joints)}
    G = np.empty_like(U)
    for b, j in enumerate(rig.joints):
        k = int(skel.parents[j])
        while k >= 0 and k not in idx:
            k = int(skel.parents[k])
        G[b] = U[b] if k < 0 else rot.quat_mul(G[idx[k]], U[b])
    return G


def test_handedness_mirror():
    p = np.array([0.3, 1.2, -0.4])
    np.testing.assert_allclose(to_unity_position(p), [-0.3, 1.2, -0.4])
    q = rot.axis_angle_to_quat(np.array([0.2, -0.5, 0.7]))
    # mirroring diag(-1, 1, 1) conjugates the rotation matrix: M R M
    M = np.diag([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(rot.quat_to_matrix(to_unity_quat(q)), M @ rot.quat_to_matrix(q) @ M, atol=1e-12)


def test_every_bandai_joint_but_the_dummy_root_is_mapped(rig):
    assert len(rig.names) == 21 and set(rig.skeleton.names) - set(BANDAI_TO_UNITY) == {"joint_Root"}
    assert {"Hips", "LeftUpperArm", "RightLowerLeg", "LeftToes", "Head"} <= set(rig.names)


def test_tpose_reference_gives_identity(rig):
    local = kin.global_to_local(rig.skeleton, rig.tpose[None])[0]
    U = rig.unity_rotations(local)
    np.testing.assert_allclose(U, np.tile([0, 0, 0, 1.0], (len(U), 1)), atol=1e-9)


def test_tpose_shape(rig):
    """T-pose: facing +Z, left arm along +X, right along -X, legs down, spine up (rtik's right-handed axes)."""
    P = rig._tpose_positions()
    at = lambda n: P[rig.skeleton.index(n)]
    unit = lambda v: v / np.linalg.norm(v)
    np.testing.assert_allclose(unit(at("Hand_L") - at("UpperArm_L")), [1, 0, 0], atol=1e-9)
    np.testing.assert_allclose(unit(at("Hand_R") - at("UpperArm_R")), [-1, 0, 0], atol=1e-9)
    np.testing.assert_allclose(unit(at("Foot_L") - at("LowerLeg_L")), [0, -1, 0], atol=1e-9)
    np.testing.assert_allclose(unit(at("Neck") - at("Chest")), [0, 1, 0], atol=1e-9)
    assert at("Toes_L")[2] > at("Foot_L")[2] and at("UpperLeg_L")[0] > at("UpperLeg_R")[0]


def test_tpose_positions_through_analytic_ik_give_identity(skel, prior):
    """A T-pose *input*, solved by swing-only IK with the same reference twist, sends identity bone rotations."""
    rig = VmcRig(skel, reference_local=prior)
    P = rig._tpose_positions()
    local, _ = kin.analytic_ik(skel, P[None], prior)
    U = rig.unity_rotations(local[0])
    np.testing.assert_allclose(rot.quat_angle(U), 0.0, atol=1e-6)


def test_known_elbow_bend(rig):
    """Left forearm swung from pointing left (+X) to pointing forward (+Z) about the vertical axis: in Unity
    (left arm along -X, forward +Z, left-handed) that is +90° about Y, and every other bone stays at identity."""
    skel = rig.skeleton
    G = rig.tpose.copy()
    bend = rot.axis_angle_to_quat(np.array([0.0, -np.pi / 2, 0.0]))  # right-handed: +X -> +Z
    arm = skel.index("LowerArm_L")
    for j in (arm, skel.index("Hand_L")):
        G[j] = rot.quat_mul(bend, G[j])
    U = rig.unity_rotations(kin.global_to_local(skel, G[None])[0])
    b = rig.names.index("LeftLowerArm")
    np.testing.assert_allclose(U[b], [0, np.sqrt(0.5), 0, np.sqrt(0.5)], atol=1e-9)
    np.testing.assert_allclose(rot.quat_apply(U[b], np.array([-1.0, 0, 0])), [0, 0, 1], atol=1e-9)
    others = np.delete(U, b, axis=0)
    np.testing.assert_allclose(rot.quat_angle(others), 0.0, atol=1e-9)


def test_unity_bones_follow_the_motion(rig, sample_motions):
    """For real frames: each Unity bone's global rotation carries its T-pose bone vector onto the solved bone
    (mirrored into Unity space), so any humanoid avatar points its bones where the performer's are."""
    motion = sample_motions[3][1]
    skel = rig.skeleton
    q = motion.local_quats()[::10]
    P = motion.positions()[::10] * 0.01
    pos_of = {b: j for b, j in enumerate(rig.joints)}
    for f in range(len(q)):
        G = _unity_globals(rig, rig.unity_rotations(q[f]))
        for b, j in pos_of.items():
            for c in skel.bone_children(int(j)):
                cb = list(rig.joints).index(c)
                want = to_unity_position(P[f, c] - P[f, j])
                np.testing.assert_allclose(rot.quat_apply(G[b], rig.local_pos[cb]), want, atol=1e-6)


def test_messages_parse_with_python_osc_and_carry_every_bone(rig, sample_motions):
    motion = sample_motions[0][1]
    q, P = motion.local_quats()[5], motion.positions()[5] * 0.01
    dgrams = rig.encode(q, P, t=1.5)
    assert all(len(d) <= 1400 for d in dgrams)
    msgs = [m for d in dgrams for m in parse_datagram(d)]
    bones = {args[0]: args[1:] for addr, args in msgs if addr == "/VMC/Ext/Bone/Pos"}
    assert set(bones) == set(BANDAI_TO_UNITY.values())
    assert all(len(v) == 7 and all(isinstance(x, float) for x in v) for v in bones.values())
    root = [args for addr, args in msgs if addr == "/VMC/Ext/Root/Pos"]
    assert root and root[0][0] == "root" and len(root[0]) == 8
    assert ("/VMC/Ext/OK", [1]) in msgs and ("/VMC/Ext/T", [1.5]) in msgs
    hips = P[rig.skeleton.index("Hips")]
    np.testing.assert_allclose(root[0][1:4], [-hips[0], 0.0, hips[2]], atol=1e-6)  # mirrored ground point
    np.testing.assert_allclose(bones["Hips"][:3], [0.0, hips[1], 0.0], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(np.array(bones["LeftHand"][3:])), 1.0, atol=1e-6)
    U = rig.unity_rotations(q)
    np.testing.assert_allclose(bones["LeftLowerArm"][3:], U[rig.names.index("LeftLowerArm")], atol=1e-6)


def test_bone_map_validation(skel):
    with pytest.raises(ConfigError, match="unknown HumanBodyBones LeftElbow; valid:"):
        VmcRig(skel, {"Hips": "Hips", "LowerArm_L": "LeftElbow"})
    with pytest.raises(ConfigError, match="names joints the skeleton lacks: Pelvis"):
        VmcRig(skel, {"Pelvis": "Hips"})
    with pytest.raises(ConfigError, match="must map a joint to Hips"):
        VmcRig(skel, {"Spine": "Spine"})


def test_partial_map_still_converts(skel):
    """A map without the spine chain: bones skip unmapped joints (their rotations fold into the child)."""
    rig = VmcRig(skel, {"Hips": "Hips", "Head": "Head", "UpperArm_L": "LeftUpperArm", "LowerArm_L": "LeftLowerArm"})
    local = kin.global_to_local(skel, rig.tpose[None])[0]
    np.testing.assert_allclose(rot.quat_angle(rig.unity_rotations(local)), 0.0, atol=1e-9)


def test_unbundled_messages(rig, sample_motions):
    motion = sample_motions[0][1]
    dgrams = rig.encode(motion.local_quats()[0], motion.positions()[0] * 0.01, t=0.0, bundle=False)
    assert len(dgrams) == 21 + 3 and not any(d.startswith(b"#bundle") for d in dgrams)
    assert [parse_datagram(d)[0][0] for d in dgrams[:2]] == ["/VMC/Ext/Root/Pos", "/VMC/Ext/Bone/Pos"]
