"""Named input joint layouts and their mapping onto a model's input joints.

A :class:`Layout` says which joints a source sends, in which order, and how each of the model's input joints is
obtained from them: one source joint (weight 1), an average of several (an *approximation*, noted as such), or
nothing (the joint is masked as missing on every frame). Built-in layouts:

- ``rtik``: the model's own input joints, by name, in the model's order (all observed).
- ``bvh``: a BVH (or any named) skeleton's joints matched by name: exact names first, then common aliases
  (Mixamo / Unity humanoid ``LeftUpLeg``, CMU ``lThigh``, ``Shoulder_L`` ...); needs the source's joint names.
- ``mediapipe33``: MediaPipe Pose's 33 landmarks. Provides hips, knees, ankles, toes (foot index), shoulders,
  elbows, wrists; ``Hips`` is the midpoint of the two hips and ``Head`` the midpoint of the ears (approximate);
  ``Spine``, ``Chest``, ``Neck`` and the clavicles (``Shoulder_L/R``) are missing.
- ``coco17``: COCO's 17 keypoints. Like ``mediapipe33`` without the toes.

A model pack that reads leaf markers (:mod:`rtik.formats.markers`) gets them from the same layouts when the
source has them: ``mediapipe33`` gives the nose, eyes, ears, index, pinky and thumb points, heels and foot index
(``coco17`` the nose, eyes and ears); ``bvh`` and name lists match marker names exactly and the common names of end
sites and tip joints (``HeadTop``, ``LeftHandEnd``, ``RightHandThumb3``, ``LeftToe_End`` ...). ``rtik`` is the
input joints only; ``rtik+markers`` the input joints, then every marker the pack reads, in its order (mask the ones
a source does not have).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from rtik.errors import InputError
from rtik.formats import markers as mk

MEDIAPIPE33 = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)  # fmt: skip
COCO17 = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)  # fmt: skip
#: model joint -> source joint(s) averaged, for the pose-estimation layouts (side S = L/R, s = left/right)
_POSE_MAP = {
    "Hips": ("left_hip", "right_hip"),
    "Head": ("left_ear", "right_ear"),
    "UpperArm_S": ("s_shoulder",),
    "LowerArm_S": ("s_elbow",),
    "Hand_S": ("s_wrist",),
    "UpperLeg_S": ("s_hip",),
    "LowerLeg_S": ("s_knee",),
    "Foot_S": ("s_ankle",),
    "Toes_S": ("s_foot_index",),
}
#: leaf marker -> pose landmark (side S = L/R, s = left/right)
_POSE_MARKERS = {
    "Nose": "nose", "Eye_S": "s_eye", "Ear_S": "s_ear", "Index_S": "s_index", "Pinky_S": "s_pinky",
    "Thumb_S": "s_thumb", "Heel_S": "s_heel", "ToeTip_S": "s_foot_index",
}  # fmt: skip
_POSE_NOTES = {
    "Hips": "midpoint of the hip joints (the skeleton's Hips sits a few cm above it)",
    "Head": "midpoint of the ears (the skeleton's Head joint is at the skull base)",
    "Toes_L": "foot index tip (the skeleton's toe joint is at the ball of the foot)",
    "Toes_R": "foot index tip (the skeleton's toe joint is at the ball of the foot)",
}
#: aliases for name matching, normalised (lowercase, no separators); sided entries expand to left/right forms
_CENTRAL = {
    "Hips": ("hips", "hip", "pelvis"),
    "Spine": ("spine", "abdomen", "lowerback", "spine0"),
    "Chest": ("chest", "spine2", "upperchest", "thorax", "spine1"),
    "Neck": ("neck", "neck1"),
    "Head": ("head",),
}
_SIDED = {
    "Shoulder": ("shoulder", "collar", "clavicle"),
    "UpperArm": ("upperarm", "arm", "shldr", "uparm"),
    "LowerArm": ("lowerarm", "forearm", "elbow"),
    "Hand": ("hand", "wrist"),
    "UpperLeg": ("upperleg", "upleg", "thigh", "hip"),
    "LowerLeg": ("lowerleg", "leg", "shin", "calf", "knee"),
    "Foot": ("foot", "ankle"),
    "Toes": ("toes", "toebase", "toe", "ball"),
}
NAMES = ("rtik", "rtik+markers", "bvh", "mediapipe33", "coco17")


@dataclass(frozen=True)
class Layout:
    """A source's joints and how they feed the model's input joints.

    Fields:
        name: layout name.
        joints: the source's joint names, in the order of a frame's rows ``(Js,)``.
        rows: model joint -> ``((source joint, weight), ...)``; model joints absent here are always missing.
        notes: model joint -> why its position is only approximate.
    """

    name: str
    joints: tuple[str, ...]
    rows: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)

    def describe(self) -> list[str]:
        """One line per mapped model joint (``model <- source``, with the approximation note)."""
        out = []
        for m, src in self.rows.items():
            s = " + ".join(n if w == 1 else f"{w:g}*{n}" for n, w in src)
            out.append(f"{m} <- {s}" + (f"  ({self.notes[m]})" if m in self.notes else ""))
        return out


@dataclass(frozen=True, eq=False)
class LayoutMap:
    """A layout resolved against a model's input joints.

    Fields:
        layout: the layout.
        weights: ``(Ji, Js)`` float64, model joint positions = ``weights @ source positions``.
        provided: ``(Ji,)`` bool, model joints the layout can ever observe.
        index: ``(Ji,)`` int, the single source row of each model joint when the layout is a pure selection
            (``-1`` = missing), else ``None``.
    """

    layout: Layout
    weights: np.ndarray
    provided: np.ndarray
    index: np.ndarray | None
    complete: bool = False  # every model joint provided by a single source joint (a pure reordering)
    _safe: np.ndarray | None = None  # index with -1 replaced by 0

    @property
    def num_source_joints(self) -> int:
        return len(self.layout.joints)

    def apply(self, positions: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Source ``positions (Js, 3)`` and ``mask (Js,)`` bool (None = all observed) -> model
        ``(Ji, 3)`` float64 (0 where missing) and ``(Ji,)`` bool. A derived joint is observed only if all its
        sources are. Source rows that are not finite must be masked (the caller checks)."""
        if mask is None:
            if self.complete:
                return positions[self._safe], self.provided.copy()
            if self.index is not None:
                return positions[self._safe] * self.provided[:, None], self.provided.copy()
            return self.weights @ positions, self.provided.copy()
        P = np.where(mask[:, None], positions, 0.0)
        if self.index is not None:
            m = self.provided & mask[self._safe]
            return P[self._safe] * m[:, None], m
        m = self.provided & ~((self.weights != 0) @ ~mask)
        return (self.weights @ P) * m[:, None], m


def _norm(name: str) -> str:
    return re.sub(r"[\s_.\-]", "", name.split(":")[-1].split("|")[-1]).lower()


def _aliases(model_joint: str) -> tuple[str, ...]:
    """Normalised aliases of a model joint name, the exact name first."""
    out = [_norm(model_joint)]
    out += _CENTRAL.get(model_joint, ())
    out += [a for a, m in _TIPS.items() if m == model_joint]
    m = re.fullmatch(r"(.+)_([LR])", model_joint)
    if m and m.group(1) in _SIDED:
        side, word = ("l", "left") if m.group(2) == "L" else ("r", "right")
        for base in _SIDED[m.group(1)]:
            out += [word + base, side + base, base + side, base + word]
    return tuple(dict.fromkeys(out))


_TIPS = mk.tip_names()


def from_names(names, model_joints, name: str = "bvh") -> Layout:
    """Match a source skeleton's joint ``names`` to ``model_joints`` by name (exact, then aliases)."""
    norm = {}
    for i, n in enumerate(names):
        norm.setdefault(_norm(n), names[i])
    rows, used = {}, set()
    for mj in model_joints:
        for a in _aliases(mj):
            src = norm.get(a)
            if src is not None and src not in used:
                rows[mj] = ((src, 1.0),)
                used.add(src)
                break
    return Layout(name, tuple(names), rows)


def _pose_layout(name: str, joints: tuple[str, ...], model_joints) -> Layout:
    rows = {}
    for key, src in _POSE_MAP.items():
        for S, s in (("L", "left"), ("R", "right")) if key.endswith("_S") else ((None, None),):
            mj = key[:-1] + S if S else key
            srcs = tuple(x.replace("s_", s + "_", 1) if s else x for x in src)
            if mj in model_joints and all(x in joints for x in srcs):
                rows[mj] = tuple((x, 1.0 / len(srcs)) for x in srcs)
    for key, src in _POSE_MARKERS.items():
        for S, s in (("L", "left"), ("R", "right")) if key.endswith("_S") else ((None, None),):
            m = key[:-1] + S if S else key
            x = src.replace("s_", s + "_", 1) if s else src
            if m in model_joints and x in joints:
                rows[m] = ((x, 1.0),)
    notes = {k: v for k, v in _POSE_NOTES.items() if k in rows}
    return Layout(name, joints, rows, notes)


def as_estimator(layout: Layout) -> Layout:
    """``layout`` with the joints a pose estimator only approximates (the hips', ears' and foot-index midpoints or
    points standing in for the hips, head and toes) marked as ``mediapipe33`` marks them: a solver feeds such
    joints to its network but neither lands on them nor calibrates from them."""
    notes = {**layout.notes, **{k: v for k, v in _POSE_NOTES.items() if k in layout.rows}}
    return Layout(layout.name, layout.joints, layout.rows, notes)


def get(layout, model_joints, names=None) -> Layout:
    """A layout by name (see :data:`NAMES`), or ``layout`` itself if it is a :class:`Layout`; a list of joint
    names is matched with :func:`from_names`. ``names`` (the source's joint names) is required for ``bvh``."""
    model_joints = tuple(model_joints)
    if isinstance(layout, Layout):
        return layout
    if isinstance(layout, (list, tuple)):
        return from_names(tuple(layout), model_joints, name="names")
    if layout in ("rtik", "rtik+markers"):
        joints = tuple(j for j in model_joints if layout == "rtik+markers" or j not in mk.BY_NAME)
        return Layout(layout, joints, {j: ((j, 1.0),) for j in joints})
    if layout == "bvh":
        if names is None:
            raise InputError("the 'bvh' layout matches joints by name: give the source's joint names")
        return from_names(tuple(names), model_joints)
    if layout == "mediapipe33":
        return _pose_layout(layout, MEDIAPIPE33, model_joints)
    if layout == "coco17":
        return _pose_layout(layout, COCO17, model_joints)
    raise InputError(f"unknown layout {layout!r}; valid layouts: {', '.join(NAMES)}")


def resolve(layout: Layout, model_joints) -> LayoutMap:
    """Build the :class:`LayoutMap` of ``layout`` for a model whose input joints are ``model_joints``."""
    model_joints = tuple(model_joints)
    col = {n: i for i, n in enumerate(layout.joints)}
    W = np.zeros((len(model_joints), len(layout.joints)))
    for r, mj in enumerate(model_joints):
        for src, w in layout.rows.get(mj, ()):
            if src not in col:
                raise InputError(f"layout {layout.name!r}: source joint {src!r} is not one of its joints")
            W[r, col[src]] = w
    provided = (W != 0).any(axis=1)
    single = ((W != 0).sum(axis=1) <= 1) & np.all((W == 0) | (W == 1), axis=1)
    index = np.where(provided, W.argmax(axis=1), -1) if single.all() else None
    safe = None if index is None else np.maximum(index, 0)
    return LayoutMap(layout, W, provided, index, bool(index is not None and provided.all()), safe)
