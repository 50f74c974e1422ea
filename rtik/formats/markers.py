"""Leaf markers: points on the head, hands and feet that turn the leaves when an input has them.

Joint centres fix every bone's direction but not how the head, the hands and the feet are turned: the leaves' own
bones end in zero-length end sites in many rigs, and a pose estimator gives no hand or toe joint at all. Most real
inputs carry more than joint centres, though: end sites with real offsets (a head top, a hand or middle-finger tip,
a thumb, a toe tip) and pose-estimator points (nose, eyes, ears, index, pinky and thumb knuckles, heels, foot
index). A model pack may take these as *markers*: optional extra input rows after the input joints, each tied to
one joint of the body, masked when the input does not have it.

Each marker's canonical place is an offset in its parent joint's frame in the body's rest pose (a T-pose, Y up,
+Z forward, the left side towards +X: see :mod:`rtik.formats.rig`), in metres for a body whose shank plus foot
(knee to ankle to ball... measured as the LowerLeg and Foot bones) is :data:`REFERENCE_LEG` long. Training places
the markers there, scaled to each performer and varied per clip (length and direction), so that a real rig's end
site or an estimator's landmark, which never sits exactly there, still reads as the same marker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: LowerLeg + Foot bone lengths of the body the offsets below are given for (metres)
REFERENCE_LEG = 0.80


@dataclass(frozen=True)
class Marker:
    """One marker: its ``name``, the body joint it moves with (``parent``), its canonical ``offset`` (metres, in
    the parent's rest frame) and its ``group`` (``head``, ``hand``, ``foot``: leaves it turns)."""

    name: str
    parent: str
    offset: tuple[float, float, float]
    group: str


def _sided(name, parent, offset, group, sided_parent=True):
    x, y, z = offset
    pl, pr = (f"{parent}_L", f"{parent}_R") if sided_parent else (parent, parent)
    return (Marker(f"{name}_L", pl, (x, y, z), group), Marker(f"{name}_R", pr, (-x, y, z), group))


#: every marker a pack can take, in the order of its input rows (after the input joints)
MARKERS: tuple[Marker, ...] = (
    Marker("HeadTop", "Head", (0.0, 0.19, 0.01), "head"),  # the top of the skull (a head end site)
    Marker("Nose", "Head", (0.0, 0.08, 0.11), "head"),
    *_sided("Eye", "Head", (0.033, 0.11, 0.085), "head", sided_parent=False),
    *_sided("Ear", "Head", (0.075, 0.085, -0.005), "head", sided_parent=False),
    *_sided("HandTip", "Hand", (0.18, 0.0, 0.0), "hand"),  # the middle finger's tip (a hand end site)
    *_sided("Index", "Hand", (0.095, 0.0, 0.03), "hand"),  # the index knuckle (pose estimators' index point)
    *_sided("Pinky", "Hand", (0.085, 0.0, -0.035), "hand"),
    *_sided("Thumb", "Hand", (0.05, -0.015, 0.055), "hand"),
    *_sided("Heel", "Foot", (0.0, -0.075, -0.03), "foot"),  # below and behind the ankle
    *_sided("ToeTip", "Toes", (0.0, 0.0, 0.09), "foot"),  # the big toe's tip (a toe end site, the foot index)
)  # fmt: skip
NAMES: tuple[str, ...] = tuple(m.name for m in MARKERS)
BY_NAME = {m.name: m for m in MARKERS}

#: end-site and tip joint names of BVH rigs, normalised (lowercase, no separators), that are markers; sided
#: names expand to their left/right forms (``lefthandend``, ``handl_end``, ``lhandtip``, ...)
_TIP_ALIASES = {
    "HeadTop": ("headtop", "headend", "headsite", "headtopend", "headnub", "head1", "headendsite"),
    "HandTip": ("handend", "handtip", "handsite", "handnub", "middle3", "middleend", "handmiddle3", "fingertip",
                "handmiddle4"),
    "Thumb": ("thumbend", "thumb3", "thumbtip", "handthumb3", "thumb2end", "thumbsite", "handthumb4"),
    "ToeTip": ("toeend", "toesend", "toebaseend", "toetip", "toessite", "toesite", "toenub", "toe1end", "footend"),
}  # fmt: skip


#: markers (without their side) a pose estimator gives: MediaPipe Pose's nose, eyes, ears, index, pinky, thumb,
#: heel and foot index (the ``mediapipe33`` layout)
ESTIMATOR = ("Nose", "Eye", "Ear", "Index", "Pinky", "Thumb", "Heel", "ToeTip")
#: markers (without their side) a BVH rig's end sites and tip joints give
RIG_TIPS = ("HeadTop", "HandTip", "Thumb", "ToeTip", "Heel")
#: body joints a pose estimator does not give (the ``mediapipe33`` layout leaves them missing)
ESTIMATOR_MISSING = ("Spine", "Chest", "Neck", "Shoulder_L", "Shoulder_R")


def group_of(name: str) -> str:
    """A marker's name without its side: ``"Eye_L"`` -> ``"Eye"``."""
    return name.split("_")[0]


def as_estimator_joints(P: np.ndarray, names, rows: dict) -> np.ndarray:
    """Joint rows of ``P (F, N, 3)`` (a copy) as the ``mediapipe33`` layout makes them from a pose estimator's
    landmarks: the thighs' midpoint for ``Hips``, the ears' for ``Head`` and the foot index (``ToeTip``) for
    ``Toes``. ``names``: the joint names of the first rows; ``rows``: marker name -> its row in ``P`` (a marker
    not there leaves its joint as it is)."""
    P = np.array(P, copy=True)
    n = list(names)
    P[:, n.index("Hips")] = 0.5 * (P[:, n.index("UpperLeg_L")] + P[:, n.index("UpperLeg_R")])
    if "Ear_L" in rows and "Ear_R" in rows:
        P[:, n.index("Head")] = 0.5 * (P[:, rows["Ear_L"]] + P[:, rows["Ear_R"]])
    for side in ("_L", "_R"):
        if "ToeTip" + side in rows:
            P[:, n.index("Toes" + side)] = P[:, rows["ToeTip" + side]]
    return P


def offsets(names) -> np.ndarray:
    """Canonical offsets ``(K, 3)`` of the markers ``names``."""
    return np.array([BY_NAME[n].offset for n in names], dtype=np.float64)


def tip_names() -> dict[str, str]:
    """Normalised end-site / tip joint name -> marker name, both sides (used to find markers in a BVH rig)."""
    out = {}
    for key, aliases in _TIP_ALIASES.items():
        for side, words in (("_L", ("left", "l")), ("_R", ("right", "r"))):
            marker = key if key == "HeadTop" else key + side
            for a in aliases:
                if key == "HeadTop":
                    out[a] = marker
                    continue
                for w in words:
                    out[w + a] = marker
                    out[a + w] = marker
    return out
