"""Classical solvers the learned one must beat (DESIGN "How accuracy is measured"). Numpy only.

- ``analytic``: swing-only IK (:func:`rtik.geometry.kinematics.analytic_ik`): exact bone directions, zero twist relative
  to the parent, leaves at identity.
- ``analytic_prior``: the same, but each joint's twist (and each leaf's orientation) taken from its mean local
  rotation over the training clips (:class:`PriorAccumulator`, or a model pack's ``prior_local``).
- ``analytic_prior_oneeuro``: positions through a causal One Euro filter (min_cutoff 1 Hz, beta 1 per m/s,
  d_cutoff 1 Hz) first, then ``analytic_prior``.

Each solves one clip from *its own input*, as the runtime would: bone lengths are calibrated from the (possibly
corrupted) input positions, median over observed frames; missing joints hold their last observed position
(causal; a joint not yet seen sits at its parent). Positions in metres; quaternions XYZW.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtik.errors import InputError
from rtik.geometry import kinematics as kin
from rtik.geometry import rotations as rot
from rtik.geometry.skeleton import Skeleton
from rtik.solve.filters import OneEuroConfig, hold_last, one_euro

BASELINES = ("analytic", "analytic_prior", "analytic_prior_oneeuro")
#: the One Euro settings of ``analytic_prior_oneeuro`` (DESIGN: min_cutoff 1, beta 1)
ONE_EURO = OneEuroConfig(min_cutoff=1.0, beta=1.0, d_cutoff=1.0)


@dataclass(frozen=True, eq=False)
class Solution:
    """A solved clip.

    Fields:
        skeleton: the calibrated skeleton (offsets in metres, bone lengths measured from the input).
        local_quats: ``(F, J, 4)`` local rotations, XYZW.
        root_pos: ``(F, 3)`` motion-root translation, metres.
        positions: ``(F, J, 3)`` FK of the result, metres.
    """

    skeleton: Skeleton
    local_quats: np.ndarray
    root_pos: np.ndarray
    positions: np.ndarray


def calibrate(skel: Skeleton, positions, mask=None) -> Skeleton:
    """``skel`` rescaled to the bone lengths measured in ``positions (F, J, 3)`` (median over the frames where
    both ends are observed, ``mask (F, J)``). The motion root's offset under a dummy root is a translation, not a
    bone: it is not measured."""
    lengths = kin.bone_lengths(skel, positions, mask)
    if skel.dummy_root() is not None:
        lengths[skel.motion_root()] = np.nan
    return kin.rescale_skeleton(skel, lengths)


def solve(method: str, skel: Skeleton, positions, fps: float, mask=None, prior_local=None) -> Solution:
    """Solve one clip with a baseline.

    Args:
        method: one of :data:`BASELINES`.
        skel: the skeleton (metres); its rest offsets are replaced by the calibrated bone lengths.
        positions: ``(F, J, 3)`` input positions of every joint, metres (a dummy root at its fixed place);
            missing samples may be ``nan``.
        fps: frame rate (Hz), for the One Euro filter.
        mask: ``(F, J)`` bool, ``True`` = observed; ``None`` = every finite sample.
        prior_local: ``(J, 4)`` mean local rotations; required by the ``analytic_prior*`` methods.
    """
    if method not in BASELINES:
        raise InputError(f"unknown baseline {method!r}; valid baselines: {', '.join(BASELINES)}")
    P = np.asarray(positions, dtype=np.float64)
    J = len(skel)
    if P.ndim != 3 or P.shape[1:] != (J, 3):
        raise InputError(f"positions has shape {P.shape}, expected (F, {J}, 3)")
    seen = np.all(np.isfinite(P), axis=-1)
    if mask is not None:
        seen &= np.asarray(mask, dtype=bool)
    if not seen.any(axis=0).all():
        missing = [skel.names[j] for j in np.nonzero(~seen.any(axis=0))[0]]
        raise InputError(f"joints never observed in this clip: {', '.join(missing)}")
    prior = None
    if method != "analytic":
        if prior_local is None:
            raise InputError(f"baseline {method!r} needs prior_local (mean local rotations of the training clips)")
        prior = np.asarray(prior_local, dtype=np.float64)
        if prior.shape != (J, 4):
            raise InputError(f"prior_local has shape {prior.shape}, expected ({J}, 4)")
    calibrated = calibrate(skel, P, seen)
    if method == "analytic_prior_oneeuro":
        P = one_euro(P, fps, seen, ONE_EURO)  # holds missing joints at their last estimate
    P = hold_last(P, seen, skel.parents)
    local, root_pos = kin.analytic_ik(calibrated, P, prior)
    out_pos, _ = kin.forward_kinematics(calibrated, local, root_pos)
    return Solution(calibrated, local, root_pos, out_pos)


class PriorAccumulator:
    """Mean local rotation per joint over many clips (the ``analytic_prior`` reference pose).

    Sums the quaternions' outer products ``q q^T`` over every frame added and returns the principal
    eigenvector, sign-invariant: the same estimate as :func:`rtik.geometry.kinematics.mean_local_rotations` applied to
    all frames at once, without holding them.
    """

    def __init__(self, num_joints: int):
        self.M = np.zeros((num_joints, 4, 4))
        self.frames = 0

    def add(self, local_quats) -> None:
        """Add a clip's local rotations ``(F, J, 4)``."""
        q = rot.quat_normalize(np.asarray(local_quats, dtype=np.float64))
        if q.ndim != 3 or q.shape[1:] != (self.M.shape[0], 4):
            raise InputError(f"local_quats has shape {q.shape}, expected (F, {self.M.shape[0]}, 4)")
        self.M += np.einsum("fji,fjk->jik", q, q)
        self.frames += q.shape[0]

    def result(self) -> np.ndarray:
        """``(J, 4)`` mean local rotations, XYZW, non-negative scalar part."""
        if self.frames == 0:
            raise InputError("no training frames to compute the mean local rotations from")
        _, vecs = np.linalg.eigh(self.M)
        return rot.quat_canonical(vecs[..., -1])
