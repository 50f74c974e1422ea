"""Forward kinematics, bone-length calibration and analytic (swing-only) inverse kinematics. Numpy only.

Shapes: ``F`` frames, ``J`` joints. Rotations are unit quaternions XYZW (see :mod:`rtik.geometry.rotations`);
positions are in the skeleton's length unit. Every function is vectorised over frames; the only Python loop
runs over joints (parents first), whose count is small and fixed.
"""

from __future__ import annotations

import numpy as np

from rtik.errors import InputError
from rtik.geometry import rotations as rot
from rtik.geometry.skeleton import Skeleton


def forward_kinematics(skel: Skeleton, local_quats, root_pos=None, local_pos=None) -> tuple[np.ndarray, np.ndarray]:
    """Global positions and rotations from local rotations.

    Args:
        skel: the skeleton.
        local_quats: ``(F, J, 4)`` local rotation of each joint (joint frame -> parent frame), XYZW.
        root_pos: ``(F, 3)`` translation of the motion root (:meth:`Skeleton.motion_root`), replacing its offset;
            ``None`` keeps the rest offsets.
        local_pos: ``(F, J, 3)`` per-frame translations replacing every offset (BVH position channels);
            applied before ``root_pos``.

    Returns:
        ``(positions (F, J, 3), global_quats (F, J, 4))``.
    """
    q = np.asarray(local_quats)
    if q.ndim != 3 or q.shape[1:] != (len(skel), 4):
        raise InputError(f"local_quats has shape {q.shape}, expected (F, {len(skel)}, 4)")
    F, J = q.shape[:2]
    dtype = q.dtype if q.dtype in (np.float32, np.float64) else np.float64
    trans = (
        np.broadcast_to(skel.offsets.astype(dtype), (F, J, 3)).copy()
        if local_pos is None
        else np.array(local_pos, dtype=dtype)
    )
    if root_pos is not None:
        trans[:, skel.motion_root()] = root_pos
    R_local = rot.quat_to_matrix(q)  # (F, J, 3, 3)
    R_glob = np.empty_like(R_local)
    pos = np.empty((F, J, 3), dtype=dtype)
    for j in range(J):
        p = skel.parents[j]
        if p < 0:
            R_glob[:, j] = R_local[:, j]
            pos[:, j] = trans[:, j]
        else:
            R_glob[:, j] = R_glob[:, p] @ R_local[:, j]
            pos[:, j] = pos[:, p] + np.einsum("fij,fj->fi", R_glob[:, p], trans[:, j])
    return pos, rot.matrix_to_quat(R_glob)


def global_to_local(skel: Skeleton, global_quats) -> np.ndarray:
    """Local rotations ``(F, J, 4)`` from global rotations ``(F, J, 4)``."""
    g = np.asarray(global_quats)
    out = g.copy()
    nonroot = skel.parents >= 0
    par = np.where(nonroot, skel.parents, 0)
    out[:, nonroot] = rot.quat_mul(rot.quat_conj(g[:, par[nonroot]]), g[:, nonroot])
    return out


def local_to_global(skel: Skeleton, local_quats) -> np.ndarray:
    """Global rotations ``(F, J, 4)`` from local rotations ``(F, J, 4)``."""
    q = np.asarray(local_quats)
    out = np.empty_like(q)
    for j in range(len(skel)):
        p = skel.parents[j]
        out[:, j] = q[:, j] if p < 0 else rot.quat_mul(out[:, p], q[:, j])
    return out


def _bones(skel: Skeleton) -> np.ndarray:
    """``(J,)`` bool: the joint hangs from its parent by a rigid bone (not the root, not the motion root under a
    dummy root, whose offset is a world translation)."""
    out = skel.parents >= 0
    if skel.dummy_root() is not None:
        out[skel.motion_root()] = False
    return out


def bone_lengths(skel: Skeleton, positions, mask=None) -> np.ndarray:
    """Measured length of the bone ending at each joint ``(J,)``, median over frames, in the positions' unit.

    ``positions (F, J, 3)``; ``mask (F, J)`` marks observed joints (a bone counts where both ends are).
    Bones never observed are ``nan``; joints without a bone (the root, and the motion root under a dummy root)
    are 0.
    """
    P = np.asarray(positions, dtype=np.float64)
    if P.ndim != 3 or P.shape[1:] != (len(skel), 3):
        raise InputError(f"positions has shape {P.shape}, expected (F, {len(skel)}, 3)")
    F, J = P.shape[:2]
    par = np.where(skel.parents >= 0, skel.parents, 0)
    d = np.linalg.norm(P - P[:, par], axis=-1)  # (F, J)
    ok = np.isfinite(d)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != (F, J):
            raise InputError(f"mask has shape {m.shape}, expected ({F}, {J})")
        ok &= m & m[:, par]
    d = np.where(ok, d, np.nan)
    out = np.full(J, np.nan)
    seen = ok.any(axis=0)
    if seen.any():
        out[seen] = np.nanmedian(d[:, seen], axis=0)
    out[~_bones(skel)] = 0.0
    return out


def rescale_skeleton(skel: Skeleton, lengths) -> Skeleton:
    """The skeleton with each bone's offset scaled to ``lengths (J,)``; bones whose length is ``nan`` or not
    positive, and End Sites, are scaled by the median ratio of the measured bones. Offsets that are no bone
    (see :func:`bone_lengths`) stay as they are."""
    L = np.asarray(lengths, dtype=np.float64)
    if L.shape != (len(skel),):
        raise InputError(f"lengths has shape {L.shape}, expected ({len(skel)},)")
    rest = skel.bone_lengths()
    has_bone = _bones(skel) & (rest > 1e-9)
    ratio = np.ones(len(skel))
    good = has_bone & np.isfinite(L) & (L > 0)
    ratio[good] = L[good] / rest[good]
    median = float(np.median(ratio[good])) if good.any() else 1.0
    ratio[has_bone & ~good] = median
    return skel.with_offsets(skel.offsets * ratio[:, None], median)


def _kabsch(src, dst, w) -> np.ndarray:
    """Rotation ``(F, 3, 3)`` that best maps ``src (K, 3)`` onto ``dst (F, K, 3)`` with weights ``w (K,)``."""
    H = np.einsum("k,ki,fkj->fij", w, src, dst)  # (F, 3, 3)
    U, _, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(np.swapaxes(Vt, -1, -2) @ np.swapaxes(U, -1, -2)))
    D = np.zeros_like(H)
    D[:, 0, 0] = 1.0
    D[:, 1, 1] = 1.0
    D[:, 2, 2] = np.where(d == 0, 1.0, d)
    return np.swapaxes(Vt, -1, -2) @ D @ np.swapaxes(U, -1, -2)


def analytic_ik(skel: Skeleton, positions, prior_local=None) -> tuple[np.ndarray, np.ndarray]:
    """Swing-only inverse kinematics: exact bone directions, the least rotation needed.

    Each joint starts from a reference local rotation (``prior_local (J, 4)``, e.g. the mean pose over the
    training clips; identity if ``None``); a *limb* joint is swung by the minimal rotation that points its child
    bone at the observed child, so its twist stays that of the reference; a *determined* joint is fitted to all
    its child bones at once (weighted Kabsch); a *leaf* keeps the reference. With ``prior_local=None`` this is the
    ``analytic`` baseline, with the mean pose it is ``analytic_prior``.

    Args:
        skel: skeleton whose offsets match the positions' bone lengths (see :func:`rescale_skeleton`).
        positions: ``(F, J, 3)`` global joint positions, skeleton units.
        prior_local: ``(J, 4)`` reference local rotations, or ``None``.

    Returns:
        ``(local_quats (F, J, 4), root_pos (F, 3))``; ``root_pos`` is the motion root's translation.
    """
    P = np.asarray(positions, dtype=np.float64)
    if P.ndim != 3 or P.shape[1:] != (len(skel), 3):
        raise InputError(f"positions has shape {P.shape}, expected (F, {len(skel)}, 3)")
    if not np.all(np.isfinite(P)):
        raise InputError("positions contain NaN or inf")
    F, J = P.shape[:2]
    prior = rot.quat_identity((J,)) if prior_local is None else rot.quat_normalize(prior_local)
    prior_R = rot.quat_to_matrix(prior)  # (J, 3, 3)
    G = np.empty((F, J, 3, 3))
    L = np.empty((F, J, 3, 3))
    eye = np.broadcast_to(np.eye(3), (F, 3, 3))
    for j in range(J):
        p = skel.parents[j]
        Gp = eye if p < 0 else G[:, p]
        Gj = Gp @ prior_R[j]
        kids = skel.bone_children(j)
        if kids:
            src = skel.offsets[kids]  # (K, 3) rest child bones in j's frame
            dst = P[:, kids] - P[:, j : j + 1]  # (F, K, 3) observed, world
            group = skel.group(j)
            if group == "determined":
                Gj = _kabsch(src, dst, np.ones(len(kids)))
            else:
                pred = np.einsum("fij,j->fi", Gj, src[0])
                Gj = rot.quat_to_matrix(rot.quat_between(pred, dst[:, 0])) @ Gj
        G[:, j] = Gj
        L[:, j] = np.swapaxes(Gp, -1, -2) @ Gj
    root_pos = P[:, skel.motion_root()].copy()
    if skel.dummy_root() is not None:
        # the dummy root sits at the origin; the motion root's translation is relative to it
        root_pos -= P[:, 0]
    return rot.matrix_to_quat(L), root_pos


def mean_local_rotations(local_quats) -> np.ndarray:
    """Average rotation of each joint ``(J, 4)`` over frames ``(F, J, 4)`` (principal eigenvector of the
    quaternions' outer-product sum, sign-invariant)."""
    q = rot.quat_normalize(np.asarray(local_quats, dtype=np.float64))
    M = np.einsum("fji,fjk->jik", q, q)  # (J, 4, 4)
    _, vecs = np.linalg.eigh(M)
    return rot.quat_canonical(vecs[..., -1])
