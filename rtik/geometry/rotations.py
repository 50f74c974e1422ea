"""Rotation representations and conversions (numpy only).

Conventions, stated once for the whole project:

- **Quaternion** ``(..., 4)``, order **XYZW** (scalar last), unit norm. This matches scipy, roma, Unity and the
  VMC protocol, so no reordering happens at any edge of rtik.
- **Rotation matrix** ``(..., 3, 3)`` acting on column vectors: ``v' = R @ v``. A joint's *local* rotation maps
  vectors from the joint's frame into its parent's frame; a *global* rotation maps into the world frame.
- **6-D** ``(..., 6)``: the first two COLUMNS of the matrix, concatenated ``[R[:, 0], R[:, 1]]``
  (the roma convention); decoded by Gram-Schmidt.
- **Axis-angle** ``(..., 3)``: rotation vector, axis times angle in radians.
- **Euler** ``(..., 3)`` in **degrees**, with an order string of three distinct axes such as ``"ZXY"``, read in
  BVH's intrinsic convention: ``"ZXY"`` means ``R = Rz(a0) @ Rx(a1) @ Ry(a2)``, angles in the order written.

Every function accepts any leading batch shape and keeps the input's floating dtype (float32 or float64).

Glossary: ``q`` quaternion, ``R`` matrix, ``r6`` 6-D, ``aa`` axis-angle, ``u, v`` unit vectors.
"""

from __future__ import annotations

import numpy as np

from rtik.errors import RtikError

AXES = "XYZ"
EULER_ORDERS = ("XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX")
_EPS = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}


def _float(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    return x


def _eps(x: np.ndarray) -> float:
    return _EPS[x.dtype]


# ----------------------------------------------------------------------------------------------- quaternions
def quat_identity(shape: tuple[int, ...] = (), dtype=np.float64) -> np.ndarray:
    """Identity quaternions of batch ``shape`` -> ``(*shape, 4)`` XYZW."""
    q = np.zeros((*shape, 4), dtype=dtype)
    q[..., 3] = 1.0
    return q


def quat_normalize(q) -> np.ndarray:
    """Unit quaternions ``(..., 4)``; a zero quaternion becomes the identity."""
    q = _float(q)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    out = q / np.maximum(n, _eps(q))
    bad = n[..., 0] < _eps(q)
    if np.any(bad):
        out[bad] = quat_identity(dtype=q.dtype)
    return out


def quat_canonical(q) -> np.ndarray:
    """The same rotation with a non-negative scalar part (``q`` and ``-q`` are one rotation)."""
    q = _float(q)
    return np.where(q[..., 3:4] < 0, -q, q)


def quat_conj(q) -> np.ndarray:
    """Conjugate = inverse of a unit quaternion ``(..., 4)``."""
    q = _float(q)
    return np.concatenate([-q[..., :3], q[..., 3:]], axis=-1)


quat_inv = quat_conj


def quat_mul(a, b) -> np.ndarray:
    """Hamilton product ``a * b`` ``(..., 4)``: the rotation ``b`` followed by ``a`` (like ``Ra @ Rb``)."""
    a, b = _float(a), _float(b)
    ax, ay, az, aw = np.moveaxis(a, -1, 0)
    bx, by, bz, bw = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        axis=-1,
    )


def quat_apply(q, v) -> np.ndarray:
    """Rotate vectors ``v (..., 3)`` by unit quaternions ``q (..., 4)``."""
    q, v = _float(q), _float(v)
    xyz, w = q[..., :3], q[..., 3:]
    t = 2.0 * np.cross(xyz, v)
    return v + w * t + np.cross(xyz, t)


def quat_to_matrix(q) -> np.ndarray:
    """Unit quaternions ``(..., 4)`` XYZW -> matrices ``(..., 3, 3)``."""
    q = quat_normalize(q)
    x, y, z, w = np.moveaxis(q, -1, 0)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz, wx, wy, wz = x * y, x * z, y * z, w * x, w * y, w * z
    R = np.stack(
        [
            1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy),
            2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx),
            2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy),
        ],
        axis=-1,
    )  # fmt: skip
    return R.reshape(*q.shape[:-1], 3, 3)


def matrix_to_quat(R) -> np.ndarray:
    """Matrices ``(..., 3, 3)`` -> unit quaternions ``(..., 4)`` XYZW with ``w >= 0``.

    Shepperd's method: the largest of the four squared components is taken from the diagonal and the other
    three from off-diagonal sums, which stays accurate for every angle, 180° included.
    """
    R = _float(R)
    m = R.reshape(-1, 3, 3)
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    # candidates 4*q_k^2 for k = x, y, z, w
    d = np.stack([1 + 2 * m[:, 0, 0] - tr, 1 + 2 * m[:, 1, 1] - tr, 1 + 2 * m[:, 2, 2] - tr, 1 + tr], axis=-1)
    k = np.argmax(d, axis=-1)
    s = np.sqrt(np.maximum(d[np.arange(len(m)), k], _eps(R)))  # = 2|q_k|
    q = np.empty((len(m), 4), dtype=R.dtype)
    # off-diagonal combinations: 4 q_i q_j
    yz_p, yz_m = m[:, 2, 1] + m[:, 1, 2], m[:, 2, 1] - m[:, 1, 2]
    xz_p, xz_m = m[:, 0, 2] + m[:, 2, 0], m[:, 0, 2] - m[:, 2, 0]
    xy_p, xy_m = m[:, 1, 0] + m[:, 0, 1], m[:, 1, 0] - m[:, 0, 1]
    for idx, cols in enumerate(
        (
            (s, xy_p / s, xz_p / s, yz_m / s),  # x largest: x, y, z, w
            (xy_p / s, s, yz_p / s, xz_m / s),  # y largest
            (xz_p / s, yz_p / s, s, xy_m / s),  # z largest
            (yz_m / s, xz_m / s, xy_m / s, s),  # w largest
        )
    ):
        sel = k == idx
        if np.any(sel):
            q[sel] = np.stack([c[sel] for c in cols], axis=-1)
    q *= 0.5
    return quat_canonical(quat_normalize(q)).reshape(*R.shape[:-2], 4)


def quat_to_axis_angle(q) -> np.ndarray:
    """Unit quaternions ``(..., 4)`` -> rotation vectors ``(..., 3)``, angle in ``[0, pi]``."""
    q = quat_canonical(quat_normalize(q))
    xyz, w = q[..., :3], q[..., 3]
    s = np.linalg.norm(xyz, axis=-1)
    angle = 2.0 * np.arctan2(s, w)
    # angle / sin(angle/2) -> 2 as s -> 0 (series keeps tiny angles exact)
    small = s < 1e-4
    scale = np.where(small, 2.0 + (angle**2) / 12.0, angle / np.where(small, 1.0, s))
    return xyz * scale[..., None]


def axis_angle_to_quat(aa) -> np.ndarray:
    """Rotation vectors ``(..., 3)`` (radians) -> unit quaternions ``(..., 4)`` XYZW."""
    aa = _float(aa)
    angle = np.linalg.norm(aa, axis=-1)
    half = 0.5 * angle
    small = angle < 1e-4
    # sin(a/2)/a -> 1/2 - a^2/48 as a -> 0
    k = np.where(small, 0.5 - angle**2 / 48.0, np.sin(half) / np.where(small, 1.0, angle))
    return np.concatenate([aa * k[..., None], np.cos(half)[..., None]], axis=-1)


def quat_angle(q) -> np.ndarray:
    """Rotation angle in radians ``(...,)`` of unit quaternions, in ``[0, pi]``."""
    q = _float(q)
    return 2.0 * np.arctan2(np.linalg.norm(q[..., :3], axis=-1), np.abs(q[..., 3]))


def quat_slerp(a, b, t) -> np.ndarray:
    """Spherical interpolation from ``a`` to ``b`` (``(..., 4)``) at ``t`` (broadcast, 0..1), shortest path."""
    a, b = quat_normalize(a), quat_normalize(b)
    t = np.asarray(t, dtype=a.dtype)[..., None]  # (..., 1)
    dot = np.sum(a * b, axis=-1, keepdims=True)
    b = np.where(dot < 0, -b, b)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin = np.sin(theta)
    near = sin < 1e-6
    safe = np.where(near, 1.0, sin)
    wa = np.where(near, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    wb = np.where(near, t, np.sin(t * theta) / safe)
    return quat_normalize(wa * a + wb * b)


def quat_between(u, v) -> np.ndarray:
    """Minimal rotation taking directions ``u`` to ``v`` (``(..., 3)``, any length) -> ``(..., 4)``.

    Antiparallel inputs give a 180° turn about an axis perpendicular to ``u``; a zero vector gives identity.
    """
    u, v = _float(u), _float(v)
    u = u / np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), _eps(u))
    v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), _eps(v))
    d = np.sum(u * v, axis=-1, keepdims=True)
    c = np.cross(u, v)
    q = np.concatenate([c, 1.0 + d], axis=-1)  # (..., 4) twice the half-way rotation, norm ~ the angle to pi
    # |q| ~ pi - angle near antiparallel: below sqrt(eps) the axis from the cross product is noise, and the
    # exact 180° turn about any perpendicular axis is at most sqrt(eps) away from the answer
    anti = (np.linalg.norm(q, axis=-1) < np.sqrt(np.finfo(u.dtype).eps)) & (np.linalg.norm(u, axis=-1) > 0)
    if np.any(anti):
        ua = u[anti]
        # any axis perpendicular to u: cross with the world axis least aligned with it
        helper = np.eye(3, dtype=u.dtype)[np.argmin(np.abs(ua), axis=-1)]
        axis = np.cross(ua, helper)
        q[anti] = np.concatenate([axis, np.zeros_like(axis[..., :1])], axis=-1)
    return quat_normalize(q)


def swing_twist(q, axis) -> tuple[np.ndarray, np.ndarray]:
    """Split ``q = swing * twist`` where ``twist`` turns about ``axis`` (``(..., 3)``, in the rotated frame).

    Returns ``(swing, twist)`` unit quaternions ``(..., 4)``. The twist is the rotation about the bone axis
    that positions cannot observe; the swing moves the axis.
    """
    q = quat_normalize(q)
    axis = _float(axis)
    axis = axis / np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), _eps(axis))
    proj = np.sum(q[..., :3] * axis, axis=-1, keepdims=True) * axis
    twist = np.concatenate([proj, q[..., 3:]], axis=-1)
    twist = quat_normalize(twist)  # a pure 180° swing gives a zero twist -> identity
    swing = quat_mul(q, quat_conj(twist))
    return swing, twist


# -------------------------------------------------------------------------------------------------- matrices
def matrix_to_6d(R) -> np.ndarray:
    """Matrices ``(..., 3, 3)`` -> 6-D ``(..., 6)``: first column then second column."""
    R = _float(R)
    return np.concatenate([R[..., :, 0], R[..., :, 1]], axis=-1)


def sixd_to_matrix(r6) -> np.ndarray:
    """6-D ``(..., 6)`` -> rotation matrices ``(..., 3, 3)`` by Gram-Schmidt (columns a, b, a x b)."""
    r6 = _float(r6)
    a1, a2 = r6[..., :3], r6[..., 3:]
    eps = _eps(r6)
    b1 = a1 / np.maximum(np.linalg.norm(a1, axis=-1, keepdims=True), eps)
    b2 = a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1
    b2 = b2 / np.maximum(np.linalg.norm(b2, axis=-1, keepdims=True), eps)
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=-1)


def matrix_angle(Ra, Rb) -> np.ndarray:
    """Geodesic angle in radians ``(...,)`` between rotation matrices ``Ra`` and ``Rb``."""
    Ra, Rb = _float(Ra), _float(Rb)
    rel = np.swapaxes(Ra, -1, -2) @ Rb
    return quat_angle(matrix_to_quat(rel))


def quat_geodesic(qa, qb) -> np.ndarray:
    """Geodesic angle in radians ``(...,)`` between unit quaternions (sign-invariant)."""
    qa, qb = quat_normalize(qa), quat_normalize(qb)
    # atan2 of the relative rotation stays accurate for tiny angles, where 2*acos(|dot|) does not
    return quat_angle(quat_mul(quat_conj(qa), qb))


# ---------------------------------------------------------------------------------------------------- Euler
def _check_order(order: str) -> tuple[int, int, int]:
    o = order.upper()
    if len(o) != 3 or set(o) != set(AXES):
        raise RtikError(f"unknown Euler order {order!r}; valid orders: {', '.join(EULER_ORDERS)}")
    return AXES.index(o[0]), AXES.index(o[1]), AXES.index(o[2])


def axis_matrix(axis: int, angle_rad) -> np.ndarray:
    """Elementary rotation about X (0), Y (1) or Z (2) by ``angle_rad (...)`` -> ``(..., 3, 3)``."""
    a = _float(angle_rad)
    c, s = np.cos(a), np.sin(a)
    R = np.zeros((*a.shape, 3, 3), dtype=a.dtype)
    i, j = (axis + 1) % 3, (axis + 2) % 3
    R[..., axis, axis] = 1.0
    R[..., i, i] = c
    R[..., j, j] = c
    R[..., i, j] = -s
    R[..., j, i] = s
    return R


def euler_to_matrix(angles_deg, order: str) -> np.ndarray:
    """Euler angles ``(..., 3)`` in degrees, intrinsic ``order`` (BVH) -> matrices ``(..., 3, 3)``."""
    i, j, k = _check_order(order)
    a = np.deg2rad(_float(angles_deg))
    return axis_matrix(i, a[..., 0]) @ axis_matrix(j, a[..., 1]) @ axis_matrix(k, a[..., 2])


def matrix_to_euler(R, order: str) -> np.ndarray:
    """Matrices ``(..., 3, 3)`` -> Euler angles ``(..., 3)`` in degrees, intrinsic ``order`` (BVH).

    The middle angle lies in ``[-90, 90]``. At gimbal lock (middle angle ±90° to rounding) the last angle is 0 and
    the first takes the whole remaining turn. The last angle is always read from the residual rotation
    ``(R_a R_b)^T R``, so the result reproduces ``R`` to rounding error even near gimbal lock, where the first
    and last angles are individually ill-conditioned.
    """
    i, j, k = _check_order(order)
    R = _float(R)
    s = 1.0 if (j - i) % 3 == 1 else -1.0  # +1 for cyclic orders (XYZ, YZX, ZXY)
    sin_b = np.clip(s * R[..., i, k], -1.0, 1.0)
    cos_b = np.hypot(R[..., i, i], R[..., i, j])
    beta = np.arctan2(sin_b, cos_b)
    alpha = np.arctan2(-s * R[..., j, k], R[..., k, k])
    lock = cos_b < 16 * np.finfo(R.dtype).eps  # exactly locked up to rounding: the last angle is free, take 0
    if np.any(lock):
        alpha = np.where(lock, np.arctan2(s * R[..., k, j], R[..., j, j]), alpha)
    rest = np.swapaxes(axis_matrix(i, alpha) @ axis_matrix(j, beta), -1, -2) @ R  # ideally a turn about axis k
    k1, k2 = (k + 1) % 3, (k + 2) % 3
    gamma = np.arctan2(rest[..., k2, k1], rest[..., k1, k1])
    return np.rad2deg(np.stack([alpha, beta, gamma], axis=-1)).astype(R.dtype, copy=False)


def euler_to_quat(angles_deg, order: str) -> np.ndarray:
    """Euler angles ``(..., 3)`` degrees, intrinsic ``order`` -> unit quaternions ``(..., 4)`` XYZW, ``w >= 0``.

    The product of the three elementary half-angle quaternions, in the order written (``q_a0 * q_a1 * q_a2``).
    """
    axes = _check_order(order)
    half = 0.5 * np.deg2rad(_float(angles_deg))
    c, s = np.cos(half), np.sin(half)
    q = None
    for n, axis in enumerate(axes):
        e = np.zeros((*half.shape[:-1], 4), dtype=half.dtype)
        e[..., axis] = s[..., n]
        e[..., 3] = c[..., n]
        q = e if q is None else quat_mul(q, e)
    return quat_canonical(q)


def quat_to_euler(q, order: str) -> np.ndarray:
    """Quaternions ``(..., 4)`` XYZW -> Euler angles ``(..., 3)`` degrees, intrinsic ``order``."""
    return matrix_to_euler(quat_to_matrix(q), order)
