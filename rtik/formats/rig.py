"""Any BVH rig onto one body: the model's 22 joints, one rest pose, one meaning of twist.

Rigs differ in joint names, in how many segments the spine has, in extra joints (fingers, twist bones, ``*End``,
``*Dummy``, ``LHipJoint``), in their axes (Y or Z up) and in what their zero rotation means (a T-pose, arms
down, or every bone along +X). :class:`Rig` maps one rig onto the **body**:

- **Joints.** Found by name *and* structure: the head, the hands (first ``*hand``/``*wrist`` of a side) and the
  feet (first ``*foot``/``*ankle``) by name; the hips are where the legs and the head meet; the arms branch from
  the chest; the rest are counted along the chains (zero-length joints such as ``*Dummy`` merge with their
  neighbour). Body joints a rig lacks (a neck, a lower spine, a clavicle) are *virtual*: placed along their
  chain at the body's proportions and turning with their parent (:attr:`Rig.present` is False for them).
- **Rest pose.** The body's rest (every local rotation identity) is a T-pose, Y up, facing +Z, the performer's
  left at +X; every joint's frame is then the world's. A rig is brought into that T-pose from its own zero pose
  by turning each bone, parents first, the shortest way onto its T-pose direction (:data:`DIRECTION`); the
  hips and chest turn so that their up (to the spine, to the neck) is +Y and their left-right axis (between
  the thighs, between the upper arms) is +X. The body's rest offsets are the rig's joint positions in that
  T-pose: bone lengths *and* where the children of the hips and chest sit.
- **Rotations.** Per frame, the hips' and chest's orientation comes from positions alone (up and left-right
  axes, as in the rest pose). A limb joint's bone direction comes from positions and its twist from the rig's
  own rotation of that bone; a leaf's (head, hands, toes) whole orientation comes from the rig's rotation.
- **Twist.** For a rig whose zero pose is a T-pose, twist means what it means in that T-pose. Where a rig had to
  be turned into the T-pose (Bandai's every-bone-along-+X, arms hanging down), the shortest turn fixes the
  bone's direction but not its twist, so :meth:`Rig.fit` aligns the twist from the rig's motion: the mean twist
  of each such joint (and the mean orientation of each such leaf) over the clips given is set to the body's
  reference (:data:`REFERENCE_TWIST`; zero unless measured).
- **Leaves.** A leaf has no child joint to show where it points, and rigs disagree about their leaves' zero pose
  (a toe 37° down in one rig is flat in another). Where a rig has a tip for a leaf (a head top, a middle-finger
  tip, a toe tip: an End Site with a length or a tip joint), :meth:`Rig.fit` turns the leaf's rest frame the
  shortest way so that the tip points along its canonical direction (:mod:`rtik.formats.markers`): head up,
  hands out, toes forward; a leaf without a tip keeps its rig's (or the fitted mean's) frame.

:meth:`Rig.to_body` and :meth:`Rig.from_body` convert motion both ways; a rig the body covers one-to-one comes
back exactly. Joints the body does not model keep their rest rotation (relative to the T-pose) on the way back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from rtik.errors import InputError
from rtik.geometry import rotations as rot
from rtik.geometry.kinematics import forward_kinematics, mean_local_rotations
from rtik.geometry.skeleton import Skeleton

#: the version of what the mapping makes of a rig; bump it when a change alters the body rotations or offsets of
#: any rig (caches of mapped motion, such as train.corpus's, are keyed by it)
MAPPING_VERSION = 4


class RigError(InputError):
    """A rig that cannot be mapped onto the body (no hips, a missing limb, two joints claiming one)."""


_SIDES = ("L", "R")
BODY_NAMES = (
    "joint_Root", "Hips", "Spine", "Chest", "Neck", "Head",
    "Shoulder_L", "UpperArm_L", "LowerArm_L", "Hand_L", "Shoulder_R", "UpperArm_R", "LowerArm_R", "Hand_R",
    "UpperLeg_L", "LowerLeg_L", "Foot_L", "Toes_L", "UpperLeg_R", "LowerLeg_R", "Foot_R", "Toes_R",
)  # fmt: skip
BODY_PARENTS = np.array([-1, 0, 1, 2, 3, 4, 3, 6, 7, 8, 3, 10, 11, 12, 1, 14, 15, 16, 1, 18, 19, 20])
_X, _Y, _Z = np.eye(3)
#: T-pose direction of each body joint's bone (to its primary child; a leaf's points along its parent's)
DIRECTION = {
    "Hips": _Y, "Spine": _Y, "Chest": _Y, "Neck": _Y, "Head": _Y,
    "Shoulder_L": _X, "UpperArm_L": _X, "LowerArm_L": _X, "Hand_L": _X,
    "Shoulder_R": -_X, "UpperArm_R": -_X, "LowerArm_R": -_X, "Hand_R": -_X,
    "UpperLeg_L": -_Y, "LowerLeg_L": -_Y, "Foot_L": _Z, "Toes_L": _Z,
    "UpperLeg_R": -_Y, "LowerLeg_R": -_Y, "Foot_R": _Z, "Toes_R": _Z,
}  # fmt: skip
#: the child whose direction a joint's bone is
PRIMARY = {
    "Hips": "Spine", "Spine": "Chest", "Chest": "Neck", "Neck": "Head",
    **{f"{a}_{s}": f"{b}_{s}" for s in _SIDES for a, b in (
        ("Shoulder", "UpperArm"), ("UpperArm", "LowerArm"), ("LowerArm", "Hand"),
        ("UpperLeg", "LowerLeg"), ("LowerLeg", "Foot"), ("Foot", "Toes"))},
}  # fmt: skip
#: joints whose whole orientation positions fix: (up child, left child, right child)
FRAMED = {"Hips": ("Spine", "UpperLeg_L", "UpperLeg_R"), "Chest": ("Neck", "UpperArm_L", "UpperArm_R")}
LEAVES = ("Head", "Hand_L", "Hand_R", "Toes_L", "Toes_R")
#: where a virtual joint sits on the chord from its parent to its first present descendant (body proportions)
_VIRTUAL_AT = {"Spine": 0.64, "Neck": 0.72, "Shoulder_L": 0.35, "Shoulder_R": 0.35}
#: mean local twist (radians) of each limb joint over natural motion, the target of :meth:`Rig.fit`
REFERENCE_TWIST: dict[str, float] = {}
#: the marker whose rig tip sets each leaf's rest frame (:meth:`Rig.fit`)
TIP_OF = {"Head": "HeadTop", "Hand_L": "HandTip_L", "Hand_R": "HandTip_R", "Toes_L": "ToeTip_L", "Toes_R": "ToeTip_R"}
_POSED_DEG = 25.0  # a bone turned more than this into the T-pose has no twist convention of its own

_WORDS = {  # normalised name fragments, per body part
    "hand": ("hand", "wrist"),
    "foot": ("foot", "ankle"),
    "toe": ("toe", "toes", "toebase", "ball"),
    "neck": ("neck",),
}
_ASF = "femur|tibia|foot|toes|clavicle|humerus|radius|wrist|hand|thigh|shin|hip|knee|ankle|toe|collar|shoulder"
_ASF += "|elbow|fingers|thumb|uparm|lowarm|forearm|upleg|leg|arm"


def _norm(name: str) -> str:
    return re.sub(r"[\s_.\-]", "", name.split(":")[-1].split("|")[-1]).lower()


def side_of(name: str) -> str | None:
    """``"L"``, ``"R"`` or None for a joint name (``LeftArm``, ``Hand_L``, ``l_hand``, ``lhumerus`` ...)."""
    raw = name.split(":")[-1].split("|")[-1]
    n = _norm(raw)
    for s, word in (("L", "left"), ("R", "right")):
        if n.startswith(word) or n.endswith(word):
            return s
        if re.search(rf"(^|[_.\-]){s}([_.\-]|$)", raw, re.IGNORECASE) and not raw.lower().startswith("lower"):
            return s
        if re.fullmatch(rf"{s.lower()}({_ASF})\d*", n):
            return s
    return None


def _has(name: str, part: str) -> bool:
    n = _norm(name)
    if part == "head":
        return n == "head"
    return any(w in n for w in _WORDS[part]) and "end" not in n and "dummy" not in n


@dataclass(eq=False)
class Rig:
    """One rig mapped onto the body. Build with :meth:`from_skeleton` (or :meth:`from_motion`).

    Fields:
        skeleton: the rig, file units.
        mapping: body joint -> rig joint, for the joints the rig has.
        present: ``(22,)`` bool, body joints the rig has (the others are virtual).
        up: the rig's up axis in its own world, e.g. ``"+Y"``.
        body: the body :class:`Skeleton` with this rig's T-pose rest offsets, file units.
    """

    skeleton: Skeleton
    mapping: dict
    present: np.ndarray
    up: str
    body: Skeleton
    _A: np.ndarray = field(repr=False)  # (3, 3) rig world -> body world
    _ref: dict = field(repr=False)  # body joint -> rig joint whose frame turns its bone (or the leaf)
    _W: np.ndarray = field(repr=False)  # (Jr, 3, 3) rig globals in the T-pose, body world axes
    _v: dict = field(repr=False)  # limb joint -> twist reference in its rig joint's frame
    _C: dict = field(repr=False)  # leaf -> rest offset: body frame = rig frame @ C
    posed: dict = field(default_factory=dict)  # body joint -> degrees turned into the T-pose
    tipped: dict = field(default_factory=dict)  # leaf -> degrees :meth:`fit` turned it to put its tip in place

    # ------------------------------------------------------------------------------------------- building
    @classmethod
    def from_skeleton(cls, skel: Skeleton, up: str | None = None) -> Rig:
        """Map ``skel`` onto the body. ``up``: the rig world's up axis (``"+Y"``, ``"+Z"``, ...); by default
        the zero pose's if it stands upright (legs below the head), else ``+Y``. Raises :class:`RigError`."""
        mapping, present = _map_joints(skel)
        P0, _ = forward_kinematics(skel, rot.quat_identity((1, len(skel))))
        P0 = P0[0]
        if up is None:
            up = _upright_axis(P0, skel, mapping) or "+Y"
        A = axis_matrix(up)
        return cls._build(skel, mapping, present, up, A, P0 @ A.T)

    @classmethod
    def from_motion(cls, motion) -> Rig:
        """The rig of a :class:`rtik.formats.bvh.Motion`: :meth:`from_skeleton` on :func:`clip_arrays`'s
        skeleton, with the up axis read from the motion (the mean hips-to-head direction), then :meth:`fit` on
        it. Convert the same motion with ``rig.to_body(*clip_arrays(motion)[1:])``."""
        skel, local_quats, root_pos = clip_arrays(motion)
        mapping, _ = _map_joints(skel)
        P0, _ = forward_kinematics(skel, rot.quat_identity((1, len(skel))))
        rig = cls.from_skeleton(skel)
        if _upright_axis(P0[0], skel, mapping) is None:  # a zero pose that does not stand: ask the motion
            up = rig.motion_up(local_quats, root_pos)
            if up != rig.up:
                rig = cls.from_skeleton(skel, up=up)
        return rig.fit([(local_quats, root_pos)])

    @classmethod
    def _build(cls, skel, mapping, present, up, A, P0) -> Rig:
        Jr = len(skel)
        kids = [skel.children(j) for j in range(Jr)]
        W = np.broadcast_to(np.eye(3), (Jr, 3, 3)).copy()
        P = P0.copy()
        ref, posed = {}, {}

        def subtree(r):
            out, stack = [], [r]
            while stack:
                k = stack.pop()
                out.append(k)
                stack.extend(kids[k])
            return np.array(out)

        def turn(r, Q):
            idx = subtree(r)
            P[idx] = P[r] + (P[idx] - P[r]) @ Q.T
            W[idx] = Q @ W[idx]

        for b in BODY_NAMES[1:]:
            if b not in mapping:
                continue
            r = mapping[b]
            if b in FRAMED:
                upward, left = _framed_vectors(b, P, mapping)
                across = left - (left @ upward) / (upward @ upward) * upward
                if np.linalg.norm(across) > 0.2 * np.linalg.norm(upward):
                    R = _frame(upward, left)
                else:  # no left-right extent in this zero pose (every bone along one axis): turn the up only
                    R = rot.quat_to_matrix(rot.quat_between(_Y, upward))
                turn(r, R.T)
                posed[b] = float(np.degrees(rot.matrix_angle(np.eye(3), R)))
                ref[b] = r
            elif b in PRIMARY and PRIMARY[b] in mapping:
                c = mapping[PRIMARY[b]]
                t = skel.parents[c]  # the rig joint that turns the bone onto the child
                ref[b] = t
                bone = P[c] - P[r]
                Q = rot.quat_to_matrix(rot.quat_between(bone, DIRECTION[b]))
                turn(r, Q)
                posed[b] = float(np.degrees(rot.matrix_angle(np.eye(3), W[t])))
            else:  # a leaf, or a limb whose child is virtual: orientation from its own rig joint
                ref[b] = r
                posed[b] = float(np.degrees(rot.matrix_angle(np.eye(3), W[r])))
        v = {b: W[ref[b]].T @ _perp(DIRECTION[b]) for b in ref if b not in FRAMED and _is_limb(b, mapping)}
        C = {b: W[ref[b]].T for b in ref if b in FRAMED or not _is_limb(b, mapping)}
        body = _body_skeleton(P, mapping, skel)
        return cls(skel, dict(mapping), present, up, body, A, ref, W, v, C, posed)

    # ------------------------------------------------------------------------------------------- motion
    def motion_up(self, local_quats, root_pos) -> str:
        """The rig world's up axis as the motion shows it: the mean direction from the hips to the head."""
        return self.up_of(self._rig_positions(local_quats, root_pos))

    def up_of(self, positions) -> str:
        """The up axis of rig joint ``positions (F, Jr, 3)`` (the mean direction from the hips to the head)."""
        P = np.asarray(positions, dtype=np.float64)
        d = np.nanmean(P[:, self.mapping["Head"]] - P[:, self.mapping["Hips"]], axis=0)
        k = int(np.argmax(np.abs(d)))
        return ("+" if d[k] >= 0 else "-") + "XYZ"[k]

    def _rig_positions(self, local_quats, root_pos, want_globals=False):
        q = np.asarray(local_quats, dtype=np.float64)
        root = None if root_pos is None else np.asarray(root_pos, dtype=np.float64)
        pos, glob = forward_kinematics(self.skeleton, q, root)
        return (pos, glob) if want_globals else pos

    def body_globals(self, local_quats, root_pos) -> tuple[np.ndarray, np.ndarray]:
        """Body global rotation matrices ``(F, 22, 3, 3)`` and positions of the mapped joints ``(F, 22, 3)``
        (body world axes, file units; virtual joints' positions are NaN)."""
        P, G = self._rig_positions(local_quats, root_pos, want_globals=True)
        A = self._A
        P = P @ A.T
        G = A @ rot.quat_to_matrix(G) @ A.T  # rig globals in body world axes
        F = P.shape[0]
        out = np.broadcast_to(np.eye(3), (F, len(BODY_NAMES), 3, 3)).copy()
        pos = np.full((F, len(BODY_NAMES), 3), np.nan)
        m = self.mapping
        for i, b in enumerate(BODY_NAMES):
            if b in m:
                pos[:, i] = P[:, m[b]]
        for i, b in enumerate(BODY_NAMES[1:], start=1):
            if b not in m:
                out[:, i] = out[:, BODY_PARENTS[i]]  # virtual: turns with its parent
            elif b in self._v:
                bone = P[:, m[PRIMARY[b]]] - P[:, m[b]]
                u = G[:, self._ref[b]] @ self._v[b]
                out[:, i] = _frame_from(bone, u) @ _frame_from(DIRECTION[b], _perp(DIRECTION[b])).T
            else:
                out[:, i] = G[:, self._ref[b]] @ self._C[b]
        return out, pos

    def tip_offsets(self, local_quats, root_pos, max_spread: float = 0.1) -> dict[str, np.ndarray]:
        """Where this rig's head, hand and toe tips (End Sites with a length, finger-tip joints: the leaf markers
        of :mod:`rtik.formats.markers` it has, found by name) sit in the frames of their body joints: ``{marker:
        offset (3,)}`` in file units, the median over the motion ``(F, Jr, 4)``, ``(F, 3)``. A tip that does not
        stay put in its joint's frame (its spread over the motion above ``max_spread`` of its length, e.g. a finger
        tip on a moving finger) is left out."""
        from rtik.formats import markers
        from rtik.formats.layouts import from_names
        from rtik.formats.points import end_sites

        P, Gq = self._rig_positions(local_quats, root_pos, want_globals=True)
        E, names = end_sites(self.skeleton, P, Gq)
        rows = np.concatenate([P, E], axis=1) @ self._A.T  # body world axes
        G, pos = self.body_globals(local_quats, root_pos)
        col = {n: i for i, n in enumerate(tuple(self.skeleton.names) + names)}
        out = {}
        for m, src in from_names(tuple(col), markers.NAMES).rows.items():
            j = BODY_NAMES.index(markers.BY_NAME[m].parent)
            if BODY_NAMES[j] not in self.mapping:
                continue
            d = np.einsum("fji,fj->fi", G[:, j], rows[:, col[src[0][0]]] - pos[:, j])  # G^T (tip - joint)
            off = np.median(d, axis=0)
            length = float(np.linalg.norm(off))
            spread = float(np.median(np.linalg.norm(d - off, axis=-1)))
            if length > 0 and spread <= max_spread * length:
                out[m] = off
        return out

    def to_body(self, local_quats, root_pos) -> tuple[np.ndarray, np.ndarray]:
        """Rig motion ``(F, Jr, 4)`` XYZW local rotations and ``(F, 3)`` root translation (file units) -> body
        local rotations ``(F, 22, 4)`` and the hips' position ``(F, 3)`` (body world: Y up, file units)."""
        G, pos = self.body_globals(local_quats, root_pos)
        L = np.empty_like(G)
        L[:, 0] = np.eye(3)
        for i in range(1, len(BODY_NAMES)):
            L[:, i] = np.swapaxes(G[:, BODY_PARENTS[i]], -1, -2) @ G[:, i]
        return rot.quat_canonical(rot.matrix_to_quat(L)), pos[:, 1]

    def from_body(self, body_quats, hips_pos) -> tuple[np.ndarray, np.ndarray]:
        """Body motion -> this rig's local rotations ``(F, Jr, 4)`` and root translation ``(F, 3)``, file units.
        Mapped joints take the body's orientation; joints the body does not model keep their T-pose-relative
        rest rotation (they turn with their parent as in the T-pose)."""
        skel, A = self.skeleton, self._A
        q = np.asarray(body_quats, dtype=np.float64)
        F = q.shape[0]
        _, Gq = forward_kinematics(self.body, q, np.zeros((F, 3)))
        Gb = rot.quat_to_matrix(Gq)  # (F, 22, 3, 3) body globals
        target = {}  # rig joint -> wanted global (body world axes)
        for i, b in enumerate(BODY_NAMES):
            if b not in self.mapping or b not in self._ref:
                continue
            t, r = self._ref[b], self.mapping[b]
            if b in self._C and b not in FRAMED:
                target[t] = Gb[:, i] @ self._C[b].T
            else:  # a limb from its joint to the one turning its bone, or the hips/chest: rigid as in the T-pose
                # body = rig joint @ K for a limb (K: the T-pose turn and the fitted twist), rig @ W.T otherwise
                Gt = Gb[:, i] @ self._K(b).T
                chain = _path(skel, t)
                for k in chain[chain.index(r) :]:
                    target[k] = Gt @ self._W[t].T @ self._W[k]
        Jr = len(skel)
        Gr = np.empty((F, Jr, 3, 3))
        L = np.empty((F, Jr, 3, 3))
        for r in range(Jr):
            p = skel.parents[r]
            if r in target:
                Gr[:, r] = target[r]
            else:  # T-pose relative rest: keep the T-pose's turn from the parent
                Gp = Gr[:, p] if p >= 0 else np.eye(3)
                Wp = self._W[p] if p >= 0 else np.eye(3)
                Gr[:, r] = Gp @ Wp.T @ self._W[r]
            Gp = Gr[:, p] if p >= 0 else np.broadcast_to(np.eye(3), (F, 3, 3))
            L[:, r] = np.swapaxes(Gp, -1, -2) @ Gr[:, r]
        L = A.T @ L @ A  # back to the rig's world axes
        local = rot.quat_canonical(rot.matrix_to_quat(L))
        hips = np.asarray(hips_pos, dtype=np.float64) @ A  # body world -> rig world
        # the rig root's translation that puts the hips where the body has them
        pos, _ = forward_kinematics(skel, local, np.zeros((F, 3)))
        root = hips - pos[:, self.mapping["Hips"]]
        return local, root

    def _K(self, b: str) -> np.ndarray:
        """The constant turn from the rig joint's frame to the body frame of joint ``b`` on a rigid chain."""
        if b not in self._v:
            return self._W[self._ref[b]].T
        W, d = self._W[self._ref[b]], DIRECTION[b]
        return _frame_from(W.T @ d, self._v[b]) @ _frame_from(d, _perp(d)).T

    # ---------------------------------------------------------------------------------------------- fit
    def fit(self, clips, reference: dict | None = None) -> Rig:
        """Align the twist of every joint that had to be turned into the T-pose from ``clips``
        (``[(local_quats, root_pos), ...]`` of this rig): its mean twist (a leaf's mean orientation) relative to
        its parent becomes ``reference`` (default :data:`REFERENCE_TWIST`; zero); then every leaf with a tip in this
        rig is turned onto its tip (:meth:`_align_tips`). Returns ``self``."""
        reference = REFERENCE_TWIST if reference is None else reference
        for i, b in enumerate(BODY_NAMES[1:], start=1):
            if b not in self._ref or b in FRAMED or self.posed.get(b, 0.0) <= _POSED_DEG:
                continue
            Ls = []
            for q, root in clips:
                body, _ = self.to_body(q, root)
                Ls.append(body[:, i])
            Lq = np.concatenate(Ls, axis=0)
            if b in self._v:
                d = DIRECTION[b]
                _, tw = rot.swing_twist(Lq, d)
                ang = 2 * np.arctan2(tw[:, :3] @ d, tw[:, 3])
                mean = float(np.angle(np.mean(np.exp(1j * ang))))
                phi = reference.get(b, 0.0) - mean
                axis = self._W[self._ref[b]].T @ d  # the bone in its rig joint's frame
                Rz = rot.quat_to_matrix(rot.axis_angle_to_quat(axis * phi))
                self._v[b] = Rz @ self._v[b]
            else:
                M = rot.quat_to_matrix(mean_local_rotations(Lq[:, None])[0])
                self._C[b] = self._C[b] @ M.T
        self._align_tips(clips)
        return self

    def _align_tips(self, clips) -> None:
        """Turn each leaf's rest frame the shortest way so that its rig's tip (a head top, a middle-finger tip, a
        toe tip: :data:`TIP_OF`), where the rig has one, points along that marker's canonical direction; the turn
        about the tip keeps what the rig (or :meth:`fit`'s mean) says. A leaf's rotation then means the same
        physical thing in every rig with tips, whatever its zero pose made of the leaf."""
        from rtik.formats import markers

        q = np.concatenate([np.asarray(c[0], dtype=np.float64) for c in clips], axis=0)
        roots = [np.zeros((len(c[0]), 3)) if c[1] is None else np.asarray(c[1], dtype=np.float64) for c in clips]
        tips = self.tip_offsets(q, np.concatenate(roots, axis=0))
        for b, m in TIP_OF.items():
            if b not in self._C or b in FRAMED or m not in tips:
                continue
            R = rot.quat_to_matrix(rot.quat_between(tips[m], markers.BY_NAME[m].offset))
            self._C[b] = self._C[b] @ R.T
            self.tipped[b] = float(np.degrees(rot.matrix_angle(np.eye(3), R)))

    def layout(self):
        """The :class:`~rtik.formats.layouts.Layout` of this rig's joints feeding the body's joints (the rig's
        joint order; virtual body joints are missing)."""
        from rtik.formats.layouts import Layout

        names = self.skeleton.names
        rows = {b: ((names[r], 1.0),) for b, r in self.mapping.items()}
        return Layout("rig", tuple(names), rows)

    def describe(self) -> list[str]:
        """One line per body joint: the rig joint it comes from, or how it is made."""
        out = []
        for b in BODY_NAMES[1:]:
            if b in self.mapping:
                out.append(f"{b} <- {self.skeleton.names[self.mapping[b]]}")
            else:
                out.append(f"{b} <- virtual (on its chain, turns with its parent)")
        return out


def clip_arrays(motion) -> tuple[Skeleton, np.ndarray, np.ndarray]:
    """``(skeleton, local_quats (F, J, 4), root_pos (F, 3))`` of a BVH motion. Joints below the root that carry
    position channels (some exporters write every joint's translation) get their median translation as a fixed
    offset, so the skeleton's offsets are the bones the motion really has; channels that hold the joint's world
    position instead (near the root's, as some CMU conversions write them) are ignored for the OFFSET."""
    skel = motion.skeleton
    local_pos = motion.local_positions()
    root = skel.motion_root()
    moving = [j for j in range(len(skel)) if j != root and skel.has_position_channels(j)]
    if moving:
        offsets = skel.offsets.copy()
        for j in moving:
            t = np.median(local_pos[:, j], axis=0)
            # some exporters write world positions into these channels: close to the root's own, not a bone
            if np.linalg.norm(t - np.median(local_pos[:, root], axis=0)) > 0.5 * np.linalg.norm(t):
                offsets[j] = t
        skel = skel.with_offsets(offsets)
    return skel, motion.local_quats(), local_pos[:, root]


# -------------------------------------------------------------------------------------------- mapping
def _map_joints(skel: Skeleton) -> tuple[dict, np.ndarray]:
    names = skel.names
    J = len(skel)
    P0, _ = forward_kinematics(skel, rot.quat_identity((1, J)))
    P0 = P0[0]
    scale = max(float(np.ptp(P0, axis=0).max()), 1e-9)
    found = {}

    def first(pred, within=None):
        for j in range(J) if within is None else within:
            if pred(names[j]):
                return j
        return None

    found["Head"] = first(lambda n: _has(n, "head"))
    if found["Head"] is None:  # a rig that ends at the neck: its top neck joint stands for the head
        necks = [j for j in range(J) if _has(names[j], "neck") and not skel.children(j)]
        found["Head"] = necks[0] if necks else None
    for s in _SIDES:
        found[f"Hand_{s}"] = first(lambda n, s=s: side_of(n) == s and _has(n, "hand"))
        found[f"Foot_{s}"] = first(lambda n, s=s: side_of(n) == s and _has(n, "foot"))
    missing = [b for b, j in found.items() if j is None]
    if missing:
        raise RigError(
            f"cannot map this rig onto the body: no joint found for {', '.join(missing)} "
            f"(need a head, both hands or wrists and both feet or ankles, named e.g. Head, LeftHand, "
            f"RightFoot); its joints: {', '.join(names)}"
        )
    path = {j: _path(skel, j) for j in range(J)}
    lca = _lca(path[found["Foot_L"]], path[found["Foot_R"]])
    hips = _lca(path[lca], path[found["Head"]])
    chest_branch = _lca(path[found["Hand_L"]], path[found["Hand_R"]])
    m = {"Hips": hips}

    def groups(a, b):
        """Joints strictly after ``a`` up to ``b`` on the path, merged where they sit on one point: the last of
        each run (the one that turns the bone leaving it)."""
        p = path[b]
        if a not in p:
            raise RigError(f"{names[b]} is not below {names[a]} in this rig")
        seq = p[p.index(a) :]
        runs = [[seq[0]]]
        for k in seq[1:]:
            if np.linalg.norm(P0[k] - P0[runs[-1][-1]]) < 1e-6 * scale:
                runs[-1].append(k)
            else:
                runs.append([k])
        reps = []
        for run in runs:  # the last of each run; a branch point ends its run (what follows turns a new bone)
            cut = next((i for i, k in enumerate(run) if k in keep), None)
            if cut is None or cut == len(run) - 1 or all("dummy" in _norm(names[k]) for k in run[cut + 1 :]):
                # a zero-length *Dummy after a branch point is no joint of its own (SNU's 26-joint rig)
                reps.append(run[-1] if cut is None else run[cut])
            else:
                reps += [run[cut], run[-1]]
        return reps  # [0]: a's run

    keep = {chest_branch, hips}

    for s in _SIDES:
        leg = groups(hips, found[f"Foot_{s}"])
        if len(leg) < 4:
            raise RigError(f"the {s} leg of this rig has fewer than thigh, shin and foot: {[names[k] for k in leg]}")
        m[f"UpperLeg_{s}"], m[f"LowerLeg_{s}"], m[f"Foot_{s}"] = leg[-3], leg[-2], leg[-1]
        foot = leg[-1]
        below = [k for k in range(foot + 1, J) if foot in path[k]]
        toe = next((k for k in below if _has(names[k], "toe")), None)
        if toe is None and below:
            toe = below[0]
        if toe is None:
            raise RigError(f"the {s} foot ({names[foot]}) has no toe joint below it")
        m[f"Toes_{s}"] = toe
        arm = groups(chest_branch, found[f"Hand_{s}"])
        if len(arm) < 4:
            raise RigError(f"the {s} arm of this rig has fewer than upper arm, forearm and hand: "
                           f"{[names[k] for k in arm]}")  # fmt: skip
        m[f"UpperArm_{s}"], m[f"LowerArm_{s}"], m[f"Hand_{s}"] = arm[-3], arm[-2], arm[-1]
        if len(arm) >= 5:
            m[f"Shoulder_{s}"] = arm[-4]
    spine = groups(hips, found["Head"])
    branch = spine.index(chest_branch) if chest_branch in spine else None
    if branch is None or branch == 0:
        raise RigError(f"the arms of this rig do not branch from its spine between {names[hips]} and the head")
    if "neck" in _norm(names[spine[branch]]) and branch >= 2:
        m["Neck"], m["Chest"] = spine[branch], spine[branch - 1]
        chest_i = branch - 1
    else:
        m["Chest"] = spine[branch]
        chest_i = branch
        if branch + 1 < len(spine) - 1:
            m["Neck"] = spine[branch + 1]
    if chest_i >= 2:
        m["Spine"] = spine[1]
    m["Head"] = spine[-1]
    claimed = {}
    for b, r in m.items():
        if r in claimed:
            raise RigError(f"rig joint {names[r]} would be both {claimed[r]} and {b}")
        claimed[r] = b
    mapping = {b: names[r] for b, r in m.items()}
    present = np.array([b in mapping for b in BODY_NAMES])
    present[0] = True
    return {b: skel.index(n) for b, n in mapping.items()}, present


def _path(skel: Skeleton, j: int) -> list[int]:
    out = []
    while j >= 0:
        out.append(j)
        j = int(skel.parents[j])
    return out[::-1]


def _lca(a: list[int], b: list[int]) -> int:
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    if k == 0:
        raise RigError("joints without a common ancestor")
    return a[k - 1]


# ------------------------------------------------------------------------------------------------ frames
def _perp(d: np.ndarray) -> np.ndarray:
    """The T-pose axis across a bone along ``d``: forward (+Z), or up (+Y) for bones along Z."""
    return _Y.copy() if abs(d[2]) > 0.5 else _Z.copy()


def _is_limb(b: str, mapping: dict) -> bool:
    return b in PRIMARY and PRIMARY[b] in mapping and b not in FRAMED


def _frame_from(a, u) -> np.ndarray:
    """Rotation whose first column is ``a`` and whose second lies in the plane of ``a`` and ``u`` (``(..., 3)``)."""
    a = np.asarray(a, dtype=np.float64)
    u = np.asarray(u, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    u = u - np.sum(u * a, axis=-1, keepdims=True) * a
    u = u / np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), 1e-12)
    return np.stack([a, u, np.cross(a, u)], axis=-1)


def _frame(up, left) -> np.ndarray:
    """The rotation taking +Y to ``up`` and +X to ``left`` made orthogonal (hips, chest)."""
    R = _frame_from(up, left)  # columns: up, left', up x left'
    return np.stack([R[..., 1], R[..., 0], -R[..., 2]], axis=-1)


def _framed_vectors(b, P, mapping):
    """The up and left-right vectors of the hips or chest in rig positions ``P (Jr, 3)``."""
    up_child, left, right = FRAMED[b]

    def take(k):
        return P[mapping[k]]

    origin = take(b)
    chain = [up_child] + {"Spine": ["Chest", "Neck", "Head"], "Neck": ["Head"]}.get(up_child, [])
    ups = [take(k) - origin for k in chain if k in mapping]
    # the first joint up the chain that is away from this one (a neck may sit where the chest is)
    upward = next((u for u in ups if np.linalg.norm(u) > 1e-9), ups[-1])
    return upward, take(left) - take(right)


def axis_matrix(up: str) -> np.ndarray:
    """The rotation taking the rig world's ``up`` axis to +Y (the shortest turn)."""
    m = re.fullmatch(r"([+-])([XYZ])", up.strip().upper())
    if not m:
        raise RigError(f"up axis must be one of +X -X +Y -Y +Z -Z, got {up!r}")
    v = np.zeros(3)
    v["XYZ".index(m.group(2))] = 1.0 if m.group(1) == "+" else -1.0
    return rot.quat_to_matrix(rot.quat_between(v, _Y))


def _upright_axis(P0, skel, m) -> str | None:
    """The zero pose's up axis if it stands upright (both thighs point away from the head), else None."""
    up = P0[m["Head"]] - P0[m["Hips"]]
    for s in _SIDES:
        thigh = P0[m[f"LowerLeg_{s}"]] - P0[m[f"UpperLeg_{s}"]]
        cos = up @ thigh / max(np.linalg.norm(up) * np.linalg.norm(thigh), 1e-12)
        if cos > -0.7:
            return None
    k = int(np.argmax(np.abs(up)))
    return ("+" if up[k] >= 0 else "-") + "XYZ"[k]


def _body_skeleton(P, mapping, skel: Skeleton) -> Skeleton:
    """The body in the T-pose positions ``P`` (rig joints, body world axes): offsets between mapped joints,
    virtual joints on their chain."""
    pos = {b: P[r] for b, r in mapping.items()}
    for b in ("Spine", "Neck", "Shoulder_L", "Shoulder_R"):
        if b in pos:
            continue
        i = BODY_NAMES.index(b)
        parent = BODY_NAMES[BODY_PARENTS[i]]
        child = {"Spine": "Chest", "Neck": "Head", "Shoulder_L": "UpperArm_L", "Shoulder_R": "UpperArm_R"}[b]
        pos[b] = pos[parent] + _VIRTUAL_AT[b] * (pos[child] - pos[parent])
    offsets = np.zeros((len(BODY_NAMES), 3))
    for i, b in enumerate(BODY_NAMES[2:], start=2):
        offsets[i] = pos[b] - pos[BODY_NAMES[BODY_PARENTS[i]]]
    rot_ch = ("Zrotation", "Xrotation", "Yrotation")
    moving = ("Xposition", "Yposition", "Zposition") + rot_ch
    channels = tuple(moving if i < 2 else rot_ch for i in range(len(BODY_NAMES)))
    ends = tuple(np.zeros(3) if b in LEAVES else None for b in BODY_NAMES)
    return Skeleton(BODY_NAMES, BODY_PARENTS.copy(), offsets, channels, ends)


def leg_length(body: Skeleton) -> float:
    """Hip-to-ankle length of a body (both legs' mean), the scale of its root's travel."""
    i = {n: k for k, n in enumerate(BODY_NAMES)}
    return float(
        np.mean([np.linalg.norm(body.offsets[i[f"LowerLeg_{s}"]]) + np.linalg.norm(body.offsets[i[f"Foot_{s}"]])
                 for s in _SIDES])
    )  # fmt: skip


def retarget(src: Rig, local_quats, root_pos, dst: Rig) -> tuple[np.ndarray, np.ndarray]:
    """Motion of rig ``src`` -> the same motion in rig ``dst`` (local rotations ``(F, Jd, 4)``, root ``(F, 3)``)
    through the body. The hips' travel is scaled by the ratio of the two bodies' leg lengths (1 for the same
    performer), so feet keep their contacts on another body as well as its proportions allow."""
    body_q, hips = src.to_body(local_quats, root_pos)
    return dst.from_body(body_q, hips * (leg_length(dst.body) / leg_length(src.body)))
