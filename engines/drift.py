"""Accuracy drift of a compiled step against the FP32 ONNX graph over a long sequence with carried state.

Both run the same normalised frames of real clips (concatenated to ``frames`` frames, state never reset), each
carrying its own recurrent state, so an error that accumulates in the state shows up as growing deviation.
Reported: the 6-D output's max absolute deviation, the rotation deviation (degrees, geodesic between the decoded
local rotations) max/mean over all frames and joints and mean over the first and last 10 % of frames, and the
denoised positions' deviation in millimetres.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtik.errors import BackendError
from rtik.formats import bvh
from rtik.geometry import kinematics
from rtik.models import normalize
from rtik.models.modelpack import ModelPack
from rtik.solve import refine as rf


def sequence(pack: ModelPack, clips: list[Path], frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised inputs ``pos (F, Ji, 3)`` float32, ``mask (F, Ji)`` float32 and body size ``(F,)`` metres from
    BVH ``clips`` in the pack's skeleton (centimetres or metres, guessed), concatenated until ``frames``."""
    if not clips:
        raise BackendError("the drift measurement needs real clips: pass --clip FILE.bvh (the pack's skeleton)")
    pos, sizes, n = [], [], 0
    names = list(pack.input_joints)
    spec = pack.norm
    root = names.index(spec.root)
    for path in clips * (frames // 1 + 1):
        m = bvh.read(path)
        skel = m.skeleton
        missing = [j for j in names if j not in skel.names]
        if missing:
            raise BackendError(f"{path}: not in the model's skeleton (missing joints: {', '.join(missing)})")
        scale = 0.01 if bvh.guess_units(m) == "cm" else 0.001 if bvh.guess_units(m) == "mm" else 1.0
        X = m.positions() * scale
        lengths = kinematics.bone_lengths(skel, X)
        idx = skel.indices(names)
        size = normalize.body_size(spec, skel.names, lengths)
        P = X[:, idx]
        yaw, _ = normalize.heading(spec, names, P)
        pos.append(normalize.normalize(P, root, yaw, size))
        sizes.append(np.full(len(P), size))
        n += len(P)
        if n >= frames:
            break
    P = np.concatenate(pos)[:frames]
    return P, np.ones(P.shape[:2], np.float32), np.concatenate(sizes)[:frames]


def measure(pack: ModelPack, backend, reference, clips: list[Path], frames: int = 3000) -> dict:
    """Run ``backend`` and ``reference`` (two :class:`~rtik.models.backends.base.Backend`) over the sequence."""
    P, M, size = sequence(pack, clips, frames)
    F = len(P)
    sa = np.zeros((1, pack.state_size), np.float32)
    sb = sa.copy()
    d6 = np.zeros(F)
    ang = np.zeros((F, len(pack.skeleton)))
    dpos = np.zeros(F)
    for i in range(F):
        ra, ca, sa_out = backend.step(P[i : i + 1], M[i : i + 1], sa)
        rb, cb, sb_out = reference.step(P[i : i + 1], M[i : i + 1], sb)
        sa, sb = sa_out.copy(), sb_out.copy()
        d6[i] = np.abs(ra - rb).max()
        Ra, Rb = rf.sixd_to_matrix(ra[0]), rf.sixd_to_matrix(rb[0])
        tr = np.einsum("jik,jik->j", Ra, Rb)  # trace(Ra^T Rb)
        ang[i] = np.degrees(np.arccos(np.clip((tr - 1) / 2, -1, 1)))
        dpos[i] = np.abs(ca - cb).max() * size[i] * 1000
    k = max(F // 10, 1)
    return {
        "frames": F,
        "sixd_max_abs": float(d6.max()),
        "rot_deg_max": float(ang.max()),
        "rot_deg_mean": float(ang.mean()),
        "rot_deg_mean_first10pct": float(ang[:k].mean()),
        "rot_deg_mean_last10pct": float(ang[-k:].mean()),
        "pos_clean_mm_max": float(dpos.max()),
        "pos_clean_mm_mean": float(dpos.mean()),
    }
