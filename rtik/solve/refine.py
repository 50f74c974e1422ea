"""Post-processing of the network's rotations, vectorised over streams and joints (numpy only).

Glossary: ``B`` streams in the batch, ``J`` skeleton joints, ``L`` local rotation matrices ``(B, J, 3, 3)``
(joint frame -> parent frame, column vectors), ``G`` global rotation matrices, ``off`` per-stream bone offsets
``(B, J, 3)`` in metres (the calibrated skeleton), ``tgt`` per-joint target positions ``(B, J, 3)`` metres, world.

Refinement (:func:`refine`) swing-corrects each non-leaf joint's GLOBAL rotation so that its (first) child bone
points along the target direction, keeping the network's twist about that bone; a *determined* joint (several
child bones, e.g. hips, chest) then turns about that bone so its other child bones match too (the least-squares
twist angle). Each joint's correction depends only on its own network rotation and the targets, never on the
corrected parent, so every joint is corrected at once; locals are recovered as ``G_parent^T G``. Leaves keep the
network's local rotation (their orientation is unobservable). The joints of a pack's ``twist_prior`` then take
the mean pose's twist about their bones (:func:`prior_twists`), and bent hinge limbs (knees, elbows: a pack's
``hinges``) turn about their own bones so that the limb's plane sets the upper bone's twist (:func:`hinges`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtik.geometry.skeleton import Skeleton

# skew(w) = (w @ _SKEW).reshape(3, 3): the cross-product matrix [w]x
_SKEW = np.zeros((3, 9))
_SKEW[0, 2 * 3 + 1], _SKEW[0, 1 * 3 + 2] = 1.0, -1.0  # x: R[2,1] = x, R[1,2] = -x
_SKEW[1, 0 * 3 + 2], _SKEW[1, 2 * 3 + 0] = 1.0, -1.0  # y: R[0,2] = y, R[2,0] = -y
_SKEW[2, 1 * 3 + 0], _SKEW[2, 0 * 3 + 1] = 1.0, -1.0  # z: R[1,0] = z, R[0,1] = -z
_EYE = np.eye(3)


@dataclass(frozen=True, eq=False)
class Tables:
    """Index tables of a skeleton's topology, computed once per solver.

    Fields:
        parents: ``(J,)`` parent index (-1 at the root).
        levels: per tree depth >= 1, the joints that need a global rotation (non-leaves) at that depth.
        level_parents: their parents, same structure.
        inner: ``(A,)`` joints with at least one child bone (they get corrected).
        primary: ``(A,)`` each inner joint's first child bone joint.
        det: ``(D,)`` positions in ``inner`` of determined joints; ``second``: ``(D, K)`` their other child bones
            (padded by repeating the last), ``second_w``: ``(D, K)`` 1/0 weights of the padding.
        det_pairs: ``(D, K + 1)`` each determined joint's (joint, child bone) pairs (positions in ``pair_joint``),
            its first child bone's first; ``det_w``: ``(D, K + 1)`` 1/0 weights of the padding.
        bones: ``(Jb,)`` joints whose offset is a rigid bone; ``ancestors``: ``(J, J)`` 1 where column joint's
            bone lies on the row joint's path from the motion root.
        motion_root: index of the joint carrying the world translation; ``dummy``: dummy root index or -1.
        below_root: ``(J, 1)`` 1 for joints at or below the motion root (they carry its translation).
        pair_joint, pair_child: ``(V,)`` (joint, child bone) pairs: every inner joint's primary bone, then each
            determined joint's other bones (``D * K``, row-major).
        local_joint, local_parent: inner joints below the root and their parents (locals recomputed for them).
        bone_parent, bone_paths: parents of ``bones`` and ``ancestors[:, bones]``.
        depth: ``(J,)`` each joint's depth (0 at the root); inner_of: ``(J,)`` its position in ``inner`` (-1: none).
    """

    parents: np.ndarray
    levels: tuple
    level_parents: tuple
    inner: np.ndarray
    primary: np.ndarray
    det: np.ndarray
    second: np.ndarray
    second_w: np.ndarray
    det_pairs: np.ndarray
    det_w: np.ndarray
    bones: np.ndarray
    ancestors: np.ndarray
    motion_root: int
    dummy: int
    below_root: np.ndarray
    pair_joint: np.ndarray
    pair_child: np.ndarray
    local_joint: np.ndarray
    local_parent: np.ndarray
    bone_parent: np.ndarray
    bone_paths: np.ndarray
    depth: np.ndarray
    inner_of: np.ndarray

    @classmethod
    def build(cls, skel: Skeleton) -> Tables:
        J = len(skel)
        par = skel.parents
        kids = [skel.bone_children(j) for j in range(J)]
        inner = [j for j in range(J) if kids[j]]
        depth = np.zeros(J, dtype=int)
        for j in range(1, J):
            depth[j] = depth[par[j]] + 1
        need = set(inner) | {j for j in range(J) if j in par[inner]}
        levels, lpar = [], []
        for d in range(1, depth.max() + 1):
            lv = [j for j in range(J) if depth[j] == d and j in need]
            if lv:
                levels.append(np.array(lv))
                lpar.append(par[lv])
        det = [i for i, j in enumerate(inner) if len(kids[j]) > 1]
        K = max([len(kids[inner[i]]) - 1 for i in det], default=1)
        second = np.array([(kids[inner[i]][1:] * K)[:K] for i in det], dtype=np.int64).reshape(len(det), K)
        second_w = np.array([[1.0 if k < len(kids[inner[i]]) - 1 else 0.0 for k in range(K)] for i in det])
        bones = [j for j in range(J) if j in {c for k in kids for c in k}]
        anc = np.zeros((J, J))
        for j in range(J):
            a = j
            while a >= 0:
                if a in bones:
                    anc[j, a] = 1.0
                a = par[a]
        mr, dummy = skel.motion_root(), skel.dummy_root()
        below = np.zeros((J, 1))
        for j in range(J):
            a = j
            while a >= 0 and a != mr:
                a = par[a]
            below[j, 0] = float(a == mr)
        inner_a, prim = np.array(inner), np.array([kids[j][0] for j in inner])
        det_a, bones_a = np.array(det, dtype=np.int64), np.array(bones)
        pair_joint = np.concatenate([inner_a, np.repeat(inner_a[det_a], K)]).astype(np.int64)
        pair_child = np.concatenate([prim, second.reshape(-1)]).astype(np.int64)
        local = inner_a[par[inner_a] >= 0]
        A, D = len(inner_a), len(det_a)
        det_pairs = np.concatenate([det_a[:, None], A + np.arange(D * K).reshape(D, K)], axis=1).astype(np.int64)
        det_w = np.concatenate([np.ones((D, 1)), second_w.reshape(D, K)], axis=1)
        inner_of = np.full(J, -1, np.int64)
        inner_of[inner_a] = np.arange(A)
        return cls(
            par, tuple(levels), tuple(lpar), inner_a, prim, det_a, second, second_w.reshape(D, K), det_pairs, det_w,
            bones_a, anc, mr, -1 if dummy is None else dummy, below, pair_joint, pair_child, local, par[local],
            par[bones_a], anc[:, bones_a], depth, inner_of,
        )  # fmt: skip


def sixd_to_matrix(r6: np.ndarray) -> np.ndarray:
    """6-D ``(..., 6)`` (first two columns) -> rotation matrices ``(..., 3, 3)`` float64 by Gram-Schmidt."""
    r = r6.astype(np.float64)
    a = _unit(r[..., :3])
    b = r[..., 3:]
    b = _unit(b - _dot(a, b)[..., None] * a)
    return np.stack([a, b, cross(a, b)], axis=-1)


def global_rotations(L: np.ndarray, t: Tables) -> np.ndarray:
    """Global rotations ``(B, J, 3, 3)`` of the joints that have children (others are left as ``L``)."""
    G = L.copy()
    for lv, lp in zip(t.levels, t.level_parents, strict=True):
        G[:, lv] = G[:, lp] @ L[:, lv]
    return G


def cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``u x v`` for ``(..., 3)`` arrays (through the skew matrix: fewer numpy calls than ``np.cross``)."""
    return ((u @ _SKEW).reshape(*u.shape[:-1], 3, 3) @ v[..., None])[..., 0]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.sqrt(v[..., None, :] @ v[..., :, None])[..., 0] + 1e-12)


def swing(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Minimal rotations ``(..., 3, 3)`` turning unit vectors ``u`` onto unit vectors ``v`` (``(..., 3)``); the
    identity where either is zero (no direction to turn)."""
    w = cross(u, v)
    c = _dot(u, v)
    R = c[..., None, None] * _EYE + (w @ _SKEW).reshape(*w.shape[:-1], 3, 3)
    R += w[..., :, None] * (w / np.maximum(1.0 + c, 1e-9)[..., None])[..., None, :]
    anti = c < -0.9999
    if anti.any():  # opposite vectors: a half turn about any axis perpendicular to u
        ua = u[anti]
        axis = _unit(cross(ua, _EYE[np.argmin(np.abs(ua), axis=-1)]))
        R[anti] = 2.0 * axis[..., :, None] * axis[..., None, :] - _EYE
    none = (_dot(u, u) < 0.5) | (_dot(v, v) < 0.5)
    if none.any():
        R[none] = _EYE
    return R


#: a child bone shorter than this fraction of its joint's longest (or than ``MIN_BONE``) aims nothing: it sits on
#: its joint (a zero-length spine at the hips, a neck on the chest), so its direction is noise
REAL_FRACTION = 0.25
MIN_BONE = 1e-6  # m
#: child bones whose parts across the aiming bone are all below sqrt(COLLINEAR) of their length (0.06 degrees)
#: are collinear with it: the twist they would give is rounding error or noise
COLLINEAR = 1e-6


def primary_pairs(off, t: Tables):
    """Per stream, the (joint, child bone) pair that aims each inner joint: its first child bone, or for a
    determined joint the first whose calibrated length is real (``REAL_FRACTION`` of its longest). -> ``(pair
    (B, A) positions in t.pair_joint, aim (B, A) the pair has a real length, real (B, D, K + 1) the determined
    joints' bones of real length)``."""
    B, A = len(off), len(t.inner)
    Lp = np.sqrt(np.einsum("bvi,bvi->bv", off[:, t.pair_child], off[:, t.pair_child]))  # (B, V)
    pair = np.broadcast_to(np.arange(A), (B, A)).copy()
    aim = Lp[:, :A] > MIN_BONE
    real = np.zeros((B, *t.det_pairs.shape), bool)
    if len(t.det):
        Ld = Lp[:, t.det_pairs] * t.det_w  # (B, D, K + 1)
        real = Ld > np.maximum(REAL_FRACTION * Ld.max(-1, keepdims=True), MIN_BONE)
        pair[:, t.det] = t.det_pairs[np.arange(len(t.det)), np.argmax(real, axis=-1)]
        aim[:, t.det] = real.any(-1)
    return pair, aim, real


def _dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (u[..., None, :] @ v[..., :, None])[..., 0, 0]


#: a hinge's lower bone must continue its upper bone in the rest pose within this angle (degrees): the bend is
#: then the angle between the two bones
HINGE_STRAIGHT = 5.0


def hinge_tables(skel: Skeleton, hinges: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(idx (H, 3) int64, axis (H, 3))``: per hinge joint of ``hinges`` (``{name: axis in its parent's
    frame}``, :attr:`rtik.models.modelpack.ModelPack.hinges`) its (upper, lower, end) joints — its parent, itself
    and its first child bone — and its axis made normal to its bone. A joint is left out where it has no child
    bone, is not its parent's first child bone, its rest pose is not straight (:data:`HINGE_STRAIGHT`) or it
    shares a joint with a hinge before it."""
    idx, axes, used = [], [], set()
    for name, axis in hinges.items():
        if name not in skel.names:
            continue
        lo = skel.index(name)
        up = int(skel.parents[lo])
        kids = skel.bone_children(lo)
        if up < 0 or not kids or skel.bone_children(up)[:1] != [lo]:
            continue
        end = kids[0]
        d_up, d_lo = skel.offsets[lo], skel.offsets[end]
        n_up, n_lo = np.linalg.norm(d_up), np.linalg.norm(d_lo)
        if n_up < MIN_BONE or n_lo < MIN_BONE:
            continue
        if np.degrees(np.arccos(np.clip(d_up @ d_lo / (n_up * n_lo), -1.0, 1.0))) > HINGE_STRAIGHT:
            continue
        if {up, lo, end} & used:
            continue
        d = d_lo / n_lo
        a = np.asarray(axis, dtype=np.float64)
        a = a - (a @ d) * d
        if np.linalg.norm(a) < 1e-6:
            continue
        used |= {up, lo, end}
        idx.append((up, lo, end))
        axes.append(a / np.linalg.norm(a))
    return np.array(idx, dtype=np.int64).reshape(-1, 3), np.array(axes, dtype=np.float64).reshape(-1, 3)


def _turn(k: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotations ``(..., 3, 3)`` by ``angle (...)`` about unit axes ``k (..., 3)``."""
    return _turn_cs(k, np.cos(angle), np.sin(angle))


def _turn_cs(k: np.ndarray, c: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Rotations ``(..., 3, 3)`` about unit axes ``k (..., 3)`` whose angles have cosines ``c`` and sines ``s``
    ``(...)`` (Rodrigues)."""
    c, s = c[..., None, None], s[..., None, None]
    return c * _EYE + s * (k @ _SKEW).reshape(*k.shape[:-1], 3, 3) + (1.0 - c) * (k[..., :, None] * k[..., None, :])


def _angle_about(D: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The signed angle ``(...)`` of rotations ``D (..., 3, 3)`` that turn about the unit axes ``k (..., 3)``."""
    s = 0.5 * np.stack([D[..., 2, 1] - D[..., 1, 2], D[..., 0, 2] - D[..., 2, 0], D[..., 1, 0] - D[..., 0, 1]], -1)
    return np.arctan2(_dot(s, k), 0.5 * (D[..., 0, 0] + D[..., 1, 1] + D[..., 2, 2] - 1.0))


def hinges(G, off, idx, axis, ramp) -> None:
    """Hinge limbs of global rotations ``G (B, J, 3, 3)`` (in place; see ``SolverOptions.hinge``): for each
    (upper, lower, end) of ``idx (H, 3)`` with hinge ``axis (H, 3)`` in the upper joint's frame, bent by ``theta``
    (the angle between the upper bone ``a`` and the lower bone ``b`` as ``G`` and ``off`` place them), with weight
    ``w`` rising from 0 to 1 over ``ramp`` = (from, full) radians:

    - the upper joint turns about ``a`` by ``w`` times the angle that takes its hinge axis onto ``n = a x b /
      |a x b|`` (a bend is a positive turn about the axis: flexion, never the other way);
    - the lower joint turns about ``b`` by ``w`` times the angle from its rotation to ``turn(n, theta) G_upper``,
      the pure hinge, which also lays ``a`` onto ``b``.

    Both turns are about the bones themselves, so no joint moves."""
    if not len(idx):
        return
    up, lo, end = idx[:, 0], idx[:, 1], idx[:, 2]
    a = (G[:, up] @ off[:, lo, :, None])[..., 0]  # (B, H, 3)
    b = (G[:, lo] @ off[:, end, :, None])[..., 0]
    ok = (_dot(a, a) > MIN_BONE**2) & (_dot(b, b) > MIN_BONE**2)
    a, b = _unit(a), _unit(b)
    theta = np.arccos(np.clip(_dot(a, b), -1.0, 1.0))
    w = np.clip((theta - ramp[0]) / (ramp[1] - ramp[0]), 0.0, 1.0) * ok
    if not w.any():
        return
    n = _unit(cross(a, b))
    hw = (G[:, up] @ axis[None, :, :, None])[..., 0]  # the hinge axis in the world
    hp = _unit(hw - _dot(hw, a)[..., None] * a)
    phi = np.arctan2(_dot(cross(hp, n), a), _dot(hp, n))
    Gu = _turn(a, w * phi) @ G[:, up]
    psi = _angle_about(_turn(n, theta) @ Gu @ np.swapaxes(G[:, lo], -1, -2), b)  # pure hinge from G_lower
    G[:, lo] = _turn(b, w * psi) @ G[:, lo]
    G[:, up] = Gu


def twist_tables(skel: Skeleton, names, prior_local) -> tuple[np.ndarray, np.ndarray]:
    """``(idx (T, 3) int64, L (T, 3, 3))``: per joint of ``names`` (a pack's ``twist_prior``) its (joint, parent,
    first child bone), parents before children, and its mean local rotation from ``prior_local (J, 4)`` XYZW as a
    matrix. Joints without a parent or a child bone, or not in ``skel``, are left out."""
    from rtik.geometry.rotations import quat_to_matrix

    rows = []
    for name in names:
        if name not in skel.names:
            continue
        j = skel.index(name)
        kids = skel.bone_children(j)
        if skel.parents[j] >= 0 and kids:
            rows.append((j, int(skel.parents[j]), kids[0]))
    depth = Tables.build(skel).depth
    rows.sort(key=lambda r: (depth[r[0]], r[0]))
    idx = np.array(rows, dtype=np.int64).reshape(-1, 3)
    Lp = quat_to_matrix(np.asarray(prior_local, np.float64)[idx[:, 0]]).reshape(-1, 3, 3)
    return idx, Lp


def prior_twists(G, off, idx, Lp, weight) -> None:
    """The mean pose's twist for the joints of :func:`twist_tables` ``(idx, Lp)``, in ``G (B, J, 3, 3)`` in place:
    each joint turns about its own bone (as ``G`` and ``off`` place it) by ``weight`` times the angle from its
    rotation to ``swing(G_parent Lp) G_parent Lp`` — its parent's rotation times the mean local rotation, swung
    minimally onto the bone (what the analytic solver with the mean-pose prior makes of it). Parents come first, so
    a child's mean pose hangs from its parent's new twist. No joint moves."""
    for k in range(len(idx)):
        j, p, c = idx[k]
        d = (G[:, j] @ off[:, c, :, None])[..., 0]
        ok = _dot(d, d) > MIN_BONE**2
        d = _unit(d)
        M = G[:, p] @ Lp[k]
        M = swing(_unit((M @ off[:, c, :, None])[..., 0]), d) @ M
        psi = _angle_about(M @ np.swapaxes(G[:, j], -1, -2), d)
        G[:, j] = _turn(d, weight * psi * ok) @ G[:, j]


#: a noise gate below this re-aims nothing (clean input: the joints are on their targets anyway)
REAIM_MIN = 0.01


def reaim(G, off, tgt, net, beta, pair, aim, root_pos, weight, t: Tables) -> None:
    """Aim each inner joint's bone from where its parent chain has put the joint rather than from the joint's
    target, by ``weight (B, J)`` (in place on ``G (B, J, 3, 3)``, parents first). The swings of :func:`refine`
    point every bone along its two targets' difference, so under noise each joint inherits its ancestors' direction
    errors and they add up down the chain (hands twice the hips' error); here a joint ``j`` at ``X_j`` (forward
    kinematics of the re-aimed ancestors, the root at ``root_pos (B, 3)``) swings its aiming bone onto ``tgt_c -
    (tgt_j + weight_j (X_j - tgt_j))``, blended with the network's direction ``net`` by ``beta`` as before. The
    solver's weight is its noise gate (the denoised position's weight) for observed joints, so clean input keeps
    their bones along the observations, and 1 for joints the input does not observe this frame, whose target is
    only a guess (an estimator's missing clavicle then aims from where the torso put it at the observed shoulder).
    Streams whose weights are all below :data:`REAIM_MIN` are left as they are. ``pair``, ``aim``:
    :func:`primary_pairs`."""
    rows = np.flatnonzero((weight >= REAIM_MIN).any(1))
    if len(rows) < len(G):
        if len(rows):
            Gr = G[rows]
            reaim(
                Gr, off[rows], tgt[rows], net[rows], beta[rows], pair[rows], aim[rows], root_pos[rows], weight[rows], t
            )
            G[rows] = Gr
        return
    X = positions(G, off, root_pos, t)
    b = np.arange(len(G))
    for lv, lp in zip(t.levels, t.level_parents, strict=True):
        moved = t.below_root[lv, 0] > 0  # joints whose place follows their parent (not the root nor above it)
        moved &= lv != t.motion_root
        if moved.any():
            j, p = lv[moved], lp[moved]
            X[:, j] = X[:, p] + (G[:, p] @ off[:, j, :, None])[..., 0]
        for j in lv:
            a = t.inner_of[j]
            if a < 0:
                continue
            v = pair[:, a]
            c = t.pair_child[v]
            cur = _unit((G[:, j] @ off[b, c][..., None])[..., 0])
            n = net[b, v]
            src = tgt[:, j] + weight[:, j, None] * (X[:, j] - tgt[:, j])
            d = _unit(n + beta[b, c][:, None] * (_unit(tgt[b, c] - src) - n))
            G[:, j] = swing(cur * aim[:, a, None], d) @ G[:, j]


def refine(G, L, off, tgt, beta, t: Tables, hinge=None, twist=None, chain=None) -> tuple[np.ndarray, np.ndarray]:
    """Correct the network's rotations towards the target positions.

    Args:
        G: ``(B, J, 3, 3)`` network global rotations (from :func:`global_rotations`).
        L: ``(B, J, 3, 3)`` network local rotations.
        off: ``(B, J, 3)`` bone offsets (metres), ``tgt``: ``(B, J, 3)`` target positions (metres, world).
        beta: ``(B, J)`` weight of the target direction against the network's (1 = follow the targets exactly).
        t: the skeleton's :class:`Tables`.
        hinge: ``(idx, axis, ramp)`` of :func:`hinges` (applied after the swings and twists), or None.
        twist: ``(idx, Lp, weight)`` of :func:`prior_twists` (applied after the swings), or None.
        chain: ``(root_pos (B, 3), weight (B, J))``: where the root goes and how far the bones are then re-aimed
            from where their parent chains put their joints (:func:`reaim`, before the twists and hinges); None: not.

    Returns:
        ``(L_out, G_out)``: refined local and global rotations ``(B, J, 3, 3)`` (G valid for inner joints).
    """
    B = len(G)
    # every (joint, child bone) pair at once: the primary bones first, then the determined joints' other bones
    net = (G[:, t.pair_joint] @ off[:, t.pair_child, :, None])[..., 0]  # (B, V, 3) network bone directions
    net = _unit(net)
    want = _unit(tgt[:, t.pair_child] - tgt[:, t.pair_joint])
    want = _unit(net + beta[:, t.pair_child, None] * (want - net))  # blended target directions
    # each joint is aimed by its first child bone of real length; one without any keeps the network's rotation
    pair, aim, real = primary_pairs(off, t)
    b = np.arange(B)[:, None]
    S = swing(net[b, pair] * aim[..., None], want[b, pair])  # (B, A, 3, 3)
    G_out = G.copy()
    G_out[:, t.inner] = S @ G[:, t.inner]
    if len(t.det):
        dp = pair[:, t.det]  # (B, D) the aiming pair
        a = want[b, dp]  # (B, D, 3) the swung aiming bone: the twist axis
        u = (S[:, t.det, None] @ net[:, t.det_pairs][..., None])[..., 0]  # (B, D, K + 1, 3) bones after the swing
        v = want[:, t.det_pairs]
        w = real * (t.det_pairs[None] != dp[..., None])  # the other bones of real length
        ax = np.broadcast_to(a[:, :, None], u.shape)
        # twist angle about a lining u up with v (projections on the plane normal to a), least squares over K
        s = (_dot(cross(ax, u), v) * w).sum(-1)
        c = ((_dot(u, v) - _dot(u, ax) * _dot(v, ax)) * w).sum(-1)
        n = np.hypot(s, c)
        # every other bone along the axis (collinear children, within COLLINEAR): no twist to read, keep it
        flat = n < COLLINEAR * np.maximum(w.sum(-1), 1.0)
        n = np.where(flat, 1.0, n)
        s, c = np.where(flat, 0.0, s / n), np.where(flat, 1.0, c / n)  # (B, D)
        T = _turn_cs(a, c, s)  # (B, D, 3, 3)
        dj = t.inner[t.det]
        G_out[:, dj] = T @ G_out[:, dj]
    if chain is not None:
        reaim(G_out, off, tgt, net, beta, pair, aim, *chain, t)
    if twist is not None:
        prior_twists(G_out, off, *twist)
    if hinge is not None:
        hinges(G_out, off, *hinge)
    if t.dummy >= 0:
        G_out[:, t.dummy] = _EYE
    L_out = L.copy()
    L_out[:, t.local_joint] = np.swapaxes(G_out[:, t.local_parent], -1, -2) @ G_out[:, t.local_joint]
    if t.parents[t.inner[0]] < 0:
        L_out[:, t.inner[0]] = G_out[:, t.inner[0]]
    return L_out, G_out


def positions(G, off, root_pos, t: Tables) -> np.ndarray:
    """Joint positions ``(B, J, 3)`` by forward kinematics from global rotations (of the inner joints) and
    bone offsets: every bone vector at once, summed along each joint's path (no chain loop)."""
    bv = (G[:, t.bone_parent] @ off[:, t.bones, :, None])[..., 0]  # (B, Jb, 3)
    P = t.bone_paths @ bv  # (J, Jb) @ (B, Jb, 3)
    P += root_pos[:, None, :] * t.below_root[None]
    return P


def _quat_map() -> tuple[np.ndarray, np.ndarray]:
    """Linear map from a flat matrix ``(9,)`` to ``4 q q^T`` ``(16,)`` (x, y, z, w rows)."""
    A, b = np.zeros((9, 16)), np.zeros(16)
    e = {(i, j): 3 * i + j for i in range(3) for j in range(3)}
    diag = ((1, 1, -1, -1), (1, -1, 1, -1), (1, -1, -1, 1), (1, 1, 1, 1))  # 1, m00, m11, m22 coefficients
    for k, (c0, c1, c2, c3) in enumerate(diag):
        b[5 * k] = c0
        A[e[0, 0], 5 * k], A[e[1, 1], 5 * k], A[e[2, 2], 5 * k] = c1, c2, c3
    off = {
        (0, 1): ((0, 1, 1), (1, 0, 1)), (0, 2): ((0, 2, 1), (2, 0, 1)), (1, 2): ((1, 2, 1), (2, 1, 1)),
        (0, 3): ((2, 1, 1), (1, 2, -1)), (1, 3): ((0, 2, 1), (2, 0, -1)), (2, 3): ((1, 0, 1), (0, 1, -1)),
    }  # fmt: skip
    for (r, c), terms in off.items():
        for i, j, sgn in terms:
            A[e[i, j], 4 * r + c] += sgn
            A[e[i, j], 4 * c + r] += sgn
    return A, b


_QA, _QB = _quat_map()


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` -> unit quaternions ``(..., 4)`` XYZW, ``w >= 0``.

    Branch-free Shepperd: the symmetric matrix ``4 q q^T`` is linear in ``R``; its row with the largest diagonal
    entry is ``4 q_k q``, well conditioned for every angle."""
    m = R.reshape(-1, 9)
    Q = (m @ _QA + _QB).reshape(-1, 4, 4)
    k = np.argmax(Q[:, _DIAG4, _DIAG4], axis=1)
    q = Q[np.arange(len(m)), k]  # (N, 4)
    q *= np.where(q[:, 3:] < 0, -1.0, 1.0) / np.sqrt(np.einsum("ni,ni->n", q, q))[:, None]
    return q.reshape(*R.shape[:-2], 4)


_DIAG4 = np.arange(4)
