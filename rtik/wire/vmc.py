"""The VMC protocol (OSC over UDP, receivers listen on 39539): solved poses as Unity humanoid bone rotations.

Symbols (all rotations are unit quaternions XYZW, see :mod:`rtik.geometry.rotations`):
    q_j   local rotation of skeleton joint j (from the solver), right-handed, Y up
    G_j   global rotation of joint j (product of the q along its chain)
    T_j   global rotation of joint j in the skeleton's *T-pose reference* (computed once, :func:`tpose_reference`)
    N_j   = G_j T_j^-1: the joint's rotation away from the T-pose, in world axes
    U_b   = N_p^-1 N_b: what a Unity humanoid bone b (parent bone p) receives as its local rotation

Why: a Unity humanoid's normalised bones have identity rotation in the T-pose, with every bone frame aligned to
the world, so a bone's local rotation is the *change from the T-pose* relative to its parent. Our skeleton's rest
pose (offsets along local ±X, not a T-pose) has other frames, hence the detour through ``T``. For chains
``p -> ... -> b`` of our joints, ``U_b = T_p (q_{k1} ... q_b) T_b^-1`` needs only the local rotations.

The T-pose reference faces +Z, Y up, the performer's left along +X (right-handed), arms horizontal, legs vertical,
feet 45° down from the ankle (a foot standing flat: the Bandai skeleton's mean pose measures 45°). Each bone is
swung there from a *reference pose* by the smallest rotation, so the reference pose fixes the twist about each
bone: the model's mean pose (``prior_local``, arms hanging with palms in -> T-pose palms down) when given, else
the skeleton's rest frames. Joints with two or more non-collinear mapped children (hips, chest) are fixed by
them (up: the next spine joint, left: left minus right child).

Handedness, at the very end: rtik is right-handed, Unity left-handed, both Y up and Z forward: positions
``(x, y, z) -> (-x, y, z)``, quaternions ``(x, y, z, w) -> (x, -y, -z, w)`` (the mirror ``diag(-1, 1, 1)``).

Messages per frame (bundled, split below :data:`~rtik.wire.osc.MAX_DATAGRAM` bytes):
``/VMC/Ext/Root/Pos "root" px py pz qx qy qz qw`` (the hips' ground projection, identity rotation),
``/VMC/Ext/Bone/Pos <HumanBodyBones> px py pz qx qy qz qw`` per mapped bone (local; Hips carries its height above
the root, the others their constant T-pose offset), ``/VMC/Ext/OK 1``, ``/VMC/Ext/T <seconds>``.
"""

from __future__ import annotations

import numpy as np

from rtik.errors import ConfigError
from rtik.geometry import rotations as rot
from rtik.geometry.skeleton import Skeleton
from rtik.wire.osc import UdpSender, bundles, encode_message, osc_string

#: skeleton joint name -> Unity HumanBodyBones name, for the Bandai Namco skeleton (the default model's)
BANDAI_TO_UNITY = {
    "Hips": "Hips", "Spine": "Spine", "Chest": "Chest", "Neck": "Neck", "Head": "Head",
    "Shoulder_L": "LeftShoulder", "UpperArm_L": "LeftUpperArm", "LowerArm_L": "LeftLowerArm", "Hand_L": "LeftHand",
    "Shoulder_R": "RightShoulder", "UpperArm_R": "RightUpperArm", "LowerArm_R": "RightLowerArm",
    "Hand_R": "RightHand",
    "UpperLeg_L": "LeftUpperLeg", "LowerLeg_L": "LeftLowerLeg", "Foot_L": "LeftFoot", "Toes_L": "LeftToes",
    "UpperLeg_R": "RightUpperLeg", "LowerLeg_R": "RightLowerLeg", "Foot_R": "RightFoot", "Toes_R": "RightToes",
}  # fmt: skip

_UP, _DOWN, _LEFT, _RIGHT = (0.0, 1.0, 0.0), (0.0, -1.0, 0.0), (1.0, 0.0, 0.0), (-1.0, 0.0, 0.0)
_FOOT = (0.0, -np.sqrt(0.5), np.sqrt(0.5))
#: Unity bone -> (next bone along its chain, T-pose direction of the bone towards it, rtik world axes)
TPOSE_CHAIN = {
    "Hips": ("Spine", _UP), "Spine": ("Chest", _UP), "Chest": ("Neck", _UP), "UpperChest": ("Neck", _UP),
    "Neck": ("Head", _UP),
    "LeftShoulder": ("LeftUpperArm", _LEFT), "LeftUpperArm": ("LeftLowerArm", _LEFT),
    "LeftLowerArm": ("LeftHand", _LEFT),
    "RightShoulder": ("RightUpperArm", _RIGHT), "RightUpperArm": ("RightLowerArm", _RIGHT),
    "RightLowerArm": ("RightHand", _RIGHT),
    "LeftUpperLeg": ("LeftLowerLeg", _DOWN), "LeftLowerLeg": ("LeftFoot", _DOWN), "LeftFoot": ("LeftToes", _FOOT),
    "RightUpperLeg": ("RightLowerLeg", _DOWN), "RightLowerLeg": ("RightFoot", _DOWN),
    "RightFoot": ("RightToes", _FOOT),
}  # fmt: skip
HUMAN_BONES = frozenset(TPOSE_CHAIN) | {"Head", "LeftHand", "RightHand", "LeftToes", "RightToes", "Jaw"}


def to_unity_position(p) -> np.ndarray:
    """``(..., 3)`` right-handed Y-up -> Unity left-handed Y-up (negate X)."""
    out = np.array(p, dtype=np.float64)
    out[..., 0] *= -1.0
    return out


def to_unity_quat(q) -> np.ndarray:
    """``(..., 4)`` XYZW right-handed -> Unity left-handed: ``(x, -y, -z, w)``."""
    out = np.array(q, dtype=np.float64)
    out[..., 1:3] *= -1.0
    return out


def _qmul(a, b) -> np.ndarray:
    """Product of two single quaternions ``(4,)`` XYZW (the per-frame hot path; :func:`rtik.geometry.rotations.quat_mul`
    is the batched reference)."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ])  # fmt: skip


def _frame_from(a, b) -> np.ndarray:
    """Orthonormal ``(3, 3)`` columns ``[a, b', a x b']`` with ``b'`` = ``b`` made orthogonal to ``a``."""
    a = np.asarray(a, float) / np.linalg.norm(a)
    b = np.asarray(b, float) - np.dot(b, a) * a
    b = b / np.linalg.norm(b)
    return np.stack([a, b, np.cross(a, b)], axis=1)


def tpose_reference(skel: Skeleton, bone_map: dict, reference_local=None) -> np.ndarray:
    """Global rotations ``(J, 4)`` of every joint in the T-pose reference (see the module docstring).

    Args:
        skel: the output skeleton.
        bone_map: skeleton joint name -> Unity HumanBodyBones name.
        reference_local: ``(J, 4)`` local rotations of the reference pose that fixes twist, or ``None`` (rest).
    """
    J = len(skel)
    ref = rot.quat_identity((J,)) if reference_local is None else rot.quat_normalize(reference_local)
    unity_to_joint = {u: skel.index(n) for n, u in bone_map.items()}
    T = np.empty((J, 4))
    for j in range(J):
        p = skel.parents[j]
        start = ref[j] if p < 0 else rot.quat_mul(T[p], ref[j])
        chain = TPOSE_CHAIN.get(bone_map.get(skel.names[j], ""))
        if chain is None or chain[0] not in unity_to_joint:
            T[j] = start  # a leaf, or a joint the humanoid does not know: keeps the reference pose
            continue
        nxt = unity_to_joint[chain[0]]
        bone = _offset_to(skel, j, nxt)  # direction to the next chain joint, in j's frame
        left = _left_vector(skel, j, bone_map, unity_to_joint)
        if left is not None and np.linalg.norm(np.cross(bone, left)) > 1e-6 * np.linalg.norm(left):
            R = _frame_from(chain[1], _LEFT) @ _frame_from(bone, left).T  # determined by its children
            T[j] = rot.matrix_to_quat(R)
        else:  # swing the reference pose's bone onto its T-pose direction
            T[j] = rot.quat_mul(rot.quat_between(rot.quat_apply(start, bone), np.array(chain[1])), start)
    return rot.quat_normalize(T)


def _offset_to(skel: Skeleton, j: int, k: int) -> np.ndarray:
    """Rest vector from joint j to its descendant k, in j's frame (offsets summed along the chain)."""
    v = np.zeros(3)
    while k != j:
        if k < 0:
            raise ConfigError(f"VMC bone map: {skel.names[k]} is not below {skel.names[j]} in the skeleton")
        v += skel.offsets[k]
        k = int(skel.parents[k])
    return v


def _left_vector(skel: Skeleton, j: int, bone_map: dict, unity_to_joint: dict):
    """Rest vector from the right to the left child chain of j (e.g. right to left hip), or None."""
    kids = {bone_map.get(skel.names[c], ""): c for c in skel.children(j)}
    for left, right in (("LeftUpperLeg", "RightUpperLeg"), ("LeftShoulder", "RightShoulder")):
        if left in kids and right in kids:
            return skel.offsets[kids[left]] - skel.offsets[kids[right]]
    return None


class VmcRig:
    """Converts solved poses of ``skel`` to VMC bone transforms (precomputes everything constant)."""

    def __init__(self, skel: Skeleton, bone_map: dict | None = None, reference_local=None):
        bone_map = dict(BANDAI_TO_UNITY if bone_map is None else bone_map)
        unknown = sorted(set(bone_map.values()) - HUMAN_BONES)
        if unknown:
            raise ConfigError(f"unknown HumanBodyBones {', '.join(unknown)}; valid: {', '.join(sorted(HUMAN_BONES))}")
        missing = [n for n in bone_map if n not in skel._index]
        if missing:
            raise ConfigError(f"VMC bone map names joints the skeleton lacks: {', '.join(missing)}")
        if "Hips" not in bone_map.values():
            raise ConfigError("VMC bone map must map a joint to Hips")
        self.skeleton = skel
        self.bone_map = bone_map
        self.joints = skel.indices(list(bone_map))  # (B,) skeleton index of each bone
        self.names = [bone_map[skel.names[j]] for j in self.joints]
        self.tpose = tpose_reference(skel, bone_map, reference_local)  # (J, 4)
        mapped = set(int(j) for j in self.joints)
        chains, parent_T, tpos = [], [], self._tpose_positions()
        self.local_pos = np.zeros((len(self.joints), 3))
        for b, j in enumerate(self.joints):
            chain, k = [int(j)], int(skel.parents[j])
            while k >= 0 and k not in mapped:
                chain.insert(0, k)
                k = int(skel.parents[k])
            chains.append(chain)
            parent_T.append(self.tpose[k] if k >= 0 else rot.quat_identity())
            self.local_pos[b] = to_unity_position(tpos[j] - (tpos[k] if k >= 0 else 0.0))
        self.hips = self.names.index("Hips")
        self._chains = chains
        self._first = np.array([c[0] for c in chains])  # (B,) first joint below the parent bone
        self._long = [(b, c[1:]) for b, c in enumerate(chains) if len(c) > 1]  # chains through unmapped joints
        # U = T_p (x) rel (x) T_b^-1 is linear in rel: one (4, 4) matrix per bone, built from the quaternion product
        eye = np.eye(4)
        left = np.stack([rot.quat_mul(np.array(parent_T), np.broadcast_to(e, (len(chains), 4))) for e in eye], -1)
        tinv = rot.quat_conj(self.tpose[self.joints])
        right = np.stack([rot.quat_mul(np.broadcast_to(e, (len(chains), 4)), tinv) for e in eye], -1)
        self._M = left @ right  # (B, 4, 4)
        self._prefix = [osc_string("/VMC/Ext/Bone/Pos") + osc_string(",sfffffff") + osc_string(n) for n in self.names]

    def _tpose_positions(self) -> np.ndarray:
        """Joint positions ``(J, 3)`` of the T-pose reference (rest offsets rotated by the parents' T)."""
        skel, P = self.skeleton, np.zeros((len(self.skeleton), 3))
        for j in range(1, len(skel)):
            p = skel.parents[j]
            P[j] = P[p] + rot.quat_apply(self.tpose[p], skel.offsets[j])
        return P

    def unity_rotations(self, local_quats) -> np.ndarray:
        """Unity local rotations ``(B, 4)`` XYZW (left-handed) of the mapped bones from ``local_quats (J, 4)``."""
        q = np.asarray(local_quats, dtype=np.float64)
        rel = q[self._first]  # (B, 4) product of our locals from below p down to b
        for b, rest in self._long:
            for k in rest:
                rel[b] = _qmul(rel[b], q[k])
        U = np.einsum("bij,bj->bi", self._M, rel)
        U *= np.where(U[:, 3:] < 0.0, -1.0, 1.0)  # canonical: w >= 0
        return to_unity_quat(U)

    def transforms(self, local_quats, positions) -> tuple[np.ndarray, np.ndarray]:
        """``(root (7,), bones (B, 7))`` as VMC sends them: Unity-space position then quaternion XYZW.

        ``positions (J, 3)`` are the solved global joint positions (metres); only the hips' is used."""
        bones = np.empty((len(self.joints), 7))
        bones[:, :3] = self.local_pos
        bones[:, 3:] = self.unity_rotations(local_quats)
        hips = to_unity_position(np.asarray(positions, dtype=np.float64)[self.joints[self.hips]])
        root = np.array([hips[0], 0.0, hips[2], 0.0, 0.0, 0.0, 1.0])
        bones[self.hips, :3] = (0.0, hips[1], 0.0)
        return root, bones

    def encode(self, local_quats, positions, t: float, bundle: bool = True) -> list[bytes]:
        """The datagrams of one frame: OSC bundles, or one message per datagram with ``bundle=False``."""
        root, bones = self.transforms(local_quats, positions)
        raw = bones.astype(">f4").tobytes()
        msgs = [encode_message("/VMC/Ext/Root/Pos", "sfffffff", "root", *root.tolist())]
        msgs += [pre + raw[28 * b : 28 * b + 28] for b, pre in enumerate(self._prefix)]
        msgs.append(encode_message("/VMC/Ext/OK", "i", 1))
        msgs.append(encode_message("/VMC/Ext/T", "f", float(t)))
        return bundles(msgs) if bundle else msgs


class VmcSender:
    """Sends one stream's poses to a VMC receiver (EVMC4U, VMC4UE, VSeeFace, ...)."""

    def __init__(self, rig: VmcRig, host: str = "127.0.0.1", port: int = 39539, bundle: bool = True):
        self.rig = rig
        self.bundle = bundle
        self.udp = UdpSender(host, port)

    def send(self, local_quats, positions, t: float) -> None:
        for d in self.rig.encode(local_quats, positions, t, self.bundle):
            self.udp.send(d)

    def close(self) -> None:
        self.udp.close()
