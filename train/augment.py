"""Augmentation of motion clips (numpy): what widens one performer's 3.6 hours into training data that covers
other bodies, frame rates, sensors and combinations of motion.

Rotation-level (before forward kinematics): left/right mirroring, heading rotation and translation, frame-rate
resampling and time warping (slerp), upper/lower body from different clips, small pose perturbations.
Skeleton-level: bone-length scaling per bone and for the whole body. Position-level (after FK): sensor noise,
occluded spans and outlier spikes, taken from :mod:`rtik.eval.conditions` (the same corruptions the evaluation uses).

Shapes: ``F`` frames, ``J`` joints; rotations XYZW ``(F, J, 4)`` local; root translation ``(F, 3)`` metres.
"""

from __future__ import annotations

import numpy as np

from rtik.geometry import rotations as rot
from rtik.geometry.skeleton import Skeleton

_REFLECTIONS = np.array([np.diag(d) for d in ((-1, 1, 1), (1, -1, 1), (1, 1, -1), (-1, -1, -1))], dtype=np.float64)
WORLD_MIRROR = _REFLECTIONS[0]  # x -> -x


# ------------------------------------------------------------------------------------------------- mirroring
def mirror_reflections(skel: Skeleton, mean_local=None) -> np.ndarray:
    """Per-joint reflections ``N (J, 3, 3)`` such that mirroring maps ``L_j -> N_parent L_m(j) N_j``.

    ``N_j`` takes each child offset of ``j`` to the offset of the mirrored child (so mirrored positions are
    FK of mirrored rotations on the same skeleton); where that leaves a choice (leaves, straight chains), the one
    that keeps the mean pose ``mean_local (J, 4)`` closest to itself wins. Pairs share one reflection, so
    mirroring twice is the identity.
    """
    J = len(skel)
    m = skel.mirror_map()
    mean = rot.quat_to_matrix(rot.quat_identity((J,)) if mean_local is None else np.asarray(mean_local))
    N = np.zeros((J, 3, 3))
    N[0] = WORLD_MIRROR
    done = {0}
    for j in range(1, J):
        if j in done:
            continue
        pair = [j] if m[j] == j else [j, int(m[j])]
        scores = []
        for R in _REFLECTIONS:
            err = 0.0
            for k in pair:
                for c in skel.children(k):
                    off, target = skel.offsets[c], skel.offsets[m[c]]
                    err += 10.0 * np.linalg.norm(R @ off - target) / max(np.linalg.norm(off), 1e-9)
                p = skel.parents[k]
                Np = N[p] if p in done else WORLD_MIRROR
                cand = Np @ mean[m[k]] @ R
                err += float(np.arccos(np.clip((np.trace(cand.T @ mean[k]) - 1) / 2, -1, 1)))
            scores.append(err)
        best = _REFLECTIONS[int(np.argmin(scores))]
        for k in pair:
            N[k] = best
            done.add(k)
    return N


def mirror(skel: Skeleton, N, quats, root) -> tuple[np.ndarray, np.ndarray]:
    """Left/right mirror image of a motion (x -> -x): ``(quats (F, J, 4), root (F, 3))`` -> mirrored."""
    m = skel.mirror_map()
    R = rot.quat_to_matrix(np.asarray(quats, dtype=np.float64))[:, m]  # (F, J, 3, 3) of the counterpart
    par = np.where(skel.parents >= 0, skel.parents, 0)
    Np = np.where((skel.parents >= 0)[:, None, None], N[par], np.eye(3))
    Np[0] = WORLD_MIRROR
    out = rot.matrix_to_quat(Np @ R @ N).astype(np.float32)
    return out, (np.asarray(root) * np.array([-1.0, 1.0, 1.0])).astype(np.float32)


# --------------------------------------------------------------------------------------------- time and space
def resample(quats, root, factor: float = 1.0, speed: float = 1.0, warp: float = 0.0, rng=None):
    """Resample a clip to ``factor`` times its frame rate, played at ``speed`` (time warped by a smooth speed
    change of relative amplitude ``warp``): slerp between frames for rotations, linear for the root.

    Frame times start at 0 and never pass the last frame; with ``speed = 1`` and ``warp = 0`` an integer
    ``factor`` ends exactly on the last frame. Returns ``(quats (F', J, 4), root (F', 3))``.
    """
    q = np.asarray(quats)
    F = len(q)
    step = speed / factor
    n = max(2, int(np.floor((F - 1) / step + 1e-6)) + 1)
    if warp > 0:
        rng = rng or np.random.default_rng()
        period = rng.uniform(20, 120) * factor
        s = step * (1 + warp * np.sin(2 * np.pi * np.arange(n) / period + rng.uniform(0, 2 * np.pi)))
        t = np.concatenate([[0.0], np.cumsum(s[:-1])])
    else:
        t = np.arange(n) * step
    t = t[t <= F - 1 + 1e-9]
    i0 = np.minimum(np.floor(t).astype(np.int64), F - 1)
    i1 = np.minimum(i0 + 1, F - 1)
    w = (t - i0)[:, None]
    qa, qb = q[i0].astype(np.float64), q[i1].astype(np.float64)
    out_q = rot.quat_slerp(qa, qb, np.broadcast_to(w, qa.shape[:-1]))
    r = np.asarray(root, dtype=np.float64)
    out_r = r[i0] * (1 - w) + r[i1] * w
    return out_q.astype(np.float32), out_r.astype(np.float32)


def rotate_heading(skel: Skeleton, quats, root, yaw: float, shift=(0.0, 0.0)):
    """The motion turned by ``yaw`` radians about +Y and moved by ``shift`` (x, z) metres on the floor."""
    qy = np.array([0.0, np.sin(yaw / 2), 0.0, np.cos(yaw / 2)])
    q = np.array(quats, dtype=np.float64)
    mr = skel.motion_root()
    q[:, mr] = rot.quat_mul(np.broadcast_to(qy, q[:, mr].shape), q[:, mr])
    r = rot.quat_apply(np.broadcast_to(qy, (len(root), 4)), np.asarray(root, dtype=np.float64))
    r[:, [0, 2]] += np.asarray(shift)
    return q.astype(np.float32), r.astype(np.float32)


def subtree(skel: Skeleton, j: int) -> np.ndarray:
    """Joint ``j`` and all its descendants (indices)."""
    out = [j]
    for k in range(j + 1, len(skel)):
        if skel.parents[k] in out:
            out.append(k)
    return np.array(out, dtype=np.int64)


def mix_upper_body(quats, other_quats, joints) -> np.ndarray:
    """``quats`` with the local rotations of ``joints`` (e.g. the subtree above the spine) taken from
    ``other_quats`` (same joint count; its frames are stretched to this clip's length)."""
    q = np.array(quats)
    o = np.asarray(other_quats)
    idx = np.round(np.linspace(0, len(o) - 1, len(q))).astype(np.int64)
    q[:, joints] = o[idx][:, joints]
    return q


def perturb_pose(quats, joints, rng, sigma_deg: float = 5.0) -> np.ndarray:
    """Each joint of ``joints`` turned by a small rotation (``sigma_deg`` per axis) that drifts slowly."""
    q = np.array(quats, dtype=np.float64)
    F = len(q)
    a = rng.normal(0, np.radians(sigma_deg), (2, len(joints), 3))
    t = np.linspace(0, 1, F)[:, None, None]
    aa = a[0] * (1 - t) + a[1] * t  # (F, K, 3)
    q[:, joints] = rot.quat_mul(q[:, joints], rot.axis_angle_to_quat(aa))
    return q.astype(np.float32)


# ------------------------------------------------------------------------------------------------- skeleton
def scale_bones(skel: Skeleton, rng, sigma: float = 0.08, body=(0.85, 1.15), asym: float = 0.02):
    """A skeleton with each bone scaled by a log-normal factor (``sigma``; left/right pairs alike up to
    ``asym``) and the whole body by a uniform factor in ``body``. Returns ``(skeleton, factors (J,))``."""
    m = skel.mirror_map()
    f = np.exp(rng.normal(0, sigma, len(skel)))
    f = np.where(m < np.arange(len(skel)), f[m], f)  # the right side copies the left
    f *= np.exp(rng.normal(0, asym, len(skel)))
    f *= rng.uniform(*body)
    return scale_skeleton(skel, f), f


def scale_skeleton(skel: Skeleton, factors) -> Skeleton:
    """``skel`` with the bone ending at each joint scaled by ``factors (J,)`` (the motion root's offset, a
    translation, is left alone)."""
    f = np.asarray(factors, dtype=np.float64).copy()
    f[skel.motion_root()] = 1.0
    return skel.with_offsets(skel.offsets * f[:, None])
