"""Choosing and preparing the solver's compiled path (:mod:`rtik.solve.kernels`, numba).

The kernels take the solver's geometry and options as constant arguments, prepared once per solver; they are
compiled (or loaded from numba's cache) when the solver is built. Where numba is missing, or cannot compile or
cache, ``kernels="auto"`` falls back to the numpy path (:mod:`rtik.solve.numpath`) with a warning.
"""

from __future__ import annotations

import importlib.util
import logging

import numpy as np

from rtik.errors import InputError
from rtik.solve import refine as rf
from rtik.solve.numpath import MIN_SPAN

log = logging.getLogger("rtik.solver")

#: the solver's pre/post-processing: "auto" (compiled where numba is installed), "numba" (compiled), "numpy"
KERNELS = ("auto", "numba", "numpy")


def load(sv, which: str):
    """The :mod:`rtik.solve.kernels` module for solver ``sv``, its constant arguments set on ``sv`` (``_kpre``,
    ``_kpost``) and every kernel compiled (or loaded from numba's cache); None for the numpy path: ``which`` is
    ``"numpy"``, or ``"auto"`` where numba is missing or cannot compile or cache here (with a warning)."""
    if which not in KERNELS:
        raise InputError(f"unknown kernels {which!r}; valid: {', '.join(KERNELS)}")
    have = importlib.util.find_spec("numba") is not None
    if which == "numpy" or (which == "auto" and not have):
        return None
    if not have:
        raise InputError("kernels='numba' needs numba: pip install numba (or use kernels='numpy')")
    try:
        return _compile(sv)
    except Exception as e:  # numba cannot compile or cache here (no writable cache folder, ...)
        if which == "numba":
            raise InputError(f"the compiled solver kernels are not usable here: {e}") from e
        log.warning("compiled solver kernels unavailable (%s); using the numpy path", e)
        return None


def _compile(sv):
    """Prepare the kernels' constant arguments for ``sv``'s model and compile them now, not on a live stream's
    first frame."""
    from rtik.solve import kernels

    o, t = sv.options, sv.tables
    i64 = lambda a: np.ascontiguousarray(a, dtype=np.int64)  # noqa: E731
    f64 = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
    order = np.concatenate(t.levels) if t.levels else np.zeros(0)
    order_par = np.concatenate(t.level_parents) if t.levels else np.zeros(0)
    root_inner = int(t.inner[0]) if len(t.inner) and t.parents[t.inner[0]] < 0 else -1
    sv._kpre = (
        sv.root_in, i64(sv.b_joint), i64(sv.b_child), i64(sv.b_parent), f64(sv.b_rest),
        f64(sv.b_dir), f64(sv.b_size), i64(sv.left), i64(sv.right), sv.J, i64(sv.cl_p), i64(sv.cl_cj),
        i64(sv.cl_gj), f64(sv.rest_dir), f64(sv.cl_split),
        f64([o.gap_s, o.max_speed, o.teleport_slack, o.calib_rate, o.calib_floor, sv.pack.norm.min_lateral]),
    )  # fmt: skip
    sv._kpost = (
        i64(sv.in_idx), f64(sv.bone_in), sv.root_in, int(t.motion_root), int(t.dummy), i64(order),
        i64(order_par), i64(t.pair_joint), i64(t.pair_child), i64(t.inner), i64(t.det), i64(t.det_pairs), f64(t.det_w),
        i64(t.local_joint), i64(t.local_parent), root_inner, i64(t.bone_parent), i64(t.bones),
        f64(t.bone_paths), f64(t.below_root), i64(sv.cl_p), i64(sv.cl_cj), i64(sv.cl_ci), sv.bias_fixed,
        i64(sv.gap_rows), i64(sv.gap_parent_row), i64(sv.gap_kids), i64(sv.b_child), i64(sv.b_parent),
        i64(sv.hinge_idx), f64(sv.hinge_axis), i64(sv.twist_idx), f64(sv.twist_L), i64(t.inner_of), i64(sv.row_of),
        f64(rf._QA), f64(rf._QB),
        f64([o.noise_rate, o.sigma_denoise, o.sigma_network, rf.MIN_BONE, rf.REAL_FRACTION, rf.COLLINEAR,
             o.denoise_reach or 0.0, o.bias_time or 0.0, o.gap_hold or 0.0, o.spike or 0.0, *sv.hinge_ramp,
             sv.twist_w, rf.REAIM_MIN]),
    )  # fmt: skip
    # compile (or load from the cache) now, not on a live stream's first frame: an empty batch
    none = np.zeros(0, np.int64)
    out = kernels.pre(
        none, np.zeros((0, sv.Ji, 3)), np.zeros((0, sv.Ji), bool), np.zeros(0), np.zeros(0, bool),
        *sv._slot_arrays_pre(), *sv._kpre,
    )  # fmt: skip
    kernels.post(
        np.zeros((0, sv.J, 6), np.float32), np.zeros((0, sv.Ji, 3), np.float32), np.zeros((0, sv.Ji), bool),
        *out[3:], none, *sv._slot_arrays_post(), np.zeros(0), *sv._kpost,
    )  # fmt: skip
    kernels.towards_prior(np.zeros((0, sv.J, 4), np.float32), i64(sv._leaves), sv._leaf_prior, 0.5)
    sv._kfk = (i64(order), i64(order_par), i64(t.bone_parent), i64(t.bones), f64(t.bone_paths), f64(t.below_root))
    kernels.fk(
        np.zeros((0, sv.J, 4), np.float32), none, np.zeros((0, sv.J, 3)), np.zeros((0, 3), np.float32), *sv._kfk,
        np.zeros((0, sv.J, 3), np.float32),
    )  # fmt: skip
    e3 = np.zeros((0, 1, 1), np.float32)
    kernels.all_finite(e3, e3, np.zeros((0, 1), np.float32))
    kernels.push_frame(
        np.zeros((0, 3)), np.zeros(0, bool), np.full(sv.Ji, -1, np.int64), 1.0, MIN_SPAN, sv.root_in, True,
        sv._p_pos, sv._p_mask, 0,
    )  # fmt: skip
    return kernels
