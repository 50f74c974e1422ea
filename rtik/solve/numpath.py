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
from rtik.solve import refine as rf

UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}
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
    seen (B, Nb) bones observed)``. Written for few numpy calls: input-joint space, bones in bone space, a fast
    path when every joint is observed; no per-stream Python loop."""
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
    dev = np.abs(d - L0)  # nan where not yet known
    locked = sv._locked[slots]
    seen = np.ones_like(dev, bool) if full else M_in[:, sv.b_child] & M_in[:, sv.b_parent]  # (B, Nb)
    if not locked.all():
        upd = seen & ~locked[:, None]
        eta = np.maximum(o.calib_rate * 10.0 * L0 / (10.0 + n), o.calib_floor)
        L = np.where(n == 0, d, L0 + np.clip(d - L0, -eta, eta))
        L = np.where(upd, L, L0)
        sv._blen[sb_idx] = L
        sv._nobs[sb_idx] = n + upd
    else:
        L = L0
    known = np.isfinite(L)
    if not known.all():  # bones never seen: rest length times the stream's mean measured/rest ratio
        ratio = np.where(known, L / sv.b_rest, 0.0)
        mean = np.where(known.any(1), ratio.sum(1) / np.maximum(known.sum(1), 1), 1.0)
        L = np.where(known, L, sv.b_rest * mean[:, None])
    off = np.zeros((B, sv.J, 3))
    off[:, sv.b_joint] = sv.b_dir * L[..., None]  # calibrated offsets, metres
    if sv.C:
        _calibrate_clusters(sv, slots, P, M_in, locked, off)
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
    return pos.astype(np.float32), M_in.astype(np.float32), reset, fresh, P, root, cs, size, off, dev, seen


def post(sv, r6, clean, M_in, fresh, P, root, cs, size, off, dev, seen, slots, ts):
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
    alpha = v2 / (v2 + o.sigma_denoise**2)  # weight of the denoised position
    alpha = alpha[:, None, None] if full else np.where(M_in, alpha[:, None], 1.0)[..., None]
    tgt_in = P + alpha * (den - P)
    if sv.C:
        _place_virtual(sv, slots, tgt_in, M_in, off)
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
    Lr, Gr = rf.refine(G, Lm, off, tgt, beta, t)
    root_pos = tgt_in[:, sv.root_in]  # the dummy root (if any) sits at the origin
    X = rf.positions(Gr, off, root_pos, t)
    q = rf.matrix_to_quat(Lr).astype(np.float32)
    # ---- per-stream bookkeeping
    sv._last_ts[slots] = ts
    sv._last_root[slots] = root
    sv._last_tgt[slots] = tgt_in
    sv._cs[slots] = cs
    sv._fresh[slots] = False
    return q, root_pos.astype(np.float32), X.astype(np.float32), noise


def frame(u, a):
    """Orthonormal frames ``(..., 3, 3)`` (columns x, y, z) from up vectors ``u (..., 3)`` (y) and across vectors
    ``a (..., 3)`` (x, made perpendicular to y); z = x cross y."""
    y = u / (np.linalg.norm(u, axis=-1, keepdims=True) + 1e-12)
    x = a - (a * y).sum(-1, keepdims=True) * y
    x = x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)
    return np.stack([x, y, np.cross(x, y)], axis=-1)


def cluster_coords(sv, mem, kind, valid, P, M):
    """Where each multi-child joint's cluster points sit in the frame they build (see :func:`_calibrate_clusters`):
    ``mem, kind (N, C, K)``, ``valid (N, C)`` a stream's choice of points (``Solver._cluster_members``), ``P (N, Ji,
    3)`` positions, ``M (N, Ji)`` observed. -> ``(e (N, C, K, 3) point coordinates, F (N, C, 3, 3) frames, ok (N, C)
    frame built, seen (N, C, K) point observed in a built frame)``."""
    n = np.arange(len(P))[:, None, None]
    Q = P[n, np.maximum(mem, 0)]  # (N, C, K, 3)
    qm = M[n, np.maximum(mem, 0)] & (kind >= 0)  # (N, C, K)
    pp = P[:, sv.cl_p]  # (N, C, 3)
    if sv.K >= 3:
        ok = valid & M[:, sv.cl_p] & qm[..., 0] & qm[..., 1] & qm[..., 2]
        F = frame(Q[:, :, 0] - pp, Q[:, :, 1] - Q[:, :, 2])
    else:
        ok = valid & M[:, sv.cl_p] & qm[..., 0] & qm[..., 1]
        F = frame(Q[:, :, 0] - pp, Q[:, :, 1] - pp)
    e = (Q - pp[:, :, None]) @ F  # row vectors: (F^T (q - p))^T
    return e, F, ok, ok[..., None] & qm


def _calibrate_clusters(sv, slots, P, M_in, locked, off):
    """Rest offsets of the children of multi-child joints (hips, chest), a running robust estimate like the bone
    lengths'. Each such joint's children are rigid in its frame, so their coordinates in the frame they build
    themselves (up: the first child, across: second minus third) are constant over frames; each coordinate
    vector steps towards each new measurement clipped to ``eta``. A child the stream's layout lacks is stood in
    for by its only child (rigid there in a rig without that joint: MPI's chest, a head on the chest). The
    estimate enters the offsets ``off (B, J, 3)`` through the rest frame (the same points in the model's rest
    pose): a child gets ``F_rest e``, its direction and length; a missing child keeps its rest offset and the
    bone from it to its stand-in gets the length that lands the stand-in."""
    o = sv.options
    mem, kind, frest = sv._cmem[slots], sv._ckind[slots], sv._cfr[slots]
    e, _, _, seen = cluster_coords(sv, mem, kind, sv._cval[slots], P, M_in)
    E0, n = sv._ce[slots], sv._cn[slots]
    upd = seen & ~locked[:, None, None]
    eta = np.maximum(o.calib_rate * 10.0 * np.linalg.norm(E0, axis=-1) / (10.0 + n), o.calib_floor)[..., None]
    E = np.where((n == 0)[..., None], e, E0 + np.clip(e - E0, -eta, eta))
    E = np.where(upd[..., None], E, E0)
    n = n + upd
    sv._ce[slots], sv._cn[slots] = E, n
    _cluster_offsets(sv, E, n, kind, frest, off)


def _cluster_offsets(sv, E, n, kind, frest, off):
    """Write the calibrated cluster offsets into ``off (B, J, 3)`` from the estimate ``E (B, C, K, 3)`` (``n``
    observations each), the streams' point kinds and rest frames."""
    oc = (frest[:, :, None] @ E[..., None])[..., 0]  # (B, C, K, 3) in the rest frame: F_rest e
    have = n > 0
    cj, gj = np.maximum(sv.cl_cj, 0), np.maximum(sv.cl_gj, 0)
    off[:, cj] = np.where((have & (kind == 0))[..., None], oc, off[:, cj])
    stand = have & (kind == 1)
    if stand.any():
        Lg = np.linalg.norm(oc - off[:, cj], axis=-1)  # (B, C, K)
        off[:, gj] = np.where(stand[..., None], sv.rest_dir[gj] * Lg[..., None], off[:, gj])


def _place_virtual(sv, slots, tgt_in, M_in, off):
    """Targets of the children a stream's layout lacks (kind 1) where their joint's frame is observed: the rest
    offset ``off`` turned by the joint's rotation from its rest frame to the observed one, so that refinement
    turns the joint by what its observed children say and the bone below lands on the stand-in."""
    e, F, ok, _ = cluster_coords(sv, sv._cmem[slots], sv._ckind[slots], sv._cval[slots], tgt_in, M_in)
    put = ok[..., None] & (sv._ckind[slots] == 1) & (sv._cn[slots] > 0)  # (B, C, K)
    if not put.any():
        return
    R = F @ np.swapaxes(sv._cfr[slots], -1, -2)  # (B, C, 3, 3) rest frame -> world
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
        o = off[None]
        _cluster_offsets(sv, sv._ce[[slot]], sv._cn[[slot]], sv._ckind[[slot]], sv._cfr[[slot]], o)
        off = o[0]
    return off


def all_finite(r6, clean, st) -> bool:
    """Whether the network's outputs and state are finite everywhere (as :func:`rtik.solve.kernels.all_finite`)."""
    return bool(np.isfinite(r6).all() and np.isfinite(clean).all() and np.isfinite(st).all())


def _heading(cs):
    """``R_y(yaw) (B, 3, 3)`` from ``cs (B, 2)`` = (cos, sin) of the heading."""
    return (cs @ _RY_CS + _RY_0).reshape(len(cs), 3, 3)
