"""The solver's numpy path: the checks a pushed frame must pass, and the vectorised per-frame pre- and
post-processing around the network (:func:`pre`, :func:`post`, with the same contracts as the kernels').

It is the reference the compiled kernels (:mod:`rtik.solve.kernels`) are tested against, and the path taken where numba
is missing or the solver is built with ``kernels="numpy"``; :func:`check_frame` also names what is wrong with any
frame the compiled push refuses. Both take the :class:`rtik.solve.solver.Solver` as ``sv`` and work on its per-stream
arrays (slot-indexed, see ``Solver._alloc``). Units: metres inside; float64 unless stated.
"""

from __future__ import annotations

import math

import numpy as np

from rtik.errors import InputError
from rtik.formats.units import METRES
from rtik.solve import refine as rf

UNITS = METRES  # metres per unit of a stream
#: a frame whose observed joints all lie closer together than this (m) is no body: it is refused
MIN_SPAN = 0.05

# R_y(yaw) as a flat 3x3 matrix: [cos, sin] @ _RY_CS + _RY_0
_RY_CS = np.zeros((2, 9))
_RY_CS[0, [0, 8]] = 1.0
_RY_CS[1, 2], _RY_CS[1, 6] = 1.0, -1.0
_RY_0 = np.zeros(9)
_RY_0[4] = 1.0


def check_frame(sv, s, positions, timestamp, mask):
    """Check a frame of stream ``s`` (a :class:`rtik.solve.solver.StreamInfo`) and map it to the model's input joints:
    ``(P (Ji, 3) stream units, M (Ji,) bool observed, timestamp)``. Raises :class:`InputError` naming what is
    wrong: shape, a timestamp or an observed joint that is not finite, a mask of the wrong size, nothing observed,
    every joint on one point (wrong units?), the root missing from a stream's first frame."""
    P = np.asarray(positions, dtype=np.float64)
    Js = s.layout.num_source_joints
    if P.shape != (Js, 3):
        raise InputError(
            f"stream {s.name!r}: frame has shape {P.shape}, expected ({Js}, 3) for layout {s.layout.layout.name!r}"
        )
    ts = float(timestamp)
    if not math.isfinite(ts):
        raise InputError(f"stream {s.name!r}: timestamp {timestamp!r} is not finite")
    if mask is None:
        if not np.isfinite(P).all():
            bad = [s.layout.layout.joints[i] for i in np.flatnonzero(~np.isfinite(P).all(axis=1))]
            raise InputError(f"stream {s.name!r}: NaN or inf at {', '.join(bad)} (mask them as missing)")
        m = None
    else:
        m = np.asarray(mask).reshape(-1).astype(bool)
        if m.shape != (Js,):
            raise InputError(f"stream {s.name!r}: mask has {m.size} entries, expected {Js}")
        finite = np.isfinite(P).all(axis=1)
        if (m & ~finite).any():
            bad = [s.layout.layout.joints[i] for i in np.flatnonzero(m & ~finite)]
            raise InputError(f"stream {s.name!r}: NaN or inf at observed joints {', '.join(bad)}")
    P, M = s.layout.apply(P, m)
    n_obs = int(np.count_nonzero(M))
    if not n_obs:
        raise InputError(f"stream {s.name!r}: no joint of the model is observed in this frame")
    if n_obs > 1:
        Q = P if n_obs == len(M) else P[M]
        span = float((Q.max(axis=0) - Q.min(axis=0)).max()) * UNITS[s.units]
        if span < MIN_SPAN:
            raise InputError(
                f"stream {s.name!r}: degenerate frame, the observed joints span {span * 100:.2f} cm "
                f"(less than {MIN_SPAN * 100:.0f} cm; wrong units?)"
            )
    if not M[sv.root_in] and sv._fresh[s.slot]:
        raise InputError(
            f"stream {s.name!r}: the root joint {sv.pack.norm.root!r} is missing and there is no previous frame"
        )
    return P, M, ts


def pre(sv, slots, P_in, M_in, ts, forced):
    """Before the network, for ``B`` streams in slots ``slots`` of solver ``sv`` (frames ``P_in (B, Ji, 3)`` in
    stream units, ``M_in (B, Ji)`` observed, timestamps ``ts (B,)``, ``forced (B,)`` resets asked for): resets
    (their recurrent state zeroed), bone calibration, heading, normalisation. Returns, as :func:`rtik.solve.kernels.pre`
    does, ``(pos (B, Ji, 3) float32, mask (B, Ji) float32, reset (B,), fresh (B,), P (B, Ji, 3) m, root (B, 3),
    cs (B, 2) heading cos/sin, size (B,), off (B, J, 3) calibrated offsets, dev (B, Nb) bone-length deviations,
    seen (B, Nb) bones observed, W (B, C, 3, 3) the clusters' frames (:func:`rest_frames`))``. Written for few
    numpy calls: input-joint space, bones in bone space, a fast path when every joint is observed; no per-stream
    Python loop."""
    o = sv.options
    B, ri = len(slots), sv.root_in
    full = M_in.all()
    P = P_in * sv._scale[slots][:, None, None]  # (B, Ji, 3) metres
    root = P[:, ri]
    if not full and not M_in[:, ri].all():  # root missing: move the last root with the observed joints
        miss = ~M_in[:, ri]
        prev = sv._last_tgt[slots]
        w = M_in[:, :, None]
        shift = np.where(w, P - prev, 0.0).sum(1) / np.maximum(w.sum(1), 1)
        root = np.where(miss[:, None], sv._last_root[slots] + shift, root)
        P[:, ri] = root
    # ---- resets: first frame, reset(), NaN burst, gap, time going backwards, teleport
    dt = ts - sv._last_ts[slots]
    dr = root - sv._last_root[slots]
    lim = o.max_speed * np.maximum(dt, 0.0) + o.teleport_slack
    fresh = sv._fresh[slots]
    reset = fresh | forced | (dt > o.gap_s) | (dt < 0) | (np.einsum("bi,bi->b", dr, dr) > lim * lim)
    sv._state[slots[reset]] = 0.0
    # ---- bone lengths: measured this frame, running robust estimate (steps clipped to eta)
    bv = P[:, sv.b_child] - P[:, sv.b_parent]
    d = np.sqrt(np.einsum("bki,bki->bk", bv, bv))  # (B, Nb)
    sb_idx = (slots[:, None], sv.b_joint)
    L0 = sv._blen[sb_idx]
    n = sv._nobs[sb_idx]
    locked = sv._locked[slots]
    seen = np.ones_like(d, bool) if full else M_in[:, sv.b_child] & M_in[:, sv.b_parent]  # (B, Nb)
    if not full:  # bones never observed in this stream: from the last targets (the denoiser's positions)
        L0, n = _calibrate_unseen(sv, slots, sb_idx, L0, n, seen, fresh)
    dev = np.abs(d - L0)  # nan where not yet known
    if not locked.all():
        upd = seen & ~locked[:, None]
        eta = np.maximum(o.calib_rate * 10.0 * L0 / (10.0 + np.maximum(n, 0.0)), o.calib_floor)
        L = np.where(n <= 0, d, L0 + np.clip(d - L0, -eta, eta))
        L = np.where(upd, L, L0)
        sv._blen[sb_idx] = L
        sv._nobs[sb_idx] = np.where(upd, np.maximum(n, 0.0) + 1.0, n)
    else:
        L = L0
    known = np.isfinite(L)
    if not known.all():  # bones never seen: rest length times the stream's mean measured/rest ratio
        ratio = np.where(known, L / sv.b_rest, 0.0)
        mean = np.where(known.any(1), ratio.sum(1) / np.maximum(known.sum(1), 1), 1.0)
        L = np.where(known, L, sv.b_rest * mean[:, None])
    off = np.zeros((B, sv.J, 3))
    off[:, sv.b_joint] = sv.b_dir * L[..., None]  # calibrated offsets, metres
    W = _calibrate_clusters(sv, slots, P, M_in, locked, off) if sv.C else np.zeros((B, 0, 3, 3))
    size = L @ sv.b_size  # (B,) body size
    # ---- heading from the left-right vectors (kept from the last frame when not observable)
    lat = P[:, sv.left] - P[:, sv.right]
    if not full:
        lat *= (M_in[:, sv.left] & M_in[:, sv.right])[..., None]
    lat = lat.sum(1)
    nrm = np.hypot(lat[:, 0], lat[:, 2])
    ok = nrm > sv.pack.norm.min_lateral * size
    cs = np.where(ok[:, None], lat[:, ::2] * [1.0, -1.0] / np.maximum(nrm, 1e-12)[:, None], sv._cs[slots])
    Ry = _heading(cs)
    # ---- normalise: R_y(-yaw) (p - root) / size, missing joints zero
    rel = P - root[:, None]
    pos = rel @ Ry  # row vectors: (Ry^T v)^T = v^T Ry
    pos *= (1.0 / size)[:, None, None]
    if not full:
        pos *= M_in[..., None]
    return pos.astype(np.float32), M_in.astype(np.float32), reset, fresh, P, root, cs, size, off, dev, seen, W


def _calibrate_unseen(sv, slots, sb_idx, L0, n, seen, fresh):
    """Bones whose two joints this stream has never shown together (an estimator's spine, neck and clavicles): a
    running mean of their length between the previous frame's targets, where the denoiser placed the joints the
    input lacks, so that the observed joints below them are reached (their count ``nobs`` runs negative; the
    bone's first observation replaces the estimate). Returns the updated ``(L0, n)``."""
    unseen = (n <= 0) & ~seen & ~fresh[:, None]
    if not unseen.any():
        return L0, n
    T = sv._last_tgt[slots]
    tv = T[:, sv.b_child] - T[:, sv.b_parent]
    td = np.sqrt(np.einsum("bki,bki->bk", tv, tv))
    L0 = np.where(unseen, np.where(n < 0, L0 + (td - L0) / np.maximum(1.0 - n, 1.0), td), L0)
    n = np.where(unseen, n - 1.0, n)
    sv._blen[sb_idx] = L0
    sv._nobs[sb_idx] = n
    return L0, n


def post(sv, r6, clean, M_in, fresh, P, root, cs, size, off, dev, seen, W, slots, ts):
    """After the network (``r6 (B, J, 6)``, ``clean (B, Ji, 3)`` float32), with what :func:`pre` returned:
    denoised targets, the input-noise estimate, rotations, refinement and FK; the streams' state updated. Returns,
    as :func:`rtik.solve.kernels.post` does, ``(local_quats (B, J, 4) float32, root_pos (B, 3) float32 m, positions
    (B, J, 3) float32 m, noise (B,) m)``."""
    o, t = sv.options, sv.tables
    B, full = len(slots), M_in.all()
    Ry = _heading(cs)
    # ---- denoised positions in the world, input-noise estimate, targets
    den = (clean @ np.swapaxes(Ry, 1, 2)) * size[:, None, None] + root[:, None]
    e = P - den
    if o.spike is not None:
        spike = _spikes(sv, slots, M_in, dev, seen, fresh)
        if spike.any():
            M_in = M_in & ~spike
            full = False
    if o.bias_time is not None:
        # the denoiser's lasting offset per joint (heading frame, body size), taken off the targets below: on a
        # body or motion it was not trained on it keeps some joints where the input never is
        en = -(e @ Ry) / size[:, None, None]
        prev = np.where(fresh[:, None, None], 0.0, sv._dbias[slots])
        rate = np.where(fresh, 1.0, 1.0 - np.exp(-np.maximum(ts - sv._last_ts[slots], 0.0) / o.bias_time))
        bias = prev + rate[:, None, None] * (en - prev)
        bias = np.where(M_in[..., None] & ~sv.bias_fixed[:, None], bias, prev)
        sv._dbias[slots] = bias
    ed = np.sqrt(np.einsum("bji,bji->bj", e, e))
    # noise: robust scale of the raw-to-denoised distances and of the bone-length deviations (bones with a
    # length estimate, seen this frame)
    r_den = (ed.sum(1) / ed.shape[1] if full else (ed * M_in).sum(1) / np.maximum(M_in.sum(1), 1)) / 1.6
    sb = seen & ~np.isnan(dev)
    r_bone = np.where(sb, dev, 0.0).sum(1) / np.maximum(sb.sum(1), 1) / 1.13
    sigma = np.minimum(r_den, r_bone)
    noise = sv._noise[slots]
    noise = np.where(fresh, sigma, noise + o.noise_rate * (sigma - noise))
    sv._noise[slots] = noise
    v2 = noise * noise
    gate = v2 / (v2 + o.sigma_denoise**2)  # weight of the denoised position (and of re-aiming, rf.reaim)
    alpha = gate[:, None, None] if full else np.where(M_in, gate[:, None], 1.0)[..., None]
    if o.bias_time is not None:
        den = den - (sv._dbias[slots] @ np.swapaxes(Ry, 1, 2)) * size[:, None, None]
    move = den - P
    if o.denoise_reach is not None:  # no further from the observation than the noise can explain
        reach = o.denoise_reach * np.maximum(noise, 1e-6)[:, None]
        dist = np.sqrt(np.einsum("bji,bji->bj", move, move))
        keep = np.minimum(1.0, reach / np.maximum(dist, 1e-12))
        move = move * (keep if full else np.where(M_in, keep, 1.0))[..., None]
    tgt_in = P + alpha * move
    M_tgt = M_in  # joints whose target stands (observed, or held through a gap)
    if o.gap_hold is not None:
        M_tgt = _hold_gaps(sv, slots, tgt_in, den, M_in, full, Ry, size, off, fresh, ts)
    if sv.C:
        _place_virtual(sv, slots, tgt_in, M_tgt, off, W)
    tgt = np.zeros((B, sv.J, 3))
    tgt[:, sv.in_idx] = tgt_in
    beta = (o.sigma_network**2 / (v2 + o.sigma_network**2))[:, None] * sv.bone_in  # (B, J)
    # ---- rotations: 6-D -> matrices, root back to world heading, refinement
    Lm = rf.sixd_to_matrix(r6)
    mr = t.motion_root
    Lm[:, mr] = Ry @ Lm[:, mr]
    if t.dummy >= 0:
        Lm[:, t.dummy] = rf._EYE
    G = rf.global_rotations(Lm, t)
    hinge, twist = (sv.hinge_idx, sv.hinge_axis, sv.hinge_ramp), (sv.twist_idx, sv.twist_L, sv.twist_w)
    root_pos = tgt_in[:, sv.root_in]  # the dummy root (if any) sits at the origin
    # observed joints re-aim by the noise gate, those the input does not observe this frame in full
    unseen = np.where(sv.row_of >= 0, ~M_in[:, np.maximum(sv.row_of, 0)], False)  # (B, J)
    Lr, Gr = rf.refine(G, Lm, off, tgt, beta, t, hinge, twist, (root_pos, np.maximum(gate[:, None], unseen)))
    X = rf.positions(Gr, off, root_pos, t)
    land = sv._root_approx[slots]
    if land.any():
        root_pos, X = _land_root(sv, land, M_in, tgt_in, root_pos, X)
    q = rf.matrix_to_quat(Lr).astype(np.float32)
    # ---- per-stream bookkeeping
    sv._last_ts[slots] = ts
    sv._last_root[slots] = root
    sv._last_tgt[slots] = tgt_in
    sv._cs[slots] = cs
    sv._fresh[slots] = False
    return q, root_pos.astype(np.float32), X.astype(np.float32), noise


def _land_root(sv, land, M_in, tgt_in, root_pos, X):
    """Streams ``land (B,)`` whose root is a pose estimator's stand-in (approximate in their layout): the whole
    body moves by the mean miss of its other observed joints (their targets ``tgt_in (B, Ji, 3)`` less their FK
    positions in ``X (B, J, 3)``), so that a root a few centimetres off the joint does not carry every observed
    joint with it. (A root that is merely missing already moves with its observed children in :func:`pre`.)
    -> ``(root_pos, X)``."""
    w = M_in & land[:, None]
    w[:, sv.root_in] = False
    n = w.sum(1)
    miss = ((tgt_in - X[:, sv.in_idx]) * w[..., None]).sum(1) / np.maximum(n, 1)[:, None]
    return root_pos + miss, X + miss[:, None, :] * sv.tables.below_root[None]


#: an observed joint is a spike where its bones' lengths are off by ``SolverOptions.spike`` plus this many times
#: the stream's noise estimate
SPIKE_NOISE = 4.0


def _spikes(sv, slots, M, dev, seen, fresh):
    """Observed joints that are spikes this frame ``(B, Ji)``: every measured bone at a joint with two or more is
    off its calibrated length (a displaced joint lengthens or shortens them all; a moving body keeps them), or the
    one bone at a joint with one is, while its other end is no spike (then that end moved, not this one)."""
    thr = sv.options.spike + SPIKE_NOISE * sv._noise[slots]
    sb = seen & ~np.isnan(dev)
    big = sb & (dev > thr[:, None])
    T = sv.b_touch  # (Nb, Ji)
    n, k = sb.astype(np.float64) @ T, big.astype(np.float64) @ T
    first = M & (n >= 2) & (k == n) & ~fresh[:, None]
    other = first[:, sv.b_child] | first[:, sv.b_parent]  # (B, Nb) a bone with a spiked end
    lone = (big & ~other).astype(np.float64) @ T
    return first | (M & (n == 1) & (lone == 1) & ~fresh[:, None])


def _hold_gaps(sv, slots, tgt_in, den, M, full, Ry, size, off, fresh, ts):
    """Joints missing this frame, in place in ``tgt_in (B, Ji, 3)`` (see ``SolverOptions.gap_hold``).

    Each input joint keeps the offset from its nearest ancestor in the stream's layout that it had when both were
    last seen, in the body's heading frame and size, and a trust in it that decays as ``exp(-t / gap_hold)`` from
    then. A missing joint goes to its ancestor's target plus that offset, with the trust as weight and the rest of
    the weight on the denoiser's position ``den``; a missing root goes where its observed children's held offsets
    put it. Then a missing joint that was seen before is moved to where its bones fit: at its bone's length from
    its parent's target and from each observed child (:func:`_fit_spheres`), so that the observed joints below it
    are reached. Ancestors are done before their descendants (one depth level at a time), so a missing chain holds
    its shape. On a stream's first frame nothing is held. Returns ``M (B, Ji)`` with the joints held this frame
    marked too (they place the joints the layout lacks, as observed ones do)."""
    sz = size[:, None, None]
    b = np.arange(len(slots))[:, None]
    anc = sv._gap_anc[slots]  # (B, Ji)
    has = anc >= 0
    A = np.maximum(anc, 0)
    pair = M & M[b, A] & has
    if full:  # every joint seen: store the offsets for a later gap
        sv._gap_off[slots] = np.where(has[..., None], ((tgt_in - tgt_in[b, A]) @ Ry) / sz, sv._gap_off[slots])
        sv._gap_w[slots] = np.where(has, 1.0, sv._gap_w[slots])
        return M
    decay = np.where(fresh, 0.0, np.exp(-np.maximum(ts - sv._last_ts[slots], 0.0) / sv.options.gap_hold))
    goff, w = sv._gap_off[slots], sv._gap_w[slots]
    w = np.where(pair, 1.0, w * decay[:, None])
    RyT = np.swapaxes(Ry, 1, 2)
    blen = np.sqrt(np.einsum("bji,bji->bj", off, off))[:, sv.in_idx]  # (B, Ji) each input joint's bone
    ri = sv.root_in
    if not M[:, ri].all():  # the root: where its observed children's held offsets put it, then fitted to them
        wk = w * M * (anc == ri)  # (B, Ji)
        at = tgt_in - (goff @ RyT) * sz
        tot = wk.sum(1)
        est = (wk[..., None] * at).sum(1) / np.maximum(tot, 1e-12)[:, None]
        fill = den[:, ri] + wk.max(1)[:, None] * (est - den[:, ri])
        k = sv.gap_kids[ri]
        okk = (M[:, k] & (k >= 0))[:, None]
        fill = _fit_spheres(fill[:, None], tgt_in[:, k][:, None], blen[:, k][:, None], okk)
        fill = _fit_triad(fill, off[:, sv.in_idx[k]][:, None], tgt_in[:, k][:, None], okk)[:, 0]
        tgt_in[:, ri] = np.where((M[:, ri] | (tot <= 0))[:, None], tgt_in[:, ri], fill)
        root_held = tot > 0
    else:
        root_held = np.zeros(len(slots), bool)
    for rows in sv.gap_levels:
        par = A[:, rows]  # (B, n)
        d = ((tgt_in[:, rows] - tgt_in[b, par]) @ Ry) / sz  # world -> heading frame, body size
        goff[:, rows] = np.where(pair[:, rows, None], d, goff[:, rows])
        miss = ~M[:, rows] & has[:, rows]
        if not miss.any():
            continue
        held = tgt_in[b, par] + (goff[:, rows] @ RyT) * sz
        fill = den[:, rows] + w[:, rows, None] * (held - den[:, rows])
        # fit the bones: the sphere about the parent (where it is the direct one), about each observed child
        kid = sv.gap_kids[rows]  # (n, K)
        k = np.maximum(kid, 0)
        C = np.concatenate([tgt_in[b, par][:, :, None], tgt_in[:, k]], axis=2)  # (B, n, 1 + K, 3)
        R = np.concatenate([blen[:, rows][..., None], blen[:, k]], axis=2)
        ok = np.concatenate([(par == sv.gap_parent_row[rows])[..., None], M[:, k] & (kid >= 0)[None]], axis=2)
        ok &= (miss & (w[:, rows] > 0.0))[..., None]  # a joint never seen is left to the denoiser
        fill = _fit_spheres(fill, C, R, ok)
        fill = _fit_triad(fill, off[:, sv.in_idx[k]], tgt_in[:, k], ok[..., 1:])
        tgt_in[:, rows] = np.where(miss[..., None], fill, tgt_in[:, rows])
    sv._gap_off[slots], sv._gap_w[slots] = goff, w
    held = M | (has & (w > 0.0))
    held[:, ri] |= root_held
    return held


def _fit_triad(x, A, Bw, ok):
    """Where a joint with three observed children sits: ``A (B, n, 3, 3)`` the children's offsets in the joint's
    frame, ``Bw (B, n, 3, 3)`` their targets, ``ok (B, n, 3)`` observed. The frame through the three points, built
    alike from both, gives the joint's rotation and so its place (exact on a rigid body: better posed than the
    distances, since a root sits almost in the plane of its children); where a child is missing or the three are
    in a line, ``x (B, n, 3)`` stays."""
    if A.shape[2] < 3:
        return x

    def triad(P):  # the frame through three points (:func:`frame`), and whether they are not in a line
        u, a = P[..., 1, :] - P[..., 0, :], P[..., 2, :] - P[..., 0, :]
        n1, n3 = np.linalg.norm(u, axis=-1), np.linalg.norm(np.cross(u, a), axis=-1)
        return frame(u, a), n3 > 1e-3 * np.maximum(n1, 1e-12) ** 2

    Fa, good_a = triad(A[..., :3, :])
    Fb, good_b = triad(Bw[..., :3, :])
    Rm = Fb @ np.swapaxes(Fa, -1, -2)  # joint frame -> world
    y = Bw[..., :3, :].mean(-2) - (Rm @ A[..., :3, :].mean(-2)[..., None])[..., 0]
    use = ok[..., :3].all(-1) & good_a & good_b
    return np.where(use[..., None], y, x)


#: sweeps of :func:`_fit_spheres`
FIT_SWEEPS = 16


def _fit_spheres(x, C, R, ok):
    """Move points ``x (B, n, 3)`` to where they lie at distance ``R (B, n, K)`` from centres ``C (B, n, K, 3)``
    (those with ``ok (B, n, K)``): alternating projections onto the spheres, :data:`FIT_SWEEPS` sweeps from
    ``x``, which settle on the intersection point near ``x`` (the circle's point nearest it for two spheres; the
    sphere's for one); points with no sphere stay."""
    x = x.copy()
    for _ in range(FIT_SWEEPS):
        for k in range(C.shape[2]):
            v = x - C[:, :, k]
            n = np.sqrt(np.einsum("bni,bni->bn", v, v))
            y = C[:, :, k] + (R[:, :, k] / np.maximum(n, 1e-12))[..., None] * v
            x = np.where((ok[:, :, k] & (n > 1e-12))[..., None], y, x)
    return x


def frame(u, a):
    """Orthonormal frames ``(..., 3, 3)`` (columns x, y, z) from up vectors ``u (..., 3)`` (y) and across vectors
    ``a (..., 3)`` (x, made perpendicular to y); z = x cross y."""
    y = u / (np.linalg.norm(u, axis=-1, keepdims=True) + 1e-12)
    x = a - (a * y).sum(-1, keepdims=True) * y
    x = x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)
    return np.stack([x, y, np.cross(x, y)], axis=-1)


def cluster_coords(sv, cl, P, M):
    """Where each multi-child joint's cluster points sit in the frame they build (see :func:`_calibrate_clusters`).

    ``cl``: a stream's choice of points, each ``(N, C, ...)``: ``mem, kind (K)`` the points (input index, 0 a
    child, 1 its stand-in, -1 none; ``Solver._cluster_members``), ``spec (3)`` the frame's points (up: ``spec[0]``
    minus the joint; across: ``spec[1]`` minus ``spec[2]``; indices into ``mem``, -1 the joint), ``ref (3)`` input
    indices of the reference points that fix the frame's convention (-1: the frame's own), ``valid`` the frame can
    be built; ``P (N, Ji, 3)`` positions, ``M (N, Ji)`` observed. -> ``(e (N, C, K, 3) point coordinates, r (N, C,
    2, 3) reference up and across vectors, F (N, C, 3, 3) frames, ok (N, C) frame built, seen (N, C, K) point
    observed in a built frame, rseen (N, C) references observed in a built frame)``."""
    mem, kind, spec, ref, valid = cl
    N = len(P)
    n = np.arange(N)[:, None, None]
    Q = P[n, np.maximum(mem, 0)]  # (N, C, K, 3)
    qm = M[n, np.maximum(mem, 0)] & (kind >= 0)  # (N, C, K)
    pp = P[:, sv.cl_p]  # (N, C, 3)
    pm = M[:, sv.cl_p]  # (N, C)
    Qx = np.concatenate([Q, pp[:, :, None]], axis=2)  # point K: the joint itself
    qx = np.concatenate([qm, pm[..., None]], axis=2)
    sp = np.where(spec < 0, sv.K, spec)  # (N, C, 3)
    c = np.arange(sv.C)[None, :, None]
    S = Qx[n, c, sp]  # (N, C, 3, 3)
    ok = valid & pm & qx[n, c, sp].all(-1)
    F = frame(S[:, :, 0] - pp, S[:, :, 1] - S[:, :, 2])
    e = (Q - pp[:, :, None]) @ F  # row vectors: (F^T (q - p))^T
    R = P[n, np.maximum(ref, 0)]  # (N, C, 3, 3)
    rseen = ok & (ref[..., 0] >= 0) & M[n, np.maximum(ref, 0)].all(-1)
    r = np.stack([R[:, :, 0] - pp, R[:, :, 1] - R[:, :, 2]], axis=2) @ F  # (N, C, 2, 3)
    return e, r, F, ok, ok[..., None] & qm, rseen


def rest_frames(frest, r, rn, ref):
    """The frame each cluster's coordinates are expressed in, ``W (B, C, 3, 3)``: the rest frame ``frest`` turned by
    ``C^T``, where ``C = frame(r_up, r_across)`` is the reference points' frame in the observed one (``r (B, C, 2,
    3)`` their estimate, ``rn (B, C, 2)`` observations); ``frest`` itself where the frame is its own reference."""
    use = (ref[..., 0] >= 0) & (rn > 0).all(-1)
    if not use.any():
        return frest
    Cm = frame(r[:, :, 0], r[:, :, 1])
    return np.where(use[..., None, None], frest @ np.swapaxes(Cm, -1, -2), frest)


def _cl(sv, slots):
    return sv._cmem[slots], sv._ckind[slots], sv._cspec[slots], sv._cref[slots], sv._cval[slots]


def _step(E0, n, e, upd, o):
    """One step of the running robust estimate: ``E0 (..., 3)`` towards ``e`` clipped to ``eta``, where ``upd``."""
    eta = np.maximum(o.calib_rate * 10.0 * np.linalg.norm(E0, axis=-1) / (10.0 + n), o.calib_floor)[..., None]
    E = np.where((n == 0)[..., None], e, E0 + np.clip(e - E0, -eta, eta))
    return np.where(upd[..., None], E, E0), n + upd


def _calibrate_clusters(sv, slots, P, M_in, locked, off):
    """Rest offsets of the children of multi-child joints (hips, chest), a running robust estimate like the bone
    lengths'. Each such joint's children are rigid in its frame, so their coordinates in a frame they build
    themselves (up: the first child with a real length; across: second minus third, or the best conditioned pair
    where those two (nearly) coincide on the up axis; chosen per stream, :func:`choose_frames`) are constant over
    frames; each coordinate vector steps towards each new measurement clipped to ``eta``. A child the stream's
    layout lacks is stood in for by its only child (rigid there in a rig without that joint: MPI's chest, a head on
    the chest). The estimate enters the offsets ``off (B, J, 3)`` through the rest frame (the same points in the
    model's rest pose; where the frame's points are not the usual ones, the usual points' children fix its
    convention, as they sit on the first frame that shows them): a child gets ``W e``, its direction and length;
    a missing child keeps its rest offset and the bone from it to its stand-in gets the length that lands the
    stand-in. Returns ``W (B, C, 3, 3)``."""
    o = sv.options
    e, r, _, _, seen, rseen = cluster_coords(sv, _cl(sv, slots), P, M_in)
    lk = ~locked[:, None]
    E, n = _step(sv._ce[slots], sv._cn[slots], e, seen & lk[..., None], o)
    rn0 = sv._crn[slots]  # the convention is taken from the first frame that shows it, then kept
    Rr, rn = _step(sv._cr[slots], rn0, r, np.repeat((rseen & lk)[..., None], 2, -1) & (rn0 == 0), o)
    sv._ce[slots], sv._cn[slots], sv._cr[slots], sv._crn[slots] = E, n, Rr, rn
    W = rest_frames(sv._cfr[slots], Rr, rn, sv._cref[slots])
    _cluster_offsets(sv, E, n, sv._ckind[slots], W, off)
    return W


def _cluster_offsets(sv, E, n, kind, W, off):
    """Write the calibrated cluster offsets into ``off (B, J, 3)`` from the estimate ``E (B, C, K, 3)`` (``n``
    observations each), the streams' point kinds and frames ``W`` (:func:`rest_frames`)."""
    oc = (W[:, :, None] @ E[..., None])[..., 0]  # (B, C, K, 3) in the rest frame: W e
    have = n > 0
    cj, gj = np.maximum(sv.cl_cj, 0), np.maximum(sv.cl_gj, 0)
    off[:, cj] = np.where((have & (kind == 0))[..., None], oc, off[:, cj])
    stand = have & (kind == 1)
    if stand.any():
        # a missing child sits no further along its rest direction than its share of the stand-in's distance: a
        # rig whose head sits lower on the chest than the model's neck is long would turn the neck upside down
        d = sv.rest_dir[cj]  # (C, K, 3)
        lim = np.maximum(sv.cl_split * (oc * d).sum(-1), 0.0)  # (B, C, K)
        Lc = np.linalg.norm(off[:, cj], axis=-1)
        short = stand & (Lc > lim)
        off[:, cj] = np.where(short[..., None], d * lim[..., None], off[:, cj])
        Lg = np.linalg.norm(oc - off[:, cj], axis=-1)  # (B, C, K)
        off[:, gj] = np.where(stand[..., None], sv.rest_dir[gj] * Lg[..., None], off[:, gj])


def _place_virtual(sv, slots, tgt_in, M_in, off, W):
    """Targets of the children a stream's layout lacks (kind 1) where their joint's frame is observed: the rest
    offset ``off`` turned by the joint's rotation from its rest frame to the observed one, so that refinement
    turns the joint by what its observed children say and the bone below lands on the stand-in."""
    _, _, F, ok, _, _ = cluster_coords(sv, _cl(sv, slots), tgt_in, M_in)
    put = ok[..., None] & (sv._ckind[slots] == 1) & (sv._cn[slots] > 0)  # (B, C, K)
    if not put.any():
        return
    R = F @ np.swapaxes(W, -1, -2)  # (B, C, 3, 3) rest frame -> world
    cj, ci = np.maximum(sv.cl_cj, 0), np.maximum(sv.cl_ci, 0)
    v = (R[:, :, None] @ off[:, cj][..., None])[..., 0] + tgt_in[:, sv.cl_p][:, :, None]  # (B, C, K, 3)
    b, c, k = np.nonzero(put)
    tgt_in[b, ci[c, k]] = v[b, c, k]


def offsets(sv, slot: int) -> np.ndarray:
    """The calibrated offsets ``(J, 3)`` (metres) of one stream, as :func:`pre` builds them."""
    L = sv._blen[slot, sv.b_joint]
    known = np.isfinite(L)
    mean = (L[known] / sv.b_rest[known]).mean() if known.any() else 1.0
    L = np.where(known, L, sv.b_rest * mean)
    off = np.zeros((sv.J, 3))
    off[sv.b_joint] = sv.b_dir * L[:, None]
    if sv.C:
        o, s = off[None], [slot]
        W = rest_frames(sv._cfr[s], sv._cr[s], sv._crn[s], sv._cref[s])
        _cluster_offsets(sv, sv._ce[s], sv._cn[s], sv._ckind[s], W, o)
        off = o[0]
    return off


#: a point nearer its joint than this fraction of the farthest is no up axis; an across shorter (perpendicular to
#: up) than this fraction of the best candidate's gives way to it
REAL_FRACTION = 0.25
#: points whose parts across the up axis are all below this fraction of the farthest point's distance are on it
COLLINEAR = 1e-3


def _across(a, y) -> float:
    """Median length of the part of ``a (n, 3)`` perpendicular to unit ``y (n, 3)``."""
    return float(np.median(np.linalg.norm(a - (a * y).sum(-1, keepdims=True) * y, axis=-1)))


def choose_frames(sv, mem, kind, provided, P, M):
    """Choose, for one stream, the points each multi-child joint's frame is built from, from frames of its input.

    The usual frame (up: the first child, across: second minus third) breaks down where a child sits on its joint
    (a zero-length spine at the hips, a neck on the chest: no up) or two children (nearly) coincide on the up
    axis' side (both clavicles from one point: no across). Up is then the first point at a real distance
    (``REAL_FRACTION`` of the farthest), across the best conditioned difference of points (the largest part
    perpendicular to up, the usual one unless it is ``REAL_FRACTION`` of the best or less); both are rigid, so
    the coordinates stay exact. Their convention (which way the joint's rest frame turns) then comes from the
    usual points' only children where there are some (the chest beyond a zero-length spine; the upper arms
    beyond clavicles from one point): where they sit in the frame stands for the missing direction (on the first
    frame that shows them live, their median over the frames given to ``Solver.calibrate``), so that the offsets
    stay constant.

    ``mem, kind (C, K)``: the stream's cluster points (``Solver._cluster_members``); ``provided (Ji,)`` the input
    joints its layout provides; ``P (N, Ji, 3)`` metres, ``M (N, Ji)`` observed. -> ``(spec (C, 3), ref (C, 3),
    frest (C, 3, 3), chosen (C,))`` (see :func:`cluster_coords`); a cluster whose points are not all observed in
    any frame is not chosen yet."""
    C, K = sv.C, sv.K
    spec = np.tile(np.array([0, 1, 2] if K >= 3 else [0, 1, -1], np.int64), (C, 1))
    ref = np.full((C, 3), -1, np.int64)
    frest = np.zeros((C, 3, 3))
    chosen = np.zeros(C, bool)
    for c in range(C):
        pi, pts = sv.cl_p[c], [k for k in range(K) if kind[c, k] >= 0]
        rows = M[:, [pi, *mem[c, pts]]].all(1)
        if not rows.any():
            continue
        chosen[c] = True
        V = {k: P[rows][:, mem[c, k]] - P[rows][:, pi] for k in pts}  # (n, 3) each, from the joint
        V[-1] = np.zeros_like(V[pts[0]])
        rest = {k: sv.cl_rest[c, k, kind[c, k]] for k in pts} | {-1: np.zeros(3)}
        dist = {k: float(np.median(np.linalg.norm(V[k], axis=-1))) for k in pts}
        far = max(dist.values())
        up = next(k for k in pts if dist[k] >= REAL_FRACTION * far)
        y = V[up] / (np.linalg.norm(V[up], axis=-1, keepdims=True) + 1e-12)
        cands = [tuple(spec[c, 1:])] + [(a, b) for a in pts for b in [-1, *pts] if a != b and (a, b) != (up, -1)]
        score = [_across(V[a] - V[b], y) for a, b in cands]
        best = int(np.argmax(score))
        flat = score[best] <= COLLINEAR * far  # every point on the up axis: no across to read, keep the usual one
        across = cands[0] if flat or score[0] > REAL_FRACTION * score[best] else cands[best]
        spec[c] = (up, *across)
        r_up, r_ac = rest[up], rest[across[0]] - rest[across[1]]
        g = sv.cl_gi[c]
        via = [kind[c, k] == 0 and g[k] >= 0 and provided[g[k]] for k in range(K)]
        if up != 0 and via[0]:  # the first child on its joint: its child stands for the up direction
            ref[c, 0], r_up = g[0], sv.cl_rest[c, 0, 1]
        if across != cands[0] and K >= 3 and via[1] and via[2]:  # the usual pair coincides: their children
            ref[c, 1:], r_ac = g[1:3], sv.cl_rest[c, 1, 1] - sv.cl_rest[c, 2, 1]
        if (ref[c] >= 0).any():
            own = [pi if k < 0 else mem[c, k] for k in (up, *across)]
            ref[c] = np.where(ref[c] >= 0, ref[c], own)
        frest[c] = frame(r_up, r_ac)
    return spec, ref, frest, chosen


def all_finite(r6, clean, st) -> bool:
    """Whether the network's outputs and state are finite everywhere (as :func:`rtik.solve.kernels.all_finite`)."""
    return bool(np.isfinite(r6).all() and np.isfinite(clean).all() and np.isfinite(st).all())


def _heading(cs):
    """``R_y(yaw) (B, 3, 3)`` from ``cs (B, 2)`` = (cos, sin) of the heading."""
    return (cs @ _RY_CS + _RY_0).reshape(len(cs), 3, 3)


def heading_matrices(cs):
    """``R_y(yaw) (B, 3, 3)`` from ``cs (B, 2)`` = (cos, sin) of the heading; row vectors times it are turned by
    ``R_y(-yaw)``, as :func:`pre` normalises positions."""
    return _heading(cs)
