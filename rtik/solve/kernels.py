"""Compiled per-frame kernels: the solver's push validation, pre- and post-processing as loops over streams and joints.

The solver's numpy path (:meth:`rtik.solve.solver.Solver._solve` with ``kernels="numpy"``, :mod:`rtik.solve.refine`)
is the reference: vectorised, readable, about a hundred array operations per tick, each a few microseconds on small
arrays whatever the batch. These kernels compute the same thing with `numba <https://numba.pydata.org>`_ in
plain loops (one call per pushed frame, one before the network, one after), so the per-frame cost is the
arithmetic, not the calls. They read and update the solver's per-slot arrays in place; results equal the numpy
path to rounding (``tests/test_kernels.py``). They keep the interpreter lock (``nogil=False``): each runs for
microseconds, and a thread that lets go of the lock may wait a switch interval to get it back.

Importing this module needs numba. Compiled on first use (about 20 s) and cached on disk (``__pycache__`` beside
this file, or numba's user cache when that is read-only), after which loading takes well under a second.

Shapes: ``B`` streams in the batch, ``Ji`` input joints, ``J`` skeleton joints, ``Nb`` measurable bones.
Conventions as everywhere: column vectors, float64 inside, float32 at the network and the outputs.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rtik.solve.numpath import FIT_SWEEPS, SPIKE_NOISE

jit = njit(cache=True, nogil=False, fastmath=False, error_model="numpy")


@jit
def _unit3(x, y, z):
    n = np.sqrt(x * x + y * y + z * z) + 1e-12
    return x / n, y / n, z / n


@jit
def _matmul3(A, Bm, out):
    for i in range(3):
        for k in range(3):
            out[i, k] = A[i, 0] * Bm[0, k] + A[i, 1] * Bm[1, k] + A[i, 2] * Bm[2, k]


@jit
def _eye3(out):
    out[:] = 0.0
    out[0, 0] = out[1, 1] = out[2, 2] = 1.0


@jit
def _mv3(M, x, y, z):
    """``M @ (x, y, z)`` for a 3x3 ``M``, as three scalars."""
    return (
        M[0, 0] * x + M[0, 1] * y + M[0, 2] * z,
        M[1, 0] * x + M[1, 1] * y + M[1, 2] * z,
        M[2, 0] * x + M[2, 1] * y + M[2, 2] * z,
    )


@jit
def _positions(G, off, b, root, bone_parent, bones, bone_paths, below_root, bv, X):
    """Forward kinematics of row ``b``: every bone vector ``G[parent] @ off[b, bone]`` into ``bv``, summed along
    each joint's path, plus the root ``(3,)`` below the motion root, into ``X[b]`` (as rtik.solve.refine.positions)."""
    for n in range(bones.shape[0]):
        c = bones[n]
        bv[n, 0], bv[n, 1], bv[n, 2] = _mv3(G[bone_parent[n]], off[b, c, 0], off[b, c, 1], off[b, c, 2])
    for j in range(X.shape[1]):
        for i in range(3):
            acc = float(root[i]) * below_root[j, 0]
            for n in range(bones.shape[0]):
                if bone_paths[j, n] != 0.0:
                    acc += bone_paths[j, n] * bv[n, i]
            X[b, j, i] = acc


@jit
def _frame(ux, uy, uz, ax, ay, az, Fm):
    """The frame ``Fm (3, 3)`` (columns x, y, z) from up ``u`` (y) and across ``a`` (x, made perpendicular to y),
    as :func:`rtik.solve.numpath.frame`."""
    yx, yy, yz = _unit3(ux, uy, uz)
    d = ax * yx + ay * yy + az * yz
    xx, xy, xz = _unit3(ax - d * yx, ay - d * yy, az - d * yz)
    Fm[0, 0], Fm[1, 0], Fm[2, 0] = xx, xy, xz
    Fm[0, 1], Fm[1, 1], Fm[2, 1] = yx, yy, yz
    Fm[0, 2], Fm[1, 2], Fm[2, 2] = xy * yz - xz * yy, xz * yx - xx * yz, xx * yy - xy * yx


@jit
def _cluster_frame(X, M, b, pi, mem, spec, ok, Fm):
    """The frame ``Fm (3, 3)`` a multi-child joint's points ``mem (K,)`` build in ``X[b]`` (up: point ``spec[0]``
    minus the joint, across: ``spec[1]`` minus ``spec[2]``; -1 the joint), as
    :func:`rtik.solve.numpath.cluster_coords`; False (``Fm`` untouched) when the stream cannot build it (``ok``)
    or a point it needs is not observed (``M``)."""
    if not ok or not M[b, pi]:
        return False
    for k in range(3):
        if spec[k] >= 0 and (mem[spec[k]] < 0 or not M[b, mem[spec[k]]]):
            return False
    m0 = mem[spec[0]] if spec[0] >= 0 else pi
    m1 = mem[spec[1]] if spec[1] >= 0 else pi
    q = mem[spec[2]] if spec[2] >= 0 else pi
    _frame(
        X[b, m0, 0] - X[b, pi, 0], X[b, m0, 1] - X[b, pi, 1], X[b, m0, 2] - X[b, pi, 2],
        X[b, m1, 0] - X[b, q, 0], X[b, m1, 1] - X[b, q, 1], X[b, m1, 2] - X[b, q, 2], Fm,
    )  # fmt: skip
    return True


@jit
def _step(E, n, x, y, z, calib_rate, calib_floor):
    """One step of the running robust estimate ``E (3,)`` (``n`` observations) towards ``(x, y, z)``, clipped to
    ``eta`` (as :func:`rtik.solve.numpath._step`)."""
    eta = max(calib_rate * 10.0 * np.sqrt(E[0] * E[0] + E[1] * E[1] + E[2] * E[2]) / (10.0 + n), calib_floor)
    v = (x, y, z)
    for a in range(3):
        if n == 0.0:
            E[a] = v[a]
        else:
            E[a] += min(max(v[a] - E[a], -eta), eta)


@jit
def pre(
    slots, P_in, M_in, ts, forced, scale, last_ts, last_root, last_tgt, fresh_a, blen, nobs, locked_a, cs_a,
    state, cmem, ckind, cfr, cval, ce, cn, cspec, cref, cr, crn, ri, b_joint, b_child, b_parent, b_rest, b_dir,
    b_size, left, right, J, cl_p, cl_cj, cl_gj, rest_dir, cl_split, o_f,
):  # fmt: skip
    """Scale, root fill-in, resets, bone-length calibration, heading and normalisation.

    ``o_f``: float options ``[gap_s, max_speed, teleport_slack, calib_rate, calib_floor, min_lateral]``.
    Updates ``blen``, ``nobs``, the cluster estimates ``ce``, ``cn``, ``cr``, ``crn`` (as
    :func:`rtik.solve.numpath._calibrate_clusters`) and zeroes ``state`` rows of reset streams. Returns the
    network inputs and what the post kernel needs."""
    B, Ji = P_in.shape[0], P_in.shape[1]
    Nb = b_joint.shape[0]
    gap_s, max_speed, slack, calib_rate, calib_floor, min_lat = o_f[0], o_f[1], o_f[2], o_f[3], o_f[4], o_f[5]
    P = np.empty((B, Ji, 3))
    pos = np.zeros((B, Ji, 3), np.float32)
    mask = np.empty((B, Ji), np.float32)
    reset = np.zeros(B, np.bool_)
    fresh = np.empty(B, np.bool_)
    root = np.empty((B, 3))
    cs = np.empty((B, 2))
    size = np.empty(B)
    off = np.zeros((B, J, 3))
    dev = np.full((B, Nb), np.nan)
    seen = np.zeros((B, Nb), np.bool_)
    Lb = np.empty(Nb)
    sh = np.empty(3)
    C, K = cl_p.shape[0], cl_cj.shape[1]
    Fm = np.empty((3, 3))
    Cm = np.empty((3, 3))
    W = np.empty((B, C, 3, 3))
    for b in range(B):
        s = slots[b]
        sc = scale[s]
        for i in range(Ji):
            mask[b, i] = 1.0 if M_in[b, i] else 0.0
            for k in range(3):
                P[b, i, k] = P_in[b, i, k] * sc
        if not M_in[b, ri]:  # root missing: move the last root with the observed joints
            cnt = 0
            sh[:] = 0.0
            for i in range(Ji):
                if M_in[b, i]:
                    cnt += 1
                    for k in range(3):
                        sh[k] += P[b, i, k] - last_tgt[s, i, k]
            for k in range(3):
                P[b, ri, k] = last_root[s, k] + sh[k] / max(cnt, 1)
        for k in range(3):
            root[b, k] = P[b, ri, k]
        # resets: first frame, reset(), NaN burst, gap, time going backwards, teleport
        dt = ts[b] - last_ts[s]
        d2 = 0.0
        for k in range(3):
            d2 += (root[b, k] - last_root[s, k]) ** 2
        lim = max_speed * max(dt, 0.0) + slack
        fresh[b] = fresh_a[s]
        reset[b] = fresh[b] or forced[b] or dt > gap_s or dt < 0.0 or d2 > lim * lim
        if reset[b]:
            state[s, :] = 0.0
        # bone lengths: running robust estimate, steps clipped to eta
        lk = locked_a[s]
        nknown, ratio = 0, 0.0
        for k in range(Nb):
            c, p, j = b_child[k], b_parent[k], b_joint[k]
            dx = P[b, c, 0] - P[b, p, 0]
            dy = P[b, c, 1] - P[b, p, 1]
            dz = P[b, c, 2] - P[b, p, 2]
            d = np.sqrt(dx * dx + dy * dy + dz * dz)
            L0, n = blen[s, j], nobs[s, j]
            sn = M_in[b, c] and M_in[b, p]
            seen[b, k] = sn
            if n <= 0.0 and not sn and not fresh[b]:  # never observed: from the last targets (the denoiser's)
                tx = last_tgt[s, c, 0] - last_tgt[s, p, 0]
                ty = last_tgt[s, c, 1] - last_tgt[s, p, 1]
                tz = last_tgt[s, c, 2] - last_tgt[s, p, 2]
                td = np.sqrt(tx * tx + ty * ty + tz * tz)
                L0 = L0 + (td - L0) / (1.0 - n) if n < 0.0 else td
                n -= 1.0
                blen[s, j] = L0
                nobs[s, j] = n
            dev[b, k] = abs(d - L0)
            L = L0
            if sn and not lk:
                if n <= 0.0:
                    L = d
                    n = 0.0
                else:
                    eta = max(calib_rate * 10.0 * L0 / (10.0 + n), calib_floor)
                    L = L0 + min(max(d - L0, -eta), eta)
                blen[s, j] = L
                nobs[s, j] = n + 1.0
            Lb[k] = L
            if np.isfinite(L):
                nknown += 1
                ratio += L / b_rest[k]
        mean = ratio / nknown if nknown > 0 else 1.0
        sz = 0.0
        for k in range(Nb):
            if not np.isfinite(Lb[k]):  # never seen: rest length times the mean measured/rest ratio
                Lb[k] = b_rest[k] * mean
            j = b_joint[k]
            for a in range(3):
                off[b, j, a] = b_dir[k, a] * Lb[k]
            sz += Lb[k] * b_size[k]
        size[b] = sz
        # rest offsets of the children of multi-child joints: running estimate in the frame their points build
        for c in range(C):
            pi = cl_p[c]
            fok = _cluster_frame(P, M_in, b, pi, cmem[s, c], cspec[s, c], cval[s, c], Fm)
            for k in range(K):
                m = cmem[s, c, k]
                if ckind[s, c, k] >= 0 and fok and M_in[b, m] and not lk:
                    dx, dy, dz = P[b, m, 0] - P[b, pi, 0], P[b, m, 1] - P[b, pi, 1], P[b, m, 2] - P[b, pi, 2]
                    ex, ey, ez = _mv3(Fm.T, dx, dy, dz)
                    _step(ce[s, c, k], cn[s, c, k], ex, ey, ez, calib_rate, calib_floor)
                    cn[s, c, k] += 1.0
            # the frame's convention: the rest frame, turned by the reference points' frame where it has one (taken
            # from the first frame that shows them, then kept)
            rf = cref[s, c]
            fresh_ref = crn[s, c, 0] == 0.0
            if rf[0] >= 0 and fok and not lk and fresh_ref and M_in[b, rf[0]] and M_in[b, rf[1]] and M_in[b, rf[2]]:
                for v in range(2):
                    i0, i1 = (pi, rf[0]) if v == 0 else (rf[2], rf[1])
                    dx, dy, dz = P[b, i1, 0] - P[b, i0, 0], P[b, i1, 1] - P[b, i0, 1], P[b, i1, 2] - P[b, i0, 2]
                    ex, ey, ez = _mv3(Fm.T, dx, dy, dz)
                    _step(cr[s, c, v], crn[s, c, v], ex, ey, ez, calib_rate, calib_floor)
                    crn[s, c, v] += 1.0
            if rf[0] >= 0 and crn[s, c, 0] > 0.0 and crn[s, c, 1] > 0.0:
                r0, r1 = cr[s, c, 0], cr[s, c, 1]
                _frame(r0[0], r0[1], r0[2], r1[0], r1[1], r1[2], Cm)
                _matmul3(cfr[s, c], Cm.T, W[b, c])
            else:
                W[b, c] = cfr[s, c]
            for k in range(K):
                kd = ckind[s, c, k]
                if kd >= 0 and cn[s, c, k] > 0.0:
                    ox, oy, oz = _mv3(W[b, c], ce[s, c, k, 0], ce[s, c, k, 1], ce[s, c, k, 2])
                    cj = cl_cj[c, k]
                    if kd == 0:
                        off[b, cj, 0], off[b, cj, 1], off[b, cj, 2] = ox, oy, oz
                    else:  # a missing child: no further along than its share of the stand-in's distance
                        g = cl_gj[c, k]
                        lim = max(
                            cl_split[c, k] * (ox * rest_dir[cj, 0] + oy * rest_dir[cj, 1] + oz * rest_dir[cj, 2]), 0.0
                        )
                        if off[b, cj, 0] ** 2 + off[b, cj, 1] ** 2 + off[b, cj, 2] ** 2 > lim * lim:
                            for a in range(3):
                                off[b, cj, a] = rest_dir[cj, a] * lim
                        lx, ly, lz = ox - off[b, cj, 0], oy - off[b, cj, 1], oz - off[b, cj, 2]
                        lg = np.sqrt(lx * lx + ly * ly + lz * lz)
                        for a in range(3):
                            off[b, g, a] = rest_dir[g, a] * lg
        # heading from the left-right vectors, kept from the last frame when not observable
        lx, lz = 0.0, 0.0
        for k in range(left.shape[0]):
            li, rj = left[k], right[k]
            if M_in[b, li] and M_in[b, rj]:
                lx += P[b, li, 0] - P[b, rj, 0]
                lz += P[b, li, 2] - P[b, rj, 2]
        nrm = np.hypot(lx, lz)
        if nrm > min_lat * sz:
            c_, s_ = lx / max(nrm, 1e-12), -lz / max(nrm, 1e-12)
        else:
            c_, s_ = cs_a[s, 0], cs_a[s, 1]
        cs[b, 0], cs[b, 1] = c_, s_
        # normalise: R_y(-yaw) (p - root) / size with R_y = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
        inv = 1.0 / sz
        for i in range(Ji):
            if M_in[b, i]:
                rx = P[b, i, 0] - root[b, 0]
                ry = P[b, i, 1] - root[b, 1]
                rz = P[b, i, 2] - root[b, 2]
                pos[b, i, 0] = (rx * c_ - rz * s_) * inv
                pos[b, i, 1] = ry * inv
                pos[b, i, 2] = (rx * s_ + rz * c_) * inv
    return pos, mask, reset, fresh, P, root, cs, size, off, dev, seen, W


@jit
def _swing(u, v, out):
    """Minimal rotation turning unit ``u`` onto unit ``v`` into ``out (3, 3)``; the identity where either is zero."""
    if u[0] * u[0] + u[1] * u[1] + u[2] * u[2] < 0.5 or v[0] * v[0] + v[1] * v[1] + v[2] * v[2] < 0.5:
        _eye3(out)
        return
    c = u[0] * v[0] + u[1] * v[1] + u[2] * v[2]
    if c < -0.9999:  # opposite: a half turn about an axis perpendicular to u
        m = 0
        if abs(u[1]) < abs(u[m]):
            m = 1
        if abs(u[2]) < abs(u[m]):
            m = 2
        e = np.zeros(3)
        e[m] = 1.0
        ax, ay, az = _unit3(u[1] * e[2] - u[2] * e[1], u[2] * e[0] - u[0] * e[2], u[0] * e[1] - u[1] * e[0])
        a = (ax, ay, az)
        for i in range(3):
            for k in range(3):
                out[i, k] = 2.0 * a[i] * a[k] - (1.0 if i == k else 0.0)
        return
    wx, wy, wz = u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]
    f = 1.0 / max(1.0 + c, 1e-9)
    out[0, 0] = c + wx * wx * f
    out[0, 1] = -wz + wx * wy * f
    out[0, 2] = wy + wx * wz * f
    out[1, 0] = wz + wy * wx * f
    out[1, 1] = c + wy * wy * f
    out[1, 2] = -wx + wy * wz * f
    out[2, 0] = -wy + wz * wx * f
    out[2, 1] = wx + wz * wy * f
    out[2, 2] = c + wz * wz * f


@jit
def _fit_spheres(x, C, R, n, sweeps):
    """:func:`rtik.solve.numpath._fit_spheres` for one point ``x (3,)`` (in place) and its first ``n`` spheres."""
    for _ in range(sweeps):
        for k in range(n):
            vx, vy, vz = x[0] - C[k, 0], x[1] - C[k, 1], x[2] - C[k, 2]
            d = np.sqrt(vx * vx + vy * vy + vz * vz)
            if d > 1e-12:
                f = R[k] / d
                x[0], x[1], x[2] = C[k, 0] + f * vx, C[k, 1] + f * vy, C[k, 2] + f * vz


@jit
def _triad_frame(P, F):
    """The frame through three points ``P (3, 3)`` (rows) into ``F`` (:func:`_frame` of their two edges), as
    :func:`rtik.solve.numpath._fit_triad` builds it; False where they are in a line."""
    ax, ay, az = P[1, 0] - P[0, 0], P[1, 1] - P[0, 1], P[1, 2] - P[0, 2]
    bx, by, bz = P[2, 0] - P[0, 0], P[2, 1] - P[0, 1], P[2, 2] - P[0, 2]
    cx, cy, cz = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
    _frame(ax, ay, az, bx, by, bz, F)
    m1 = max(np.sqrt(ax * ax + ay * ay + az * az), 1e-12)
    return np.sqrt(cx * cx + cy * cy + cz * cz) > 1e-3 * m1 * m1


@jit
def _fit_triad(x, b, row, kids, M_in, tgt_in, off, in_idx, Pa, Pb, Fa, Fb):
    """:func:`rtik.solve.numpath._fit_triad` for input joint ``row`` of stream ``b``: ``x (3,)`` in place."""
    if kids.shape[1] < 3:
        return
    for q in range(3):
        c = kids[row, q]
        if c < 0 or not M_in[b, c]:
            return
        for k in range(3):
            Pa[q, k] = off[b, in_idx[c], k]
            Pb[q, k] = tgt_in[c, k]
    if not (_triad_frame(Pa, Fa) and _triad_frame(Pb, Fb)):
        return
    ma = np.empty(3)
    for k in range(3):
        ma[k] = (Pa[0, k] + Pa[1, k] + Pa[2, k]) / 3.0
    for r in range(3):  # centroid of the targets minus (Fb Fa^T) times that of the offsets
        v = 0.0
        for c in range(3):
            rc = Fb[r, 0] * Fa[c, 0] + Fb[r, 1] * Fa[c, 1] + Fb[r, 2] * Fa[c, 2]
            v += rc * ma[c]
        x[r] = (Pb[0, r] + Pb[1, r] + Pb[2, r]) / 3.0 - v


@jit
def _place(x, b, row, parent, kids, M_in, tgt_in, off, in_idx, fc, fr, Pa, Pb, Fa, Fb):
    """Fit the held place ``x (3,)`` of input joint ``row`` to its bones (the spheres about its ``parent``'s target,
    -1 for none, and its observed children's; then the frame through three children) and write it to ``tgt_in``."""
    n = 0
    for q in range(-1, kids.shape[1]):
        c = parent if q < 0 else kids[row, q]
        if c < 0 or (q >= 0 and not M_in[b, c]):
            continue
        j = in_idx[row] if q < 0 else in_idx[c]  # the bone between them: the child's offset
        fc[n, 0], fc[n, 1], fc[n, 2] = tgt_in[c, 0], tgt_in[c, 1], tgt_in[c, 2]
        fr[n] = np.sqrt(off[b, j, 0] ** 2 + off[b, j, 1] ** 2 + off[b, j, 2] ** 2)
        n += 1
    _fit_spheres(x, fc, fr, n, FIT_SWEEPS)
    _fit_triad(x, b, row, kids, M_in, tgt_in, off, in_idx, Pa, Pb, Fa, Fb)
    for k in range(3):
        tgt_in[row, k] = x[k]


@jit
def _hold_gaps(b, s, tgt_in, M_in, mh, off, c_, s_, sz, goff, gw, anc, in_idx, ri, rows, prow, kids, decay, fc, fr):
    """:func:`rtik.solve.numpath._hold_gaps` for stream ``b`` (slot ``s``): ``tgt_in (Ji, 3)`` and the held mask
    ``mh (1, Ji)`` in place; ``fc``, ``fr`` scratch for the spheres."""
    Ji = tgt_in.shape[0]
    x = np.empty(3)
    Pa, Pb, Fa, Fb = np.empty((3, 3)), np.empty((3, 3)), np.empty((3, 3)), np.empty((3, 3))
    for i in range(Ji):  # trust: whole where the joint and its ancestor are both seen, decaying otherwise
        a = anc[s, i]
        if a >= 0:
            gw[s, i] = 1.0 if (M_in[b, i] and M_in[b, a]) else gw[s, i] * decay
    if not M_in[b, ri]:  # the root: where its observed children's held offsets put it, fitted to them
        tot, wmax, ex, ey, ez = 0.0, 0.0, 0.0, 0.0, 0.0
        for i in range(Ji):
            if anc[s, i] == ri and M_in[b, i]:
                wk = gw[s, i]
                ox, oy, oz = goff[s, i, 0], goff[s, i, 1], goff[s, i, 2]
                ex += wk * (tgt_in[i, 0] - (c_ * ox + s_ * oz) * sz)
                ey += wk * (tgt_in[i, 1] - oy * sz)
                ez += wk * (tgt_in[i, 2] - (-s_ * ox + c_ * oz) * sz)
                tot += wk
                wmax = max(wmax, wk)
        if tot > 0.0:
            for k in range(3):
                e = (ex, ey, ez)[k] / tot
                x[k] = tgt_in[ri, k] + wmax * (e - tgt_in[ri, k])
            _place(x, b, ri, -1, kids, M_in, tgt_in, off, in_idx, fc, fr, Pa, Pb, Fa, Fb)
            mh[0, ri] = True
    for r in range(rows.shape[0]):  # ancestors first
        i = rows[r]
        a = anc[s, i]
        if a < 0:
            continue
        if M_in[b, i]:
            if M_in[b, a]:  # world -> heading frame, body size
                dx, dy, dz = tgt_in[i, 0] - tgt_in[a, 0], tgt_in[i, 1] - tgt_in[a, 1], tgt_in[i, 2] - tgt_in[a, 2]
                goff[s, i, 0] = (c_ * dx - s_ * dz) / sz
                goff[s, i, 1] = dy / sz
                goff[s, i, 2] = (s_ * dx + c_ * dz) / sz
            continue
        w = gw[s, i]
        if w <= 0.0:
            continue
        ox, oy, oz = goff[s, i, 0], goff[s, i, 1], goff[s, i, 2]
        x[0] = tgt_in[i, 0] + w * (tgt_in[a, 0] + (c_ * ox + s_ * oz) * sz - tgt_in[i, 0])
        x[1] = tgt_in[i, 1] + w * (tgt_in[a, 1] + oy * sz - tgt_in[i, 1])
        x[2] = tgt_in[i, 2] + w * (tgt_in[a, 2] + (-s_ * ox + c_ * oz) * sz - tgt_in[i, 2])
        _place(x, b, i, a if a == prow[i] else -1, kids, M_in, tgt_in, off, in_idx, fc, fr, Pa, Pb, Fa, Fb)
        mh[0, i] = True


@jit
def _turn(kx, ky, kz, angle, out):
    """``out``: the rotation by ``angle`` about the unit axis ``k`` (as rtik.solve.refine._turn)."""
    _turn_cs(kx, ky, kz, np.cos(angle), np.sin(angle), out)


@jit
def _turn_cs(kx, ky, kz, c, s, out):
    """``out``: the rotation about the unit axis ``k`` whose angle has cosine ``c`` and sine ``s`` (Rodrigues)."""
    e = 1.0 - c
    out[0, 0], out[0, 1], out[0, 2] = c + e * kx * kx, -s * kz + e * kx * ky, s * ky + e * kx * kz
    out[1, 0], out[1, 1], out[1, 2] = s * kz + e * ky * kx, c + e * ky * ky, -s * kx + e * ky * kz
    out[2, 0], out[2, 1], out[2, 2] = -s * ky + e * kz * kx, s * kx + e * kz * ky, c + e * kz * kz


@jit
def _hinge(Go, off, b, up, lo, end, axis, ramp_lo, ramp_hi, min_bone, T, T2, tmp):
    """One hinge limb of global rotations ``Go (J, 3, 3)``, in place (as rtik.solve.refine.hinges)."""
    ax, ay, az = _mv3(Go[up], off[b, lo, 0], off[b, lo, 1], off[b, lo, 2])
    bx, by, bz = _mv3(Go[lo], off[b, end, 0], off[b, end, 1], off[b, end, 2])
    la, lb = ax * ax + ay * ay + az * az, bx * bx + by * by + bz * bz
    if la <= min_bone * min_bone or lb <= min_bone * min_bone:
        return
    ax, ay, az = _unit3(ax, ay, az)
    bx, by, bz = _unit3(bx, by, bz)
    theta = np.arccos(min(max(ax * bx + ay * by + az * bz, -1.0), 1.0))
    w = min(max((theta - ramp_lo) / (ramp_hi - ramp_lo), 0.0), 1.0)
    if w <= 0.0:
        return
    nx, ny, nz = _unit3(ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx)
    hx, hy, hz = _mv3(Go[up], axis[0], axis[1], axis[2])
    d = hx * ax + hy * ay + hz * az
    hx, hy, hz = _unit3(hx - d * ax, hy - d * ay, hz - d * az)
    cx, cy, cz = hy * nz - hz * ny, hz * nx - hx * nz, hx * ny - hy * nx
    phi = np.arctan2(cx * ax + cy * ay + cz * az, hx * nx + hy * ny + hz * nz)
    _turn(ax, ay, az, w * phi, T)
    _matmul3(T, Go[up], tmp)
    Go[up] = tmp
    # D = turn(n, theta) Go[up] Go[lo]^T, a turn about b: its angle
    _turn(nx, ny, nz, theta, T)
    _matmul3(T, Go[up], T2)
    for i in range(3):
        for k in range(3):
            T[i, k] = T2[i, 0] * Go[lo, k, 0] + T2[i, 1] * Go[lo, k, 1] + T2[i, 2] * Go[lo, k, 2]
    sx, sy, sz = 0.5 * (T[2, 1] - T[1, 2]), 0.5 * (T[0, 2] - T[2, 0]), 0.5 * (T[1, 0] - T[0, 1])
    psi = np.arctan2(sx * bx + sy * by + sz * bz, 0.5 * (T[0, 0] + T[1, 1] + T[2, 2] - 1.0))
    _turn(bx, by, bz, w * psi, T)
    _matmul3(T, Go[lo], tmp)
    Go[lo] = tmp


@jit
def _prior_twist(Go, off, b, j, p, c, Lp, weight, min_bone, M, T, tmp, u, v):
    """One joint's mean-pose twist in global rotations ``Go (J, 3, 3)``, in place (as
    rtik.solve.refine.prior_twists): the angle about the bone between the network's and the mean pose's images
    of one local vector normal to the bone, without the matrices."""
    ox, oy, oz = off[b, c, 0], off[b, c, 1], off[b, c, 2]
    dx, dy, dz = _mv3(Go[j], ox, oy, oz)
    if dx * dx + dy * dy + dz * dz <= min_bone * min_bone:
        return
    vx, vy, vz = _unit3(dx, dy, dz)
    bx, by, bz = _unit3(ox, oy, oz)  # the bone in the joint's frame, and a vector x normal to it
    if abs(bx) <= abs(by) and abs(bx) <= abs(bz):
        xx, xy, xz = _unit3(0.0, bz, -by)  # b x e_x
    elif abs(by) <= abs(bz):
        xx, xy, xz = _unit3(-bz, 0.0, bx)  # b x e_y
    else:
        xx, xy, xz = _unit3(by, -bx, 0.0)  # b x e_z
    gx, gy, gz = _mv3(Go[j], xx, xy, xz)  # the network's image of x (normal to the bone)
    lx, ly, lz = _mv3(Lp, xx, xy, xz)
    lbx, lby, lbz = _mv3(Lp, bx, by, bz)
    mx, my, mz = _mv3(Go[p], lx, ly, lz)  # the mean pose's images of x and of the bone
    ux, uy, uz = _mv3(Go[p], lbx, lby, lbz)
    ux, uy, uz = _unit3(ux, uy, uz)
    cu = ux * vx + uy * vy + uz * vz
    if cu < -0.9999:  # the mean pose's bone points away: the half turn of _swing
        u[0], u[1], u[2] = ux, uy, uz
        v[0], v[1], v[2] = vx, vy, vz
        _swing(u, v, T)
        mx, my, mz = _mv3(T, mx, my, mz)
    else:  # its minimal swing onto the bone, applied to the image of x (Rodrigues with w = u x v)
        wx, wy, wz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx
        f = (wx * mx + wy * my + wz * mz) / max(1.0 + cu, 1e-9)
        mx, my, mz = (
            cu * mx + (wy * mz - wz * my) + f * wx,
            cu * my + (wz * mx - wx * mz) + f * wy,
            cu * mz + (wx * my - wy * mx) + f * wz,
        )
    cx, cy, cz = gy * mz - gz * my, gz * mx - gx * mz, gx * my - gy * mx
    psi = np.arctan2(cx * vx + cy * vy + cz * vz, gx * mx + gy * my + gz * mz)
    _turn(vx, vy, vz, weight * psi, T)
    _matmul3(T, Go[j], tmp)
    Go[j] = tmp


@jit
def _reaim(Go, off, b, M_in, tgt, root, net, beta, pair, aim, gate, mr, order, order_par, pair_child, inner_of,
           row_of, bone_parent, bones, bone_paths, below_root, X, u, v, T, tmp):  # fmt: skip
    """Each inner joint's bone swung, parents first, from where the forward kinematics of its re-aimed ancestors
    put the joint (``X (J, 3)``, scratch) towards its child's target, by ``gate`` for observed joints and fully for
    the joints ``M_in`` lacks (as rtik.solve.refine.reaim)."""
    for i in range(3):  # the motion root by the FK sum (as _positions); every joint below it from its parent
        acc = float(root[i])
        for n in range(bones.shape[0]):
            if bone_paths[mr, n] != 0.0:
                pb, cb = bone_parent[n], bones[n]
                acc += bone_paths[mr, n] * (
                    Go[pb, i, 0] * off[b, cb, 0] + Go[pb, i, 1] * off[b, cb, 1] + Go[pb, i, 2] * off[b, cb, 2]
                )
        X[mr, i] = acc
    for n in range(order.shape[0]):
        j, p = order[n], order_par[n]
        if below_root[j, 0] > 0 and j != mr:
            gx, gy, gz = _mv3(Go[p], off[b, j, 0], off[b, j, 1], off[b, j, 2])
            X[j, 0], X[j, 1], X[j, 2] = X[p, 0] + gx, X[p, 1] + gy, X[p, 2] + gz
        a = inner_of[j]
        if a < 0:
            continue
        vi = pair[a]
        c = pair_child[vi]
        if aim[a]:
            gx, gy, gz = _mv3(Go[j], off[b, c, 0], off[b, c, 1], off[b, c, 2])
            u[0], u[1], u[2] = _unit3(gx, gy, gz)
        else:
            u[0], u[1], u[2] = 0.0, 0.0, 0.0
        w = 1.0 if row_of[j] >= 0 and not M_in[b, row_of[j]] else gate  # the share of the joint's FK place
        sx, sy, sz = (
            tgt[j, 0] + w * (X[j, 0] - tgt[j, 0]),
            tgt[j, 1] + w * (X[j, 1] - tgt[j, 1]),
            tgt[j, 2] + w * (X[j, 2] - tgt[j, 2]),
        )
        tx, ty, tz = _unit3(tgt[c, 0] - sx, tgt[c, 1] - sy, tgt[c, 2] - sz)
        bt = beta[c]
        v[0], v[1], v[2] = _unit3(
            net[vi, 0] + bt * (tx - net[vi, 0]),
            net[vi, 1] + bt * (ty - net[vi, 1]),
            net[vi, 2] + bt * (tz - net[vi, 2]),
        )
        _swing(u, v, T)
        _matmul3(T, Go[j], tmp)
        Go[j] = tmp


@jit
def post(
    r6, clean, M_in, fresh, P, root, cs, size, off, dev, seen, W, slots, noise_a, dbias_a, gap_off_a, gap_w_a,
    gap_anc_a, last_ts, last_root, last_tgt, cs_a, fresh_a, cmem, ckind, cval, cn, cspec, root_ap, ts, in_idx, bone_in,
    ri, mr, dummy, order, order_par, pair_joint, pair_child, inner, det, det_pairs, det_w, local_joint, local_parent,
    root_inner, bone_parent, bones, bone_paths, below_root, cl_p, cl_cj, cl_ci, bias_fixed, gap_rows, gap_prow,
    gap_kids, b_ci, b_pi, hg_idx, hg_axis, tw_idx, tw_L, inner_of, row_of, QA, QB, o_f,
):  # fmt: skip
    """Denoised targets, noise estimate, 6-D -> rotations, refinement, FK and quaternions; updates the
    per-slot bookkeeping. ``o_f``: ``[noise_rate, sigma_denoise, sigma_network, MIN_BONE, REAL_FRACTION, COLLINEAR,
    denoise_reach, bias_time, gap_hold, spike, hinge_from, hinge_full, twist_prior, REAIM_MIN]`` (the middle three
    :mod:`rtik.solve.refine`'s; ``denoise_reach``, ``bias_time``, ``gap_hold`` and ``spike`` 0 for none; the hinge's
    ramp in radians, with ``hg_idx (H, 3)`` and ``hg_axis (H, 3)`` of :func:`rtik.solve.refine.hinge_tables`, no
    rows when off; the mean-pose twists' weight, with ``tw_idx (T, 3)`` and ``tw_L (T, 3, 3)`` of
    :func:`rtik.solve.refine.twist_tables`, no rows when off; the least noise gate that re-aims). ``inner_of
    (J,)``, ``row_of (J,)``: each joint's place among the inner joints and the input rows (-1: none). Spikes
    are cleared from ``M_in`` in place. Returns
    ``(quats (B, J, 4) float32, root_pos (B, 3) float32, positions (B, J, 3) float32, noise (B,))``."""
    B, Ji, J = P.shape[0], P.shape[1], off.shape[1]
    Nb = dev.shape[1]
    A, V = inner.shape[0], pair_joint.shape[0]
    D, K1 = det_pairs.shape[0], det_pairs.shape[1]
    rate, sd, sn = o_f[0], o_f[1], o_f[2]
    q_out = np.empty((B, J, 4), np.float32)
    rp_out = np.empty((B, 3), np.float32)
    X_out = np.empty((B, J, 3), np.float32)
    noise_out = np.empty(B)
    L = np.empty((J, 3, 3))
    G = np.empty((J, 3, 3))
    Go = np.empty((J, 3, 3))
    Lo = np.empty((J, 3, 3))
    tgt = np.zeros((J, 3))
    tgt_in = np.empty((Ji, 3))
    den = np.empty((Ji, 3))
    net = np.empty((V, 3))
    want = np.empty((V, 3))
    S = np.empty((A, 3, 3))
    Ry = np.zeros((3, 3))
    tmp = np.empty((3, 3))
    T = np.empty((3, 3))
    Q = np.empty(16)
    beta = np.empty(J)
    bv = np.empty((bones.shape[0], 3))
    C, KC = cl_p.shape[0], cl_cj.shape[1]
    Fm = np.empty((3, 3))
    tin = np.empty((1, Ji, 3))
    mh = np.empty((1, Ji), np.bool_)
    gfc = np.empty((gap_kids.shape[1] + 1, 3))
    gfr = np.empty(gap_kids.shape[1] + 1)
    pair = np.empty(A, np.int64)
    aim = np.empty(A, np.bool_)
    Ld = np.empty(K1)
    real = np.empty(K1, np.bool_)
    real_d = np.empty((D, K1), np.bool_)
    min_bone, real_frac, collinear, reach_f, bias_t, gap_t = o_f[3], o_f[4], o_f[5], o_f[6], o_f[7], o_f[8]
    spike_t, hg_lo, hg_hi, tw_w, reaim_min = o_f[9], o_f[10], o_f[11], o_f[12], o_f[13]
    tw_u, tw_v = np.empty(3), np.empty(3)
    ra_u, ra_v = np.empty(3), np.empty(3)
    Xs = np.zeros((J, 3))
    T2 = np.empty((3, 3))
    cnt_n = np.empty(Ji, np.int64)
    cnt_k = np.empty(Ji, np.int64)
    lone = np.empty(Ji, np.int64)
    sp1 = np.empty(Ji, np.bool_)
    for b in range(B):
        s = slots[b]
        c_, s_, sz = cs[b, 0], cs[b, 1], size[b]
        Ry[0, 0], Ry[0, 2], Ry[1, 1], Ry[2, 0], Ry[2, 2] = c_, s_, 1.0, -s_, c_
        if spike_t > 0.0 and not fresh[b]:  # spikes: missing from here on (as rtik.solve.numpath._spikes)
            thr = spike_t + SPIKE_NOISE * noise_a[s]
            for i in range(Ji):
                cnt_n[i], cnt_k[i], lone[i] = 0, 0, 0
            for k in range(Nb):
                if seen[b, k] and not np.isnan(dev[b, k]):
                    cnt_n[b_ci[k]] += 1
                    cnt_n[b_pi[k]] += 1
                    if dev[b, k] > thr:
                        cnt_k[b_ci[k]] += 1
                        cnt_k[b_pi[k]] += 1
            for i in range(Ji):
                sp1[i] = M_in[b, i] and cnt_n[i] >= 2 and cnt_k[i] == cnt_n[i]
            for k in range(Nb):
                if seen[b, k] and not np.isnan(dev[b, k]) and dev[b, k] > thr and not (sp1[b_ci[k]] or sp1[b_pi[k]]):
                    lone[b_ci[k]] += 1
                    lone[b_pi[k]] += 1
            for i in range(Ji):
                if sp1[i] or (M_in[b, i] and cnt_n[i] == 1 and lone[i] == 1):
                    M_in[b, i] = False
        # the denoiser's lasting offset per joint, taken off its output (as rtik.solve.numpath.post)
        brate = 1.0
        if bias_t > 0.0 and not fresh[b]:
            brate = 1.0 - np.exp(-max(ts[b] - last_ts[s], 0.0) / bias_t)
        # denoised positions in the world and the input-noise estimate
        r_den, m_cnt = 0.0, 0
        for i in range(Ji):
            x, y, z = clean[b, i, 0], clean[b, i, 1], clean[b, i, 2]
            den[i, 0] = (c_ * x + s_ * z) * sz + root[b, 0]
            den[i, 1] = y * sz + root[b, 1]
            den[i, 2] = (-s_ * x + c_ * z) * sz + root[b, 2]
            if M_in[b, i]:
                ex, ey, ez = P[b, i, 0] - den[i, 0], P[b, i, 1] - den[i, 1], P[b, i, 2] - den[i, 2]
                r_den += np.sqrt(ex * ex + ey * ey + ez * ez)
                m_cnt += 1
            if bias_t > 0.0:
                if fresh[b]:
                    dbias_a[s, i, 0], dbias_a[s, i, 1], dbias_a[s, i, 2] = 0.0, 0.0, 0.0
                if M_in[b, i] and not bias_fixed[i]:  # den - P, turned back to the heading frame and normalised
                    mx, my, mz = den[i, 0] - P[b, i, 0], den[i, 1] - P[b, i, 1], den[i, 2] - P[b, i, 2]
                    dbias_a[s, i, 0] += brate * ((c_ * mx - s_ * mz) / sz - dbias_a[s, i, 0])
                    dbias_a[s, i, 1] += brate * (my / sz - dbias_a[s, i, 1])
                    dbias_a[s, i, 2] += brate * ((s_ * mx + c_ * mz) / sz - dbias_a[s, i, 2])
                bx, by, bz = dbias_a[s, i, 0], dbias_a[s, i, 1], dbias_a[s, i, 2]
                den[i, 0] -= (c_ * bx + s_ * bz) * sz
                den[i, 1] -= by * sz
                den[i, 2] -= (-s_ * bx + c_ * bz) * sz
        r_den = r_den / max(m_cnt, 1) / 1.6
        r_bone, b_cnt = 0.0, 0
        for k in range(Nb):
            if seen[b, k] and not np.isnan(dev[b, k]):
                r_bone += dev[b, k]
                b_cnt += 1
        r_bone = r_bone / max(b_cnt, 1) / 1.13
        sigma = min(r_den, r_bone)
        nz = sigma if fresh[b] else noise_a[s] + rate * (sigma - noise_a[s])
        noise_a[s] = nz
        noise_out[b] = nz
        v2 = nz * nz
        alpha = v2 / (v2 + sd * sd)
        w_net = sn * sn / (v2 + sn * sn)
        reach = reach_f * max(nz, 1e-6)
        for i in range(Ji):
            al = alpha if M_in[b, i] else 1.0
            if reach_f > 0.0 and M_in[b, i]:  # no further than the noise can explain (rtik.solve.numpath.post)
                mx, my, mz = den[i, 0] - P[b, i, 0], den[i, 1] - P[b, i, 1], den[i, 2] - P[b, i, 2]
                dist = np.sqrt(mx * mx + my * my + mz * mz)
                if dist > reach:
                    al *= reach / dist
            for k in range(3):
                tgt_in[i, k] = P[b, i, k] + al * (den[i, k] - P[b, i, k])
        # missing joints held through their gap (as rtik.solve.numpath._hold_gaps)
        for i in range(Ji):
            mh[0, i] = M_in[b, i]
        if gap_t > 0.0:
            decay = 0.0 if fresh[b] else np.exp(-max(ts[b] - last_ts[s], 0.0) / gap_t)
            _hold_gaps(b, s, tgt_in, M_in, mh, off, c_, s_, sz, gap_off_a, gap_w_a, gap_anc_a, in_idx, ri, gap_rows,
                       gap_prow, gap_kids, decay, gfc, gfr)  # fmt: skip
        # children the layout lacks, where their joint's frame is observed: the rest offset turned from the
        # rest frame to the observed one (as rtik.solve.numpath._place_virtual)
        if C > 0:
            tin[0] = tgt_in
            for c in range(C):
                pi = cl_p[c]
                if not _cluster_frame(tin, mh, 0, pi, cmem[s, c], cspec[s, c], cval[s, c], Fm):
                    continue
                for k in range(KC):
                    if ckind[s, c, k] != 1 or cn[s, c, k] <= 0.0:
                        continue
                    cj = cl_cj[c, k]
                    rx, ry, rz = off[b, cj, 0], off[b, cj, 1], off[b, cj, 2]
                    fr = W[b, c]
                    lx = fr[0, 0] * rx + fr[1, 0] * ry + fr[2, 0] * rz  # F_rest^T off
                    ly = fr[0, 1] * rx + fr[1, 1] * ry + fr[2, 1] * rz
                    lz = fr[0, 2] * rx + fr[1, 2] * ry + fr[2, 2] * rz
                    vx, vy, vz = _mv3(Fm, lx, ly, lz)
                    ci = cl_ci[c, k]
                    tgt_in[ci, 0] = tin[0, pi, 0] + vx
                    tgt_in[ci, 1] = tin[0, pi, 1] + vy
                    tgt_in[ci, 2] = tin[0, pi, 2] + vz
        for i in range(Ji):
            for k in range(3):
                tgt[in_idx[i], k] = tgt_in[i, k]
        for j in range(J):
            beta[j] = w_net * bone_in[j]
        # 6-D -> local matrices (Gram-Schmidt), the root back to world heading, global rotations
        for j in range(J):
            ax, ay, az = _unit3(np.float64(r6[b, j, 0]), np.float64(r6[b, j, 1]), np.float64(r6[b, j, 2]))
            bx, by, bz = np.float64(r6[b, j, 3]), np.float64(r6[b, j, 4]), np.float64(r6[b, j, 5])
            d = ax * bx + ay * by + az * bz
            bx, by, bz = _unit3(bx - d * ax, by - d * ay, bz - d * az)
            L[j, 0, 0], L[j, 1, 0], L[j, 2, 0] = ax, ay, az
            L[j, 0, 1], L[j, 1, 1], L[j, 2, 1] = bx, by, bz
            L[j, 0, 2], L[j, 1, 2], L[j, 2, 2] = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
        _matmul3(Ry, L[mr], tmp)
        L[mr] = tmp
        if dummy >= 0:
            _eye3(L[dummy])
        G[:] = L
        for n in range(order.shape[0]):
            _matmul3(G[order_par[n]], L[order[n]], G[order[n]])
        # refinement: every (joint, child bone) pair's network and target directions
        for v in range(V):
            pj, pc = pair_joint[v], pair_child[v]
            gx, gy, gz = _mv3(G[pj], off[b, pc, 0], off[b, pc, 1], off[b, pc, 2])
            nx, ny, nz_ = _unit3(gx, gy, gz)
            wx, wy, wz = _unit3(tgt[pc, 0] - tgt[pj, 0], tgt[pc, 1] - tgt[pj, 1], tgt[pc, 2] - tgt[pj, 2])
            bt = beta[pc]
            wx, wy, wz = _unit3(nx + bt * (wx - nx), ny + bt * (wy - ny), nz_ + bt * (wz - nz_))
            net[v, 0], net[v, 1], net[v, 2] = nx, ny, nz_
            want[v, 0], want[v, 1], want[v, 2] = wx, wy, wz
        # each joint is aimed by its first child bone of real length (as rtik.solve.refine.primary_pairs)
        for a in range(A):
            pair[a] = a
            c = pair_child[a]
            aim[a] = off[b, c, 0] ** 2 + off[b, c, 1] ** 2 + off[b, c, 2] ** 2 > min_bone * min_bone
        for dd in range(D):
            lmax = 0.0
            for k in range(K1):
                c = pair_child[det_pairs[dd, k]]
                Ld[k] = np.sqrt(off[b, c, 0] ** 2 + off[b, c, 1] ** 2 + off[b, c, 2] ** 2) * det_w[dd, k]
                lmax = max(lmax, Ld[k])
            a_i = det[dd]
            aim[a_i] = False
            for k in range(K1):
                real[k] = Ld[k] > max(real_frac * lmax, min_bone)
                if real[k] and not aim[a_i]:
                    aim[a_i] = True
                    pair[a_i] = det_pairs[dd, k]
            for k in range(K1):
                real_d[dd, k] = real[k]
        Go[:] = G
        for a in range(A):
            if aim[a]:
                _swing(net[pair[a]], want[pair[a]], S[a])
            else:
                _eye3(S[a])
            _matmul3(S[a], G[inner[a]], Go[inner[a]])
        for dd in range(D):
            a_i = det[dd]
            pa = pair[a_i]
            ax, ay, az = want[pa, 0], want[pa, 1], want[pa, 2]
            ss, cc, wsum = 0.0, 0.0, 0.0
            for k in range(K1):
                v = det_pairs[dd, k]
                if v == pa or not real_d[dd, k]:
                    continue
                ux, uy, uz = _mv3(S[a_i], net[v, 0], net[v, 1], net[v, 2])
                vx, vy, vz = want[v, 0], want[v, 1], want[v, 2]
                cx, cy, cz = ay * uz - az * uy, az * ux - ax * uz, ax * uy - ay * ux
                ua, va = ux * ax + uy * ay + uz * az, vx * ax + vy * ay + vz * az
                ss += cx * vx + cy * vy + cz * vz
                cc += ux * vx + uy * vy + uz * vz - ua * va
                wsum += 1.0
            nn = np.hypot(ss, cc)
            if nn < collinear * max(wsum, 1.0):  # collinear children: no twist to read (as rtik.solve.refine.refine)
                ss, cc = 0.0, 1.0
            else:
                ss, cc = ss / nn, cc / nn
            _turn_cs(ax, ay, az, cc, ss, T)
            dj = inner[a_i]
            _matmul3(T, Go[dj], tmp)
            Go[dj] = tmp
        any_miss = False
        for i in range(Ji):
            any_miss = any_miss or not M_in[b, i]
        if alpha >= reaim_min or any_miss:  # each bone from where its parent chain put its joint (refine.reaim)
            _reaim(Go, off, b, M_in, tgt, tgt_in[ri], net, beta, pair, aim, alpha, mr, order, order_par, pair_child,
                   inner_of, row_of, bone_parent, bones, bone_paths, below_root, Xs, ra_u, ra_v, T, tmp)  # fmt: skip
        for n in range(tw_idx.shape[0]):  # the mean pose's twists (as rtik.solve.refine.prior_twists); none when off
            _prior_twist(Go, off, b, tw_idx[n, 0], tw_idx[n, 1], tw_idx[n, 2], tw_L[n], tw_w, min_bone, T2, T, tmp,
                         tw_u, tw_v)  # fmt: skip
        for h in range(hg_idx.shape[0]):  # hinge limbs (as rtik.solve.refine.hinges); none when off
            _hinge(Go, off, b, hg_idx[h, 0], hg_idx[h, 1], hg_idx[h, 2], hg_axis[h], hg_lo, hg_hi, min_bone, T,
                   T2, tmp)  # fmt: skip
        if dummy >= 0:
            _eye3(Go[dummy])
        Lo[:] = L
        for n in range(local_joint.shape[0]):
            jj, pp = local_joint[n], local_parent[n]
            for i in range(3):
                for k in range(3):
                    Lo[jj, i, k] = (
                        Go[pp, 0, i] * Go[jj, 0, k] + Go[pp, 1, i] * Go[jj, 1, k] + Go[pp, 2, i] * Go[jj, 2, k]
                    )
        if root_inner >= 0:
            Lo[root_inner] = Go[root_inner]
        _positions(Go, off, b, tgt_in[ri], bone_parent, bones, bone_paths, below_root, bv, X_out)
        for i in range(3):
            rp_out[b, i] = tgt_in[ri, i]
        if root_ap[s]:  # the root a stand-in: the body moves by its observed joints' miss (numpath._land_root)
            mx, my, mz, nm = 0.0, 0.0, 0.0, 0
            for i in range(Ji):
                if M_in[b, i] and i != ri:
                    jj = in_idx[i]
                    mx += tgt_in[i, 0] - X_out[b, jj, 0]
                    my += tgt_in[i, 1] - X_out[b, jj, 1]
                    mz += tgt_in[i, 2] - X_out[b, jj, 2]
                    nm += 1
            if nm > 0:
                mx, my, mz = mx / nm, my / nm, mz / nm
                rp_out[b, 0] += mx
                rp_out[b, 1] += my
                rp_out[b, 2] += mz
                for j in range(J):
                    X_out[b, j, 0] += mx * below_root[j, 0]
                    X_out[b, j, 1] += my * below_root[j, 0]
                    X_out[b, j, 2] += mz * below_root[j, 0]
        # quaternions (branch-free Shepperd, as rtik.solve.refine.matrix_to_quat), w >= 0
        for j in range(J):
            for c in range(16):
                acc = QB[c]
                for r in range(9):
                    acc += Lo[j, r // 3, r % 3] * QA[r, c]
                Q[c] = acc
            kbest = 0
            for k in range(1, 4):
                if Q[5 * k] > Q[5 * kbest]:
                    kbest = k
            qx, qy, qz, qw = Q[4 * kbest], Q[4 * kbest + 1], Q[4 * kbest + 2], Q[4 * kbest + 3]
            f = 1.0 / np.sqrt(qx * qx + qy * qy + qz * qz + qw * qw)
            if qw < 0:
                f = -f
            q_out[b, j, 0], q_out[b, j, 1], q_out[b, j, 2], q_out[b, j, 3] = qx * f, qy * f, qz * f, qw * f
        # bookkeeping
        last_ts[s] = ts[b]
        for k in range(3):
            last_root[s, k] = root[b, k]
        last_tgt[s] = tgt_in
        cs_a[s, 0], cs_a[s, 1] = c_, s_
        fresh_a[s] = False
    return q_out, rp_out, X_out, noise_out


@jit
def _alpha(cutoff, dt):
    return 1.0 / (1.0 + 1.0 / (2.0 * np.pi * cutoff * dt))


@jit
def smooth(q, root, noise, dt, fresh, slots, sq_a, sdq_a, sr_a, sdr_a, cfg):
    """:func:`rtik.solve.smooth.smooth` in place: the raw output ``q (B, J, 4)`` and ``root (B, 3)`` (float32)
    become the gated output, the slots' filter state ``sq_a (N, MAX_STAGES, J, 4)``, ``sdq_a (N, J, 4)``,
    ``sr_a (N, MAX_STAGES, 3)``, ``sdr_a (N, 3)`` is updated; ``cfg``: :func:`rtik.solve.smooth.config_array`.
    Returns whether each stream's gate is open ``(B,)`` (a shut one keeps its raw pose, and its positions need no
    new FK)."""
    sigma, mc, beta0, rmc, rbeta, dc, wmin, bhz = cfg[0], cfg[1], cfg[2], cfg[3], cfg[4], cfg[5], cfg[6], cfg[7]
    bpow, n, gpow = cfg[8], int(cfg[9]), cfg[10]
    B, J = q.shape[0], q.shape[1]
    opened = np.zeros(B, np.bool_)
    qj = np.empty(4)
    x = np.empty(4)
    for b in range(B):
        s = slots[b]
        h = max(dt[b], 1e-4)
        beta = beta0 * min(1.0, bhz * h) ** bpow if bhz > 0.0 else beta0  # (SmoothConfig.beta_hz, beta_power)
        ad = _alpha(dc, h)
        v = (noise[b] / sigma) ** gpow
        w = v / (v + 1.0)
        if w < wmin:
            w = 0.0
        opened[b] = w > 0.0
        for j in range(J):
            d = 0.0
            for k in range(4):
                qj[k] = q[b, j, k]
                d += qj[k] * sq_a[s, 0, j, k]
            if d < 0:
                for k in range(4):
                    qj[k] = -qj[k]
            if fresh[b]:
                for st in range(n):
                    for k in range(4):
                        sq_a[s, st, j, k] = qj[k]
                for k in range(4):
                    sdq_a[s, j, k] = 0.0
            else:
                sp = 0.0
                for k in range(4):
                    sdq_a[s, j, k] += ad * ((qj[k] - sq_a[s, 0, j, k]) / h - sdq_a[s, j, k])
                    sp += sdq_a[s, j, k] * sdq_a[s, j, k]
                a = _alpha(n * (mc + beta * np.sqrt(sp)), h)
                for k in range(4):
                    x[k] = qj[k]
                for st in range(n):
                    d = 0.0
                    for k in range(4):
                        d += x[k] * sq_a[s, st, j, k]
                    sg = -1.0 if d < 0 else 1.0
                    nn = 0.0
                    for k in range(4):
                        sq_a[s, st, j, k] += a * (sg * x[k] - sq_a[s, st, j, k])
                        nn += sq_a[s, st, j, k] * sq_a[s, st, j, k]
                    nn = np.sqrt(nn)
                    for k in range(4):
                        sq_a[s, st, j, k] /= nn
                        x[k] = sq_a[s, st, j, k]
            if w > 0.0:
                d = 0.0
                for k in range(4):
                    d += sq_a[s, n - 1, j, k] * qj[k]
                sg = -1.0 if d < 0 else 1.0
                nn = 0.0
                for k in range(4):
                    qj[k] += w * (sg * sq_a[s, n - 1, j, k] - qj[k])
                    nn += qj[k] * qj[k]
                nn = np.sqrt(nn)
                for k in range(4):
                    q[b, j, k] = qj[k] / nn
        if fresh[b]:
            for st in range(n):
                for k in range(3):
                    sr_a[s, st, k] = root[b, k]
            for k in range(3):
                sdr_a[s, k] = 0.0
        else:
            sp = 0.0
            for k in range(3):
                sdr_a[s, k] += ad * ((root[b, k] - sr_a[s, 0, k]) / h - sdr_a[s, k])
                sp += sdr_a[s, k] * sdr_a[s, k]
            a = _alpha(n * (rmc + rbeta * np.sqrt(sp)), h)
            for st in range(n):
                for k in range(3):
                    src = root[b, k] if st == 0 else sr_a[s, st - 1, k]
                    sr_a[s, st, k] += a * (src - sr_a[s, st, k])
        if w > 0.0:
            for k in range(3):
                root[b, k] += w * (sr_a[s, n - 1, k] - root[b, k])
    return opened


@jit
def fk(q, rows, off, root_pos, order, order_par, bone_parent, bones, bone_paths, below_root, X):
    """Positions ``X (B, J, 3)`` (written in place, rows ``rows`` only) by forward kinematics of the local rotations
    ``q (B, J, 4)`` XYZW on the offsets ``off (B, J, 3)`` and root ``root_pos (B, 3)``: the smoothed pose's joints
    (as ``rtik.solve.refine.positions`` of ``global_rotations``, :meth:`rtik.solve.solver.Solver._smooth`)."""
    J = q.shape[1]
    L = np.empty((J, 3, 3))
    G = np.empty((J, 3, 3))
    bv = np.empty((bones.shape[0], 3))
    for r in range(rows.shape[0]):
        b = rows[r]
        for j in range(J):
            x, y, z, w = float(q[b, j, 0]), float(q[b, j, 1]), float(q[b, j, 2]), float(q[b, j, 3])
            f = 1.0 / np.sqrt(x * x + y * y + z * z + w * w)
            x, y, z, w = x * f, y * f, z * f, w * f
            L[j, 0, 0], L[j, 0, 1], L[j, 0, 2] = 1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)
            L[j, 1, 0], L[j, 1, 1], L[j, 1, 2] = 2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)
            L[j, 2, 0], L[j, 2, 1], L[j, 2, 2] = 2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)
        G[:] = L
        for n in range(order.shape[0]):
            _matmul3(G[order_par[n]], L[order[n]], G[order[n]])
        _positions(G, off, b, root_pos[b], bone_parent, bones, bone_paths, below_root, bv, X)


@jit
def towards_prior(q, leaves, prior, w):
    """Turn the leaves of ``q (B, J, 4)`` float32 in place towards ``prior (L, 4)`` by ``w``: a normalised blend in
    the network's hemisphere (as :meth:`rtik.solve.solver.Solver._towards_prior`)."""
    for b in range(q.shape[0]):
        for n in range(leaves.shape[0]):
            j = leaves[n]
            d = 0.0
            for c in range(4):
                d += q[b, j, c] * prior[n, c]
            sg = -1.0 if d < 0 else 1.0
            acc = 0.0
            for c in range(4):
                v = q[b, j, c] + w * (sg * prior[n, c] - q[b, j, c])
                q[b, j, c] = v
                acc += v * v
            f = 1.0 / np.sqrt(acc)
            for c in range(4):
                q[b, j, c] *= f


@jit
def all_finite(r6, clean, st):
    """Whether every network output is finite (the common case, checked without temporaries)."""
    for a in (r6.ravel(), clean.ravel(), st.ravel()):
        for x in a:
            if not np.isfinite(x):
                return False
    return True


@jit
def push_frame(P, mask, index, scale, min_span, root, fresh, p_pos, p_mask, slot):
    """Validate one frame of an index layout and, if it is usable, write it into the slot's pending frame.

    ``P (Js, 3)`` float64 source positions, ``mask (Js,)`` bool (all true when the source gave none), ``index
    (Ji,)`` source row of each model joint (-1 = never observed), ``scale`` metres per stream unit, ``root`` the
    root's input index, ``fresh`` whether the stream has no previous frame. Returns True when the frame was
    stored; False leaves the slot untouched (the caller's numpy path then names what is wrong)."""
    for r in range(P.shape[0]):
        if mask[r]:
            for k in range(3):
                if not np.isfinite(P[r, k]):
                    return False
    Ji = index.shape[0]
    n = 0
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for i in range(Ji):
        r = index[i]
        if r >= 0 and mask[r]:
            n += 1
            for k in range(3):
                lo[k] = min(lo[k], P[r, k])
                hi[k] = max(hi[k], P[r, k])
    if n == 0 or (fresh and (index[root] < 0 or not mask[index[root]])):
        return False
    if n > 1 and max(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]) * scale < min_span:
        return False
    for i in range(Ji):
        r = index[i]
        ok = r >= 0 and mask[r]
        p_mask[slot, i] = ok
        for k in range(3):
            p_pos[slot, i, k] = P[r, k] if ok else 0.0
    return True
