"""Accuracy metrics, exactly as DESIGN "How accuracy is measured" defines them. Numpy only.

Per clip, from the solver's output and the ground truth (both on the same skeleton topology, metres, XYZW):

- **MPJPE** (mm): mean over frames and joints of ``|FK(output) - GT position|``; GT is always the *clean*
  ground truth, whatever the input condition was.
- **Rotation error** (degrees): geodesic angle between output and GT rotations, *local* (parent-relative) and
  *global* (world), averaged per joint group: determined / limb / leaf (:meth:`Skeleton.group`).
- **Jerk ratio**: mean ``|third difference of positions| * fps**3`` of the output divided by the same for GT
  (1.0 = as smooth as the real motion), per clip.

The static dummy root (:meth:`Skeleton.dummy_root`) is excluded from every figure. A clip's errors are kept as
sums (:class:`Errors`) so that clips combine exactly: clips weigh by their frame count, so every error mean is
over all frames of all clips, and the jerk ratio of a set of clips is the frame-weighted mean of the clips'
ratios. ``jerk_ratio_pooled`` (all clips' output jerk over all clips' GT jerk) is reported beside it: it is not
dominated by near-static clips, whose small GT jerk makes any noise look huge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtik.errors import InputError
from rtik.geometry import kinematics as kin
from rtik.geometry import rotations as rot
from rtik.geometry.skeleton import GROUPS, Skeleton

#: the summary keys, in table order
KEYS = ("mpjpe_mm", "rot_all_deg", "rot_determined_deg", "rot_limb_deg", "rot_leaf_deg", "grot_all_deg", "jerk_ratio")


@dataclass(frozen=True, eq=False)
class Errors:
    """Error sums over one or more clips of one skeleton (combine with ``+``).

    Fields:
        frames: frames summed.
        clips: clips summed.
        pos_mm: ``(J,)`` sum over frames of the position error per joint, mm.
        rot_deg: ``(J,)`` sum over frames of the local rotation error per joint, degrees.
        grot_deg: ``(J,)`` sum over frames of the global rotation error per joint, degrees.
        jerk_out: sum of ``|third difference| * fps**3`` of the output over samples (frame, joint), m/s^3.
        jerk_gt: the same for the ground truth.
        jerk_n: number of (frame, joint) samples in the jerk sums.
        jerk_ratio_sum: sum over clips of ``frames * (clip's jerk ratio)`` (clips with a GT jerk).
        jerk_frames: frames of the clips in ``jerk_ratio_sum``.
        joints: ``(J,)`` bool, joints the figures count (all but the dummy root).
        groups: group name per joint.
    """

    frames: int
    clips: int
    pos_mm: np.ndarray
    rot_deg: np.ndarray
    grot_deg: np.ndarray
    jerk_out: float
    jerk_gt: float
    jerk_n: int
    jerk_ratio_sum: float
    jerk_frames: int
    joints: np.ndarray
    groups: tuple[str, ...]

    def __add__(self, other: Errors) -> Errors:
        if self.groups != other.groups:
            raise InputError("cannot combine errors of different skeletons")
        return Errors(
            self.frames + other.frames,
            self.clips + other.clips,
            self.pos_mm + other.pos_mm,
            self.rot_deg + other.rot_deg,
            self.grot_deg + other.grot_deg,
            self.jerk_out + other.jerk_out,
            self.jerk_gt + other.jerk_gt,
            self.jerk_n + other.jerk_n,
            self.jerk_ratio_sum + other.jerk_ratio_sum,
            self.jerk_frames + other.jerk_frames,
            self.joints,
            self.groups,
        )

    def per_joint(self) -> dict[str, np.ndarray]:
        """Mean errors per joint ``(J,)``: ``pos_mm``, ``rot_deg``, ``grot_deg`` (``nan`` for excluded joints)."""
        n = max(self.frames, 1)
        out = {}
        for key in ("pos_mm", "rot_deg", "grot_deg"):
            v = getattr(self, key) / n
            out[key] = np.where(self.joints, v, np.nan)
        return out

    def summary(self) -> dict[str, float]:
        """The :data:`KEYS` figures, then ``jerk_ratio_pooled``, ``frames`` and ``clips``; a group with no
        joints gives ``nan``."""
        pj = self.per_joint()
        groups = np.array(self.groups)

        def mean(v, sel):
            return float(np.mean(v[sel])) if np.any(sel) else float("nan")

        out = {
            "mpjpe_mm": mean(pj["pos_mm"], self.joints),
            "rot_all_deg": mean(pj["rot_deg"], self.joints),
        }
        for g in GROUPS:
            out[f"rot_{g}_deg"] = mean(pj["rot_deg"], self.joints & (groups == g))
        out["grot_all_deg"] = mean(pj["grot_deg"], self.joints)
        out["jerk_ratio"] = self.jerk_ratio_sum / self.jerk_frames if self.jerk_frames > 0 else float("nan")
        out = {k: out[k] for k in KEYS}
        out["jerk_ratio_pooled"] = self.jerk_out / self.jerk_gt if self.jerk_gt > 0 else float("nan")
        out["frames"] = self.frames
        out["clips"] = self.clips
        return out


def combine(errors) -> Errors:
    """Sum of a non-empty iterable of :class:`Errors`."""
    errors = list(errors)
    if not errors:
        raise InputError("no clips to combine")
    total = errors[0]
    for e in errors[1:]:
        total = total + e
    return total


def jerk(positions, fps: float) -> np.ndarray:
    """``|third difference| * fps**3`` per sample ``(F - 3, J)`` of positions ``(F, J, 3)`` (m/s^3 for metres)."""
    P = np.asarray(positions, dtype=np.float64)
    d3 = P[3:] - 3.0 * P[2:-1] + 3.0 * P[1:-2] - P[:-3]
    return np.linalg.norm(d3, axis=-1) * fps**3


def clip_errors(
    skel: Skeleton, out_local, out_positions, gt_local, gt_positions, fps: float, out_global=None, gt_global=None
) -> Errors:
    """Errors of one clip.

    Args:
        skel: the skeleton (topology and groups; its offsets are not used).
        out_local, gt_local: ``(F, J, 4)`` local rotations XYZW of the output and of the ground truth.
        out_positions, gt_positions: ``(F, J, 3)`` global joint positions, metres (output: FK of the result).
        fps: frame rate (Hz), for the jerk.
        out_global, gt_global: ``(F, J, 4)`` global rotations, computed from the local ones if ``None``.
    """
    J = len(skel)
    shapes = {
        "out_local": (np.shape(out_local), 4),
        "gt_local": (np.shape(gt_local), 4),
        "out_positions": (np.shape(out_positions), 3),
        "gt_positions": (np.shape(gt_positions), 3),
    }
    F = np.shape(gt_positions)[0] if np.ndim(gt_positions) == 3 else -1
    for name, (shape, last) in shapes.items():
        if shape != (F, J, last):
            raise InputError(f"{name} has shape {shape}, expected ({F}, {J}, {last})")
    if fps <= 0:
        raise InputError(f"fps must be positive, got {fps}")
    joints = np.ones(J, dtype=bool)
    dummy = skel.dummy_root()
    if dummy is not None:
        joints[dummy] = False
    pos = np.linalg.norm(np.asarray(out_positions, np.float64) - np.asarray(gt_positions, np.float64), axis=-1)
    rot_err = np.degrees(rot.quat_geodesic(out_local, gt_local))  # (F, J)
    og = kin.local_to_global(skel, out_local) if out_global is None else out_global
    gg = kin.local_to_global(skel, gt_local) if gt_global is None else gt_global
    grot_err = np.degrees(rot.quat_geodesic(og, gg))
    jo = jerk(out_positions, fps)[:, joints]
    jg = jerk(gt_positions, fps)[:, joints]
    has_jerk = jg.size > 0 and jg.sum() > 0
    return Errors(
        frames=F,
        clips=1,
        pos_mm=1000.0 * pos.sum(axis=0),
        rot_deg=rot_err.sum(axis=0),
        grot_deg=grot_err.sum(axis=0),
        jerk_out=float(jo.sum()),
        jerk_gt=float(jg.sum()),
        jerk_n=int(jo.size),
        jerk_ratio_sum=F * float(jo.sum() / jg.sum()) if has_jerk else 0.0,
        jerk_frames=F if has_jerk else 0,
        joints=joints,
        groups=skel.groups,
    )
