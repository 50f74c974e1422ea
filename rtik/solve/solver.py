"""The stateful multi-stream solver: positions in, rotations out, one frame per stream per tick.

``push`` validates a frame and puts it in its stream's latest-frame slot (a newer push replaces a frame not yet
solved, counted as dropped); ``tick`` solves every stream with a new frame in ONE backend call. Per frame:
normalise (root-relative, heading-aligned, body-size scaled; :mod:`rtik.models.normalize`) -> denoiser + IK step ->
6-D -> matrices -> the root turned back to world heading -> refinement towards the observed positions
(:mod:`rtik.solve.refine`) -> local quaternions, root position and FK positions.

Per stream the solver keeps the recurrent state, a bone-length calibration (a robust running estimate over the
observed frames, or fixed by :meth:`Solver.calibrate`), heading, an input-noise estimate and counters. A gap
(> ``gap_s``), a teleport (root faster than ``max_speed``), a time going backwards or a burst of bad frames
resets the stream's state; one stream's bad frame never affects another. The pre- and post-processing around
the network runs compiled (:mod:`rtik.solve.kernels`, prepared by :mod:`rtik.solve.compiled`) or as numpy
(:mod:`rtik.solve.numpath`, the reference), with the same results. Units: metres inside, the stream's
unit (m, cm, mm) at its edge. Arrays are float64 unless stated; the wire types are float32.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from rtik.errors import InputError
from rtik.formats import layouts
from rtik.geometry.rotations import matrix_to_6d, quat_to_matrix
from rtik.geometry.skeleton import LEAF, Skeleton
from rtik.models.modelpack import ModelPack
from rtik.solve import compiled, numpath
from rtik.solve import refine as rf
from rtik.solve.numpath import MIN_SPAN, UNITS
from rtik.solve.smooth import MAX_STAGES, SmoothConfig, config_array, gate, smooth


@dataclass(frozen=True)
class SolverOptions:
    """Tuning of the per-frame path (defaults suit live mocap at 30-120 Hz).

    Fields:
        gap_s: a frame later than this after the previous one resets the stream (seconds).
        max_speed: root speeds above this reset the stream as a teleport (m/s).
        teleport_slack: distance always allowed between frames on top of ``max_speed * dt`` (m).
        nan_burst: this many rejected frames in a row reset the stream.
        noise_rate: per-frame rate of the running input-noise estimate (0..1).
        sigma_denoise: input noise (m, per coordinate) at which the denoised and the raw position weigh equally.
        sigma_network: input noise (m) at which the network's bone direction and the observed one weigh equally.
        denoise_reach: how far the denoiser may move an observed joint, in multiples of the stream's input-noise
            estimate (a noise vector is longer than 5 sigma once in ~10^5): a body unlike the training bodies
            makes the denoiser place some joints where the input never is; None for no bound.
        bias_time: time constant (s) of each stream's running estimate of the denoiser's lasting offset per joint
            (its output minus the input, in the body's heading frame and size), which is taken off its output;
            None: no correction. The children of multi-child joints (hips, chest) are not corrected: those
            joints turn by their children's few-centimetre spread, and a correction that follows the noise would
            swing them.
        calib_rate: first-frame step of the running bone-length estimate, as a fraction of the length.
        calib_floor: smallest per-frame step of that estimate (m).
        kernels: the pre- and post-processing around the network: ``"numba"`` (compiled loops,
            :mod:`rtik.solve.kernels`), ``"numpy"`` (the vectorised reference) or ``"auto"`` (numba when installed).
        smooth: the output's noise-gated One Euro smoothing (:mod:`rtik.solve.smooth`), or None for none: clean
            input passes untouched, noisy input is smoothed.
        leaf_prior: how far each leaf's (head, hands, toes: no child bone) local rotation is turned from the
            network's towards the pack's mean pose, 0..1 (normalised linear blend); None: the pack's own
            :attr:`~rtik.models.modelpack.ModelPack.leaf_prior`.
        gap_hold: time constant (s) of a missing joint's trust in the offset from its nearest ancestor in the
            stream's layout that it had when both were last seen (in the body's heading frame): a joint that drops
            out of the input (an occluded marker) holds that offset, weight ``exp(-t / gap_hold)`` after ``t``
            seconds, the rest going to the denoiser's guess, and is then fitted to its bones so that the observed
            joints below it are reached (:func:`rtik.solve.numpath._hold_gaps`); None: missing joints take the
            denoiser's guess at once.
        spike: how far (m) every measured bone at an observed joint may be off its calibrated length, on top of
            4 x the stream's noise estimate, before the joint counts as a spike (a swapped or ghost marker, an
            estimator's wild point) and is taken as missing this frame, held as ``gap_hold`` holds it. A body
            that moves keeps its bone lengths; a displaced joint changes all of its own. None: no check.
        hinge: ``(from, full)`` degrees: a limb of the pack's :attr:`~rtik.models.modelpack.ModelPack.hinges`
            (knees, elbows) bent by more than ``from`` turns its upper bone about its own axis so that the hinge
            axis is normal to the limb's plane, and its lower joint's rotation towards a pure turn about that axis,
            in full from ``full`` on (a linear ramp between: a nearly straight limb's plane is noise). Positions
            do not move (:func:`rtik.solve.refine.hinges`). None: the network's twists stay.
        twist_prior: how far the joints of the pack's :attr:`~rtik.models.modelpack.ModelPack.twist_prior`
            (clavicles, neck, upper and lower limbs in the shipped packs) turn about their own bones from the
            network's twist to the mean pose's, 0..1 (:func:`rtik.solve.refine.prior_twists`; before the hinges,
            which override it on bent limbs). Positions do not move. 0: the network's twists stay.
    """

    gap_s: float = 0.5
    max_speed: float = 15.0
    teleport_slack: float = 0.1
    nan_burst: int = 3
    noise_rate: float = 0.05
    sigma_denoise: float = 0.002
    sigma_network: float = 0.02
    denoise_reach: float | None = 5.0
    bias_time: float | None = 0.25
    calib_rate: float = 0.05
    calib_floor: float = 1e-4
    kernels: str = "auto"
    smooth: SmoothConfig | None = SmoothConfig()
    leaf_prior: float | None = None
    gap_hold: float | None = 1.0
    spike: float | None = 0.02
    hinge: tuple[float, float] | None = (10.0, 25.0)
    twist_prior: float = 1.0


class SolveResult(NamedTuple):
    """One solved frame of one stream (immutable; a named tuple because a tick makes one per stream).

    Fields:
        stream: stream name; seq: frame number in the stream (counts pushed frames that were solved).
        timestamp: source timestamp of the frame (s).
        local_quats: ``(J, 4)`` float32 XYZW, joint -> parent, the model's skeleton order.
        root_pos: ``(3,)`` float32, the motion root's translation (m).
        positions: ``(J, 3)`` float32, FK of the result on the stream's calibrated skeleton (m).
        solve_us: wall time of the tick that solved it (µs, shared by the batch).
        reset: the recurrent state was fresh for this frame (first frame, gap, teleport, NaN burst, reset()).
        noise: the stream's current input-noise estimate (m, per coordinate).
    """

    stream: str
    seq: int
    timestamp: float
    local_quats: np.ndarray
    root_pos: np.ndarray
    positions: np.ndarray
    solve_us: float
    reset: bool
    noise: float = 0.0


@dataclass
class StreamInfo:
    """A stream's configuration and counters (read them through :meth:`Solver.stream`)."""

    name: str
    slot: int
    layout: layouts.LayoutMap
    units: str
    fps: float
    frames: int = 0  # frames solved
    rejected: int = 0  # frames refused by push (NaN, wrong shape, ...)
    dropped: int = 0  # frames replaced in the slot before a tick solved them
    resets: int = 0  # state resets (gaps, teleports, bursts, explicit)
    bad_run: int = 0  # rejected frames in a row
    last_error: str = ""
    extra: dict = field(default_factory=dict)
    markers: layouts.LayoutMap | None = None  # the pack's leaf markers from the stream's layout (None: none of them)


class Solver:
    """See the module docstring and docs/solver.md. Thread-safe between one pushing and one ticking thread."""

    def __init__(self, pack: ModelPack, backend="onnx", options: SolverOptions | None = None, **backend_options):
        from rtik.models.backends.base import Backend, open_backend

        self.pack = pack
        self.options = options or SolverOptions()
        self.backend = backend if isinstance(backend, Backend) else open_backend(pack, backend, **backend_options)
        skel = pack.skeleton
        self.skeleton: Skeleton = skel
        self.tables = rf.Tables.build(skel)
        self.J, self.Ji, self.S = len(skel), len(pack.input_joints), pack.state_size
        self.Km = len(pack.markers)  # leaf markers the network reads after the joints
        self.in_idx = pack.input_index  # (Ji,) skeleton index of each input joint
        self.root_in = list(pack.input_joints).index(pack.norm.root)
        self.root_j = int(self.in_idx[self.root_in])
        names = list(pack.input_joints)
        self.left = np.array([names.index(n) for n in pack.norm.left])
        self.right = np.array([names.index(n) for n in pack.norm.right])
        rest = skel.bone_lengths()
        self.rest_len = rest
        self.rest_dir = skel.offsets / np.maximum(rest, 1e-12)[:, None]
        is_bone = np.zeros(self.J, bool)
        is_bone[self.tables.bones] = True
        self.bone = is_bone & np.isin(skel.parents, self.in_idx)  # measurable from input positions
        self.size_idx = skel.indices(pack.norm.size_joints)
        # bone space: measurable bones (both ends are input joints), their input-space ends and rest geometry
        self.b_joint = np.flatnonzero(self.bone)
        pos_of = {int(j): i for i, j in enumerate(self.in_idx)}
        self.b_child = np.array([pos_of[int(j)] for j in self.b_joint])
        self.b_parent = np.array([pos_of[int(skel.parents[j])] for j in self.b_joint])
        self.b_rest = rest[self.b_joint]
        self.b_dir = self.rest_dir[self.b_joint]
        self.b_size = np.isin(self.b_joint, self.size_idx).astype(np.float64)
        self.b_touch = np.zeros((len(self.b_joint), self.Ji))  # bone -> its two input joints
        self.b_touch[np.arange(len(self.b_joint)), self.b_child] = 1.0
        self.b_touch[np.arange(len(self.b_joint)), self.b_parent] = 1.0
        if self.b_size.sum() != len(self.size_idx):
            raise InputError("the model's body-size joints must end bones between input joints")
        is_in = np.zeros(self.J, bool)
        is_in[self.in_idx] = True
        self.row_of = np.full(self.J, -1, np.int64)  # each skeleton joint's input row (-1: not an input)
        self.row_of[self.in_idx] = np.arange(self.Ji)
        self.bone_in = (is_in & is_in[np.maximum(skel.parents, 0)]).astype(np.float64)  # bones with observed ends
        self._clusters(skel, pos_of)
        self._prior6 = matrix_to_6d(quat_to_matrix(pack.prior_local)).astype(np.float32)  # (J, 6) fallback
        determined = {int(j) for j in self.tables.inner[self.tables.det]}
        # input joints whose denoised position keeps its offset (SolverOptions.bias_time)
        self.bias_fixed = np.array([int(skel.parents[j]) in determined for j in self.in_idx], dtype=bool)
        # gap holding (SolverOptions.gap_hold): input joints by depth (ancestors first), each one's direct parent
        # and direct children among the input joints; each stream's nearest ancestor the layout has (open_stream)
        self._pos_of = pos_of
        self.gap_parent_row = self._gap_ancestors(np.ones(self.Ji, bool), direct=True)
        anc = self._gap_ancestors(np.ones(self.Ji, bool))
        depth = np.zeros(self.Ji, np.int64)
        for i in np.argsort(self.in_idx, kind="stable"):  # skeleton order: ancestors first
            depth[i] = depth[anc[i]] + 1 if anc[i] >= 0 else 0
        held = np.flatnonzero(anc >= 0)
        self.gap_rows = held[np.argsort(depth[held], kind="stable")]
        self.gap_levels = [self.gap_rows[depth[self.gap_rows] == d] for d in range(1, int(depth.max(initial=0)) + 1)]
        kids = [np.flatnonzero(self.gap_parent_row == i) for i in range(self.Ji)]
        self.gap_kids = np.full((self.Ji, max(1, max(len(k) for k in kids))), -1, np.int64)
        for i, k in enumerate(kids):
            self.gap_kids[i, : len(k)] = k
        for what in ("bias_time", "denoise_reach", "gap_hold", "spike"):
            v = getattr(self.options, what)
            if v is not None and not v > 0:
                raise InputError(f"{what} must be positive or None, got {v}")
        lw = pack.leaf_prior if self.options.leaf_prior is None else float(self.options.leaf_prior)
        if not 0.0 <= lw <= 1.0:
            raise InputError(f"leaf_prior must be within 0..1, got {lw}")
        self._leaf_w = lw
        self._leaves = skel.group_indices(LEAF)
        self._leaf_prior = pack.prior_local[self._leaves].astype(np.float32)  # (L, 4)
        self.hinge_idx, self.hinge_axis = rf.hinge_tables(skel, pack.hinges if self.options.hinge else {})
        if self.options.hinge is not None:
            try:
                lo, hi = (float(v) for v in self.options.hinge)
            except (TypeError, ValueError):
                lo, hi = 0.0, 0.0
            if not 0.0 < lo < hi < 180.0:
                raise InputError(
                    f"hinge must be (from, full) degrees with 0 < from < full < 180, got {self.options.hinge}"
                )
            self.hinge_ramp = np.radians([lo, hi])
        else:
            self.hinge_ramp = np.zeros(2)
        try:
            self.twist_w = float(self.options.twist_prior)
        except (TypeError, ValueError):
            self.twist_w = float("nan")
        if not 0.0 <= self.twist_w <= 1.0:
            raise InputError(f"twist_prior must be within 0..1, got {self.options.twist_prior!r}")
        self.twist_idx, self.twist_L = rf.twist_tables(
            skel, pack.twist_prior if self.twist_w > 0.0 else (), pack.prior_local
        )
        self._streams: dict[str, StreamInfo] = {}
        self._lock = threading.Lock()
        self._ready: dict[int, StreamInfo] = {}
        self._pending: dict[int, dict] = {}  # slots whose cluster frames are not chosen yet
        self._carry = None  # (slots, state_out) of the last backend call
        self._alloc(8)
        self._all_observed: dict[int, np.ndarray] = {}
        self._kern = compiled.load(self, self.options.kernels)  # rtik.solve.kernels, or None: the numpy path
        self._sm_cfg = None if self.options.smooth is None else config_array(self.options.smooth)
        self._any_approx = False  # some stream's layout has approximate joints (skips a per-tick check otherwise)

    def _gap_ancestors(self, have: np.ndarray, direct: bool = False) -> np.ndarray:
        """Each input joint's nearest ancestor among the input joints ``have`` marks (its input row, -1 for
        none); ``direct``: the skeleton parent only (-1 where it is not an input joint)."""
        parents = self.skeleton.parents
        anc = np.full(self.Ji, -1, np.int64)
        for i, j in enumerate(self.in_idx):
            a = int(parents[j])
            while a >= 0 and not (a in self._pos_of and have[self._pos_of[a]]) and not direct:
                a = int(parents[a])
            if a >= 0 and a in self._pos_of and have[self._pos_of[a]]:
                anc[i] = self._pos_of[a]
        return anc

    def _clusters(self, skel: Skeleton, pos_of: dict) -> None:
        """Tables of the multi-child joints whose rest offsets are calibrated (see :mod:`rtik.solve.numpath`):
        ``cl_p (C,)`` input index of each such joint, ``cl_cj``/``cl_ci (C, K)`` skeleton/input index of its child
        bones (-1 pads), ``cl_gj``/``cl_gi (C, K)`` the child's only child bone (-1 if none), which stands in for
        a child the stream does not provide; ``cl_rest (C, K, 2, 3)`` rest position of child and grandchild
        relative to the joint (joint frame, metres); ``cl_split (C, K)`` the child's share of the rest length from
        the joint to the grandchild (1 where there is none): how far along to a nearer stand-in a missing child
        sits at most."""
        kids = {j: skel.bone_children(j) for j in range(self.J)}
        multi = [j for j in range(self.J) if len(kids[j]) > 1 and j in pos_of and all(c in pos_of for c in kids[j])]
        C, K = len(multi), max([len(kids[j]) for j in multi], default=1)
        self.C, self.K = C, K
        self.cl_p = np.array([pos_of[j] for j in multi], dtype=np.int64)
        self.cl_cj, self.cl_ci, self.cl_gj, self.cl_gi = (np.full((C, K), -1, np.int64) for _ in range(4))
        self.cl_rest = np.zeros((C, K, 2, 3))
        self.cl_split = np.ones((C, K))
        for c, j in enumerate(multi):
            for k, ch in enumerate(kids[j]):
                self.cl_cj[c, k], self.cl_ci[c, k] = ch, pos_of[ch]
                self.cl_rest[c, k] = skel.offsets[ch]
                g = kids[ch]
                if len(g) == 1 and g[0] in pos_of:
                    self.cl_gj[c, k], self.cl_gi[c, k] = g[0], pos_of[g[0]]
                    self.cl_rest[c, k, 1] += skel.offsets[g[0]]
                    a, b = np.linalg.norm(skel.offsets[ch]), np.linalg.norm(skel.offsets[g[0]])
                    self.cl_split[c, k] = a / (a + b) if a + b > 0 else 1.0

    def _cluster_members(self, provided: np.ndarray):
        """A stream's choice of cluster points from the input joints its layout provides ``(Ji,)``:
        ``(mem (C, K) input index or -1, kind (C, K): 0 the child, 1 its child standing in for a child the
        layout lacks, -1 none; valid (C,): the frame can be built once its points are chosen)``."""
        C, K = self.C, self.K
        mem, kind = np.full((C, K), -1, np.int64), np.full((C, K), -1, np.int64)
        valid = np.zeros(C, bool)
        for c in range(C):
            for k in range(K):
                ci, gi = self.cl_ci[c, k], self.cl_gi[c, k]
                if ci >= 0 and provided[ci]:
                    mem[c, k], kind[c, k] = ci, 0
                elif ci >= 0 and gi >= 0 and provided[gi]:
                    mem[c, k], kind[c, k] = gi, 1
            need = kind[c, :3] if K >= 3 else kind[c, :2]
            valid[c] = bool(provided[self.cl_p[c]] and (need >= 0).all())
        return mem, kind, valid

    def _choose(self, slot: int, P, M) -> None:
        """Choose the points of the stream's cluster frames not chosen yet from its frames ``P (N, Ji, 3)`` metres,
        ``M (N, Ji)`` (:func:`rtik.solve.numpath.choose_frames`); the stream's estimate waits until they are."""
        info = self._pending[slot]
        todo = info["valid"] & ~self._cval[slot]
        spec, ref, frest, chosen = numpath.choose_frames(
            self, self._cmem[slot], self._ckind[slot], info["provided"], P, M
        )
        put = todo & chosen
        self._cspec[slot, put], self._cref[slot, put], self._cfr[slot, put] = spec[put], ref[put], frest[put]
        self._cval[slot, put] = True
        if not (todo & ~chosen).any():
            del self._pending[slot]

    @property
    def kernels(self) -> str:
        """Which pre/post-processing runs: ``"numba"`` (compiled, :mod:`rtik.solve.kernels`) or ``"numpy"``."""
        return "numpy" if self._kern is None else "numba"

    def _slot_arrays_pre(self):
        return (
            self._scale, self._last_ts, self._last_root, self._last_tgt, self._fresh, self._blen, self._nobs,
            self._locked, self._cs, self._state, self._cmem, self._ckind, self._cfr, self._cval, self._ce, self._cn,
            self._cspec, self._cref, self._cr, self._crn,
        )  # fmt: skip

    def _slot_arrays_post(self):
        return (
            self._noise, self._dbias, self._gap_off, self._gap_w, self._gap_anc, self._last_ts, self._last_root,
            self._last_tgt, self._cs, self._fresh, self._cmem, self._ckind, self._cval, self._cn, self._cspec,
            self._root_approx,
        )  # fmt: skip

    @classmethod
    def from_path(cls, path=None, backend="onnx", **kw) -> Solver:
        """A solver for the pack at ``path`` (``None`` = the shipped default model)."""
        from rtik.models import modelpack

        return cls(modelpack.load(path), backend, **kw)

    # ------------------------------------------------------------------------------------------- storage
    def _alloc(self, cap: int) -> None:
        old = getattr(self, "_cap", 0)
        J, Ji, C, K = self.J, self.Ji, self.C, self.K
        spec = {
            "state": ((self.S,), np.float32, 0.0), "p_pos": ((Ji, 3), np.float64, 0.0), "p_mask": ((Ji,), bool, False),
            "p_ts": ((), np.float64, 0.0), "p_reset": ((), bool, False), "last_ts": ((), np.float64, 0.0),
            "last_root": ((3,), np.float64, 0.0), "last_tgt": ((Ji, 3), np.float64, 0.0), "cs": ((2,), np.float64, 0.0),
            "fresh": ((), bool, True), "blen": ((J,), np.float64, np.nan), "nobs": ((J,), np.float64, 0.0),
            "locked": ((), bool, False), "noise": ((), np.float64, 0.0), "scale": ((), np.float64, 1.0),
            "cmem": ((C, K), np.int64, -1), "ckind": ((C, K), np.int64, -1), "cfr": ((C, 3, 3), np.float64, 0.0),
            "cval": ((C,), bool, False), "ce": ((C, K, 3), np.float64, 0.0), "cn": ((C, K), np.float64, 0.0),
            "cspec": ((C, 3), np.int64, -1), "cref": ((C, 3), np.int64, -1), "cr": ((C, 2, 3), np.float64, 0.0),
            "crn": ((C, 2), np.float64, 0.0), "p_mpos": ((self.Km, 3), np.float64, 0.0),
            "p_mmask": ((self.Km,), bool, False), "sm_q": ((MAX_STAGES, J, 4), np.float64, 0.0),
            "sm_dq": ((J, 4), np.float64, 0.0), "sm_r": ((MAX_STAGES, 3), np.float64, 0.0),
            "sm_dr": ((3,), np.float64, 0.0), "approx": ((Ji,), bool, False), "dbias": ((Ji, 3), np.float64, 0.0),
            "gap_off": ((Ji, 3), np.float64, 0.0), "gap_w": ((Ji,), np.float64, 0.0),
            "gap_anc": ((Ji,), np.int64, -1), "root_approx": ((), bool, False),
        }  # fmt: skip
        for name, (shape, dtype, fill) in spec.items():
            a = np.full((cap, *shape), fill, dtype=dtype)
            if old:
                a[:old] = getattr(self, "_" + name)
            setattr(self, "_" + name, a)
        self._cap = cap
        self._slot_fields = tuple(spec)  # every per-stream array (export_stream/import_stream)
        self._free = sorted(set(range(cap)) - {s.slot for s in getattr(self, "_streams", {}).values()})

    # ------------------------------------------------------------------------------------------- streams
    def open_stream(self, name: str, layout="rtik", units: str = "m", fps: float | None = None, joints=None):
        """Open stream ``name``. ``layout``: a name (see :mod:`rtik.formats.layouts`), a
        :class:`~rtik.formats.layouts.Layout` or a list of joint names; ``joints``: the source's joint names
        (needed by ``bvh``); ``units``: m/cm/mm; ``fps``: nominal frame rate (default: the model's).
        Re-opening a stream replaces it."""
        if not isinstance(name, str) or not name:
            raise InputError(f"stream name must be a non-empty string, got {name!r}")
        if units not in UNITS:
            raise InputError(f"stream {name!r}: unknown units {units!r}; valid units: {', '.join(UNITS)}")
        fps = float(fps or self.pack.fps)
        if not np.isfinite(fps) or fps <= 0:
            raise InputError(f"stream {name!r}: fps must be positive, got {fps}")
        lay = layouts.get(layout, self.pack.input_rows, joints)
        lmap = layouts.resolve(lay, self.pack.input_joints)
        mmap = layouts.resolve(lay, self.pack.markers) if self.Km else None
        mmap = mmap if mmap is not None and mmap.provided.any() else None
        if not lmap.provided[self.root_in]:
            raise InputError(
                f"stream {name!r}: layout {lmap.layout.name!r} does not provide the root joint "
                f"{self.pack.norm.root!r}; it maps: {', '.join(lmap.layout.rows) or 'nothing'}"
            )
        if not (lmap.provided[self.left] & lmap.provided[self.right]).any():
            raise InputError(
                f"stream {name!r}: layout {lmap.layout.name!r} provides no left/right pair for the heading"
            )
        with self._lock:
            if name in self._streams:
                self._close(name)
            if not self._free:
                self._alloc(self._cap * 2)
            slot = self._free.pop(0)
            self._reset_slot(slot, calibration=True)
            self._streams[name] = StreamInfo(name, slot, lmap, units, fps, markers=mmap)
            provided = np.asarray(lmap.provided, bool)
            self._cmem[slot], self._ckind[slot], valid = self._cluster_members(provided)
            self._cval[slot] = False
            if valid.any():
                self._pending[slot] = {"valid": valid, "provided": provided}
            self._scale[slot] = UNITS[units]
            # joints the layout only approximates (an estimator's ear midpoint for the head): the network sees them,
            # the targets, the noise estimate and the calibration do not (the root stays: it anchors the frame)
            self._approx[slot] = [j in lay.notes and j != self.pack.norm.root for j in self.pack.input_joints]
            # an approximate root still anchors the frame, but the body then moves by the observed joints' mean miss
            self._root_approx[slot] = self.pack.norm.root in lay.notes
            self._any_approx = self._any_approx or bool(self._approx[slot].any())
            # a missing joint holds its offset from the nearest ancestor the layout has exactly
            self._gap_anc[slot] = self._gap_ancestors(provided & ~self._approx[slot])
        return self._streams[name]

    #: the counters of :class:`StreamInfo` that :meth:`export_stream` carries
    _COUNTERS = ("frames", "rejected", "dropped", "resets", "bad_run", "last_error")

    def export_stream(self, name: str) -> dict:
        """A copy of everything the solver holds for stream ``name`` between ticks: its recurrent state,
        calibration, heading, filters and counters (``{"arrays": {field: array}, "counters": {...}, "pending":
        cluster choice not made yet or None}``; a frame pushed and not yet solved is not part of it).
        :meth:`import_stream` puts it back into a stream opened with the same layout, units and fps, on this
        solver or another one of the same model pack."""
        with self._lock:
            s = self._get(name)
            pend = self._pending.get(s.slot)
            return {
                "arrays": {f: np.array(getattr(self, "_" + f)[s.slot]) for f in self._slot_fields},
                "counters": {c: getattr(s, c) for c in self._COUNTERS},
                "pending": None if pend is None else {k: np.array(v) for k, v in pend.items()},
            }

    def import_stream(self, name: str, snapshot: dict) -> None:
        """Make open stream ``name`` continue from ``snapshot`` (:meth:`export_stream`); a frame waiting in its
        slot is dropped. Raises :class:`InputError` for a snapshot of another model (fields or shapes differ)."""
        with self._lock:
            s = self._get(name)
            arrays = snapshot["arrays"]
            if set(arrays) != set(self._slot_fields):
                raise InputError(f"stream {name!r}: the snapshot's fields are not this solver's")
            for f, v in arrays.items():
                a = getattr(self, "_" + f)
                if np.shape(v) != a.shape[1:]:
                    raise InputError(f"stream {name!r}: snapshot field {f} has shape {np.shape(v)}, not {a.shape[1:]}")
            for f, v in arrays.items():
                getattr(self, "_" + f)[s.slot] = v
            for c, v in snapshot["counters"].items():
                setattr(s, c, v)
            self._pending.pop(s.slot, None)
            if snapshot.get("pending") is not None:
                self._pending[s.slot] = {k: np.array(v) for k, v in snapshot["pending"].items()}
            self._ready.pop(s.slot, None)
            self._carry = None

    def _reset_slot(self, slot: int, calibration: bool) -> None:
        self._carry = None
        self._state[slot] = 0.0
        self._fresh[slot] = True
        if calibration:
            self._cs[slot] = (1.0, 0.0)  # heading yaw 0 until observed
            self._blen[slot] = np.nan
            self._nobs[slot] = 0.0
            self._ce[slot] = 0.0
            self._cn[slot] = 0.0
            self._cr[slot] = 0.0
            self._crn[slot] = 0.0
            self._locked[slot] = False
            self._noise[slot] = 0.0
            self._dbias[slot] = 0.0

    def _get(self, name: str) -> StreamInfo:
        s = self._streams.get(name)
        if s is None:
            raise InputError(f"no stream {name!r}; open streams: {', '.join(self._streams) or 'none'}")
        return s

    def stream(self, name: str) -> StreamInfo:
        """The stream's configuration and counters."""
        return self._get(name)

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(self._streams)

    def close_stream(self, name: str) -> None:
        with self._lock:
            self._get(name)
            self._close(name)

    def _close(self, name: str) -> None:
        self._carry = None
        s = self._streams.pop(name)
        self._ready.pop(s.slot, None)
        self._pending.pop(s.slot, None)
        self._free.append(s.slot)

    def reset(self, name: str) -> None:
        """Forget the stream's recurrent state (its calibration stays)."""
        with self._lock:
            s = self._get(name)
            self._reset_slot(s.slot, calibration=False)
            self._p_reset[s.slot] = True
            s.resets += 1

    # ---------------------------------------------------------------------------------------- calibration
    def calibrate(self, name: str, frames=None, mask=None, lock: bool = True) -> np.ndarray:
        """Fix the stream's body: bone lengths and the rest offsets of the children of multi-child joints (see
        docs/solver.md), measured (median) over ``frames (F, Js, 3)`` in the stream's layout and units, or the
        running estimate so far if ``None``. ``lock`` stops the running update. Returns the bone lengths ``(J,)``
        in metres (nan where never observed); :meth:`stream_skeleton` has the whole calibrated skeleton."""
        from rtik.geometry.kinematics import bone_lengths

        s = self._get(name)
        if frames is not None:
            F = np.asarray(frames, dtype=np.float64)
            if F.ndim != 3 or F.shape[1:] != (s.layout.num_source_joints, 3):
                raise InputError(
                    f"stream {name!r}: calibration frames have shape {F.shape}, "
                    f"expected (F, {s.layout.num_source_joints}, 3)"
                )
            m = np.ones(F.shape[:2], bool) if mask is None else np.asarray(mask, dtype=bool)
            m = m & np.isfinite(F).all(axis=-1)
            pairs = [s.layout.apply(np.nan_to_num(f) * UNITS[s.units], mm) for f, mm in zip(F, m, strict=True)]
            P, M = np.array([p for p, _ in pairs]).reshape(-1, self.Ji, 3), np.array([k for _, k in pairs], bool)
            M = M.reshape(-1, self.Ji) & ~self._approx[s.slot]  # approximate joints are not measured
            full = np.zeros((len(P), self.J, 3))
            full[:, self.in_idx] = P
            fm = np.zeros((len(P), self.J), bool)
            fm[:, self.in_idx] = M.reshape(-1, self.Ji)
            L = np.where(self.bone, bone_lengths(self.skeleton, full, fm), np.nan)
            with self._lock:
                if s.slot in self._pending:
                    self._choose(s.slot, P, M.reshape(-1, self.Ji))
                E, n, R, rn = self._cluster_median(s.slot, P, M.reshape(-1, self.Ji))
                self._blen[s.slot] = L
                self._nobs[s.slot] = np.where(np.isfinite(L), 1e6, 0.0)
                self._ce[s.slot], self._cn[s.slot], self._cr[s.slot], self._crn[s.slot] = E, n, R, rn
        with self._lock:
            self._locked[s.slot] = bool(lock)
            return self._blen[s.slot].copy()

    def _cluster_median(self, slot: int, P, M):
        """The cluster coordinates ``(C, K, 3)`` and reference vectors ``(C, 2, 3)`` (medians over the frames where
        each is seen) and their counts."""
        C, K, N = self.C, self.K, len(P)
        if not C or not N:
            return np.zeros((C, K, 3)), np.zeros((C, K)), np.zeros((C, 2, 3)), np.zeros((C, 2))
        rep = lambda a: np.broadcast_to(a[slot], (N, *a.shape[1:]))  # noqa: E731
        cl = tuple(rep(a) for a in (self._cmem, self._ckind, self._cspec, self._cref, self._cval))
        e, r, _, _, seen, rseen = numpath.cluster_coords(self, cl, P, M)

        def median(x, seen):
            x = np.where(seen[..., None], x, np.nan)
            have = seen.any(0)
            out = np.zeros(x.shape[1:])
            out[have] = np.nanmedian(x[:, have], axis=0)
            return out, np.where(have, 1e6, 0.0)

        return (*median(e, seen), *median(r, np.repeat(rseen[..., None], 2, -1)))

    def stream_skeleton(self, name: str, unit_scale: float = 1.0) -> Skeleton:
        """The model's skeleton with the stream's calibration (bone lengths, and the rest offsets of the children
        of multi-child joints), times ``unit_scale`` (1 = metres)."""
        from rtik.geometry.kinematics import rescale_skeleton

        s = self._get(name)
        with self._lock:
            sk = rescale_skeleton(self.skeleton, self._blen[s.slot])
            off = numpath.offsets(self, s.slot)
        offsets = sk.offsets.copy()
        offsets[self.tables.bones] = off[self.tables.bones]
        return sk.with_offsets(offsets).scaled(unit_scale)

    # ---------------------------------------------------------------------------------------------- push
    def push(self, name: str, positions, timestamp: float, mask=None) -> None:
        """Queue a frame: ``positions (Js, 3)`` in the stream's layout and units, ``timestamp`` (s, source clock),
        ``mask (Js,)`` (true/1 = observed; missing joints may hold anything, NaN included). Raises
        :class:`InputError` (and counts the frame as rejected) when the frame is unusable."""
        s = self._get(name)
        if self._kern is not None and s.layout.index is not None and self._push_fast(s, positions, timestamp, mask):
            return
        try:
            P, M, ts = numpath.check_frame(self, s, positions, timestamp, mask)
        except InputError as e:
            with self._lock:
                s.rejected += 1
                s.bad_run += 1
                s.last_error = str(e)
                if s.bad_run == self.options.nan_burst:
                    self._reset_slot(s.slot, calibration=False)
                    self._p_reset[s.slot] = True
                    s.resets += 1
            raise
        with self._lock:
            slot = s.slot
            self._p_pos[slot] = P
            self._p_mask[slot] = M
            self._push_markers(s, positions, mask)
            self._queue(s, ts)

    def _push_markers(self, s: StreamInfo, positions, mask) -> None:
        """The stream's leaf markers of a valid frame (in its layout and units) into its slot; a marker that is
        masked or not finite is missing."""
        if s.markers is None:
            return
        P = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        m = np.isfinite(P).all(axis=1)
        if mask is not None:
            m &= np.asarray(mask).reshape(-1).astype(bool)
        self._p_mpos[s.slot], self._p_mmask[s.slot] = s.markers.apply(P, m)

    def _queue(self, s: StreamInfo, ts: float) -> None:
        slot = s.slot
        self._p_ts[slot] = ts
        s.bad_run = 0
        if slot in self._ready:
            s.dropped += 1
        self._ready[slot] = s

    def _push_fast(self, s: StreamInfo, positions, timestamp, mask) -> bool:
        """The compiled path of :meth:`push` for the usual frame (a pure-selection layout): True when the frame was
        valid and is queued; False sends it through the numpy path, which queues it or names what is wrong."""
        try:
            P = np.ascontiguousarray(positions, dtype=np.float64)
            ts = float(timestamp)
        except (TypeError, ValueError):
            return False
        Js = s.layout.num_source_joints
        if P.shape != (Js, 3) or not math.isfinite(ts):
            return False
        if mask is None:
            m = self._all_observed.get(Js)
            if m is None:
                m = self._all_observed[Js] = np.ones(Js, bool)
        else:
            try:
                m = np.asarray(mask)
                if m.dtype != np.bool_ or m.ndim != 1 or not m.flags.c_contiguous:
                    m = np.ascontiguousarray(m.reshape(-1), dtype=bool)
            except (TypeError, ValueError):
                return False
            if m.shape != (Js,):
                return False
        with self._lock:
            slot = s.slot
            if not self._kern.push_frame(
                P, m, s.layout.index, UNITS[s.units], MIN_SPAN, self.root_in, bool(self._fresh[slot]), self._p_pos,
                self._p_mask, slot,
            ):  # fmt: skip
                return False
            self._push_markers(s, P, m)
            self._queue(s, ts)
        return True

    # ---------------------------------------------------------------------------------------------- tick
    def tick(self) -> dict[str, SolveResult]:
        """Solve every stream with a new frame (one backend call); ``{stream: SolveResult}``."""
        t0 = time.perf_counter()
        with self._lock:
            if not self._ready:
                return {}
            ready = dict(sorted(self._ready.items()))  # slot order: a steady batch keeps its layout
            self._ready = {}
            slots = np.fromiter(ready, dtype=np.int64, count=len(ready))
            P_in = self._p_pos[slots]  # (B, Ji, 3) stream units
            M_in = self._p_mask[slots]  # (B, Ji)
            ts = self._p_ts[slots]
            forced = self._p_reset[slots]
            self._p_reset[slots] = False
            markers = (self._p_mpos[slots], self._p_mmask[slots]) if self.Km else None
        out = self._solve(slots, P_in, M_in, ts, forced, list(ready.values()), markers)
        q, r, p, rs, nz = out
        us = (time.perf_counter() - t0) * 1e6
        return {
            s.name: SolveResult(s.name, s.frames - 1, float(ts[i]), q[i], r[i], p[i], us, bool(rs[i]), float(nz[i]))
            for i, s in enumerate(ready.values())
        }

    def _solve(self, slots, P_in, M_in, ts, forced, infos, markers=None):
        """Pre-processing, the network, post-processing: compiled (:mod:`rtik.solve.kernels`) or numpy
        (:mod:`rtik.solve.numpath`), the same contracts; ``markers``: the leaf markers ``(B, Km, 3)`` in stream
        units and ``(B, Km)`` observed, for a pack that reads them (None: all missing).
        -> ``(local_quats, root_pos, positions, reset, noise)``"""
        k = self._kern
        prev_ts = self._last_ts[slots].copy()
        if self._pending:  # streams whose cluster frames are not chosen yet: choose from this frame
            with self._lock:
                for i, slot in enumerate(slots):
                    if slot in self._pending:
                        self._choose(int(slot), P_in[i : i + 1] * self._scale[slot], M_in[i : i + 1])
        M_net = M_in
        if self._any_approx:  # approximate joints feed the network only (see open_stream)
            approx = self._approx[slots] & M_in
            if approx.any():
                M_in = M_in & ~approx
        if k is None:
            pos, mask, reset, fresh, *geo = numpath.pre(self, slots, P_in, M_in, ts, forced)
        else:
            pos, mask, reset, fresh, *geo = k.pre(slots, P_in, M_in, ts, forced, *self._slot_arrays_pre(), *self._kpre)
        if M_net is not M_in:
            pos, mask = self._with_approx(pos, mask, approx, *geo[:4])
        if reset.any():
            for i in np.flatnonzero(reset & ~fresh & ~forced):  # gaps, teleports, time going back
                infos[i].resets += 1
        if self.Km:  # the markers normalised like the joints (root, heading, body size), appended as rows
            pos, mask = self._with_markers(slots, pos, mask, markers, *geo[1:4])
        r6, clean, reset = self._network(slots, pos, mask, reset, infos)
        if self.Km:
            clean = np.ascontiguousarray(clean[:, : self.Ji])
        if k is None:
            q, root_pos, X, noise = numpath.post(self, r6, clean, M_in, fresh, *geo, slots, ts)
        else:
            q, root_pos, X, noise = k.post(
                r6, clean, M_in, fresh, *geo, slots, *self._slot_arrays_post(), ts, *self._kpost
            )
        if self._leaf_w > 0.0 and len(self._leaves):
            self._towards_prior(q)
        if self.options.smooth is not None:
            q, root_pos, X = self._smooth(slots, q, root_pos, X, noise, ts - prev_ts, fresh | reset, geo[4])
        for sinfo in infos:
            sinfo.frames += 1
        return q, root_pos, X, reset, noise

    def _towards_prior(self, q) -> None:
        """Turn the leaves of ``q (B, J, 4)`` (in place) towards the mean pose by ``leaf_prior`` (see
        :class:`SolverOptions`): a normalised blend in the network's hemisphere. Leaves move no joint, so
        positions stay as they are."""
        lv, p = self._leaves, self._leaf_prior
        if self._kern is not None:
            self._kern.towards_prior(q, lv, p, self._leaf_w)
            return
        a = q[:, lv]
        sign = np.where(np.einsum("blc,lc->bl", a, p) < 0, -1.0, 1.0).astype(np.float32)
        b = a + self._leaf_w * (sign[..., None] * p - a)
        q[:, lv] = b / np.linalg.norm(b, axis=-1, keepdims=True)

    def _smooth(self, slots, q, root_pos, X, noise, dt, fresh, off):
        """The noise-gated smoothing of :mod:`rtik.solve.smooth` on a tick's output, the streams' filter state
        updated; positions are FK of the smoothed pose on the calibrated offsets ``off (B, J, 3)`` for the streams
        whose gate is open (a shut gate passes the raw pose and its positions through).
        -> ``(local_quats (B, J, 4) float32, root_pos (B, 3) float32, positions (B, J, 3) float32)``"""
        if self._kern is not None:
            q, root_pos = np.ascontiguousarray(q, np.float32), np.ascontiguousarray(root_pos, np.float32)
            opened = self._kern.smooth(
                q, root_pos, noise, dt, fresh, slots, self._sm_q, self._sm_dq, self._sm_r, self._sm_dr, self._sm_cfg
            )
        else:
            state = (self._sm_q[slots], self._sm_dq[slots], self._sm_r[slots], self._sm_dr[slots])
            qo, ro, *state = smooth(self.options.smooth, q, root_pos, noise, dt, fresh, state)
            self._sm_q[slots], self._sm_dq[slots], self._sm_r[slots], self._sm_dr[slots] = state
            opened = gate(self.options.smooth, noise) > 0
            q, root_pos = qo.astype(np.float32), ro.astype(np.float32)
        if not opened.any():
            return q, root_pos, X
        rows = np.flatnonzero(opened)
        X = X.copy()
        if self._kern is not None:
            self._kern.fk(q, rows, np.ascontiguousarray(off, np.float64), root_pos, *self._kfk, X)
            return q, root_pos, X
        G = rf.global_rotations(quat_to_matrix(q[rows].astype(np.float64)), self.tables)
        X[rows] = rf.positions(G, off[rows], root_pos[rows].astype(np.float64), self.tables)
        return q, root_pos, X

    def _with_approx(self, pos, mask, approx, P, root, cs, size):
        """The network input ``pos (B, Ji, 3)``, ``mask (B, Ji)`` with the approximate joints ``approx (B, Ji)``
        put back (normalised as :func:`rtik.solve.numpath.pre` does: ``R_y(-yaw) (p - root) / size``)."""
        rel = (P - root[:, None]) @ numpath.heading_matrices(cs) / size[:, None, None]
        pos = np.where(approx[..., None], rel.astype(np.float32), pos)
        return pos, np.where(approx, np.float32(1.0), mask)

    def _with_markers(self, slots, pos, mask, markers, root, cs, size):
        """``pos (B, Ji, 3)`` and ``mask (B, Ji)`` with the markers appended: ``(B, Ji + Km, 3)``, ``(B, Ji + Km)``;
        a marker is ``R_y(-yaw) (p - root) / size`` like a joint (:func:`rtik.solve.numpath.pre`), zero when missing."""
        B = len(slots)
        if markers is None:
            Pm, Mm = np.zeros((B, self.Km, 3)), np.zeros((B, self.Km), bool)
        else:
            Pm, Mm = markers
        rel = Pm * self._scale[slots][:, None, None] - root[:, None]
        pm = (rel @ numpath.heading_matrices(cs)) * (Mm / size[:, None])[..., None]
        pos = np.concatenate([pos, pm.astype(np.float32)], axis=1)
        return pos, np.concatenate([mask, Mm.astype(np.float32)], axis=1)

    def _network(self, slots, pos, mask, reset, infos):
        """One backend call for the batch; streams whose output is not finite are reset. -> ``(r6, clean, reset)``"""
        key = slots.tobytes()  # the same streams as last tick and no reset: hand the backend its own state_out back
        last = self._carry
        carry = last is not None and last[0] == key and not reset.any()
        r6, clean, st = self.backend.step(pos, mask, last[1] if carry else self._state[slots])
        finite = numpath.all_finite if self._kern is None else self._kern.all_finite
        if not finite(r6, clean, st):
            # a network output that is not finite must never poison a stream's state: those streams start
            # afresh and take the mean pose (refined onto the observed bones) and their raw positions this frame
            bad = ~(np.isfinite(r6).all((1, 2)) & np.isfinite(st).all(1) & np.isfinite(clean).all((1, 2)))
            r6, clean, st = r6.copy(), clean.copy(), st.copy()
            r6[bad] = self._prior6
            clean[bad] = pos[bad]
            st[bad] = 0.0
            reset = reset | bad
            for i in np.flatnonzero(bad):
                infos[i].resets += 1
                infos[i].last_error = "network output was not finite; stream state reset"
        self._state[slots] = st
        self._carry = (key, st)
        return np.ascontiguousarray(r6, np.float32), np.ascontiguousarray(clean, np.float32), reset

    # ------------------------------------------------------------------------------------------- helpers
    def euler(self, local_quats) -> np.ndarray:
        """Euler angles ``(..., J, 3)`` in degrees, each joint in its skeleton channel order (BVH intrinsic),
        from local quaternions ``(..., J, 4)`` (for writers; joints without rotation channels get ZXY)."""
        from rtik.geometry import rotations as rot

        q = np.asarray(local_quats, dtype=np.float64)
        out = np.zeros(q.shape[:-1] + (3,))
        orders = [self.skeleton.rotation_order(j) or "ZXY" for j in range(self.J)]
        for order in set(orders):
            js = [j for j in range(self.J) if orders[j] == order]
            out[..., js, :] = rot.quat_to_euler(q[..., js, :], order)
        return out

    def close(self) -> None:
        self.backend.close()


def solve_sequence(
    solver_or_pack, positions, fps: float, mask=None, layout="rtik", units="m", joints=None,
    calibrate: bool = True, backend="onnx", stream: str = "sequence",
) -> dict[str, np.ndarray]:  # fmt: skip
    """Solve a whole clip through the same per-frame path as live streams.

    Args:
        solver_or_pack: a :class:`Solver` (a temporary stream is opened on it) or a :class:`ModelPack`.
        positions: ``(F, Js, 3)`` in ``layout`` and ``units``; ``mask``: ``(F, Js)`` observed joints or None.
        fps: frame rate (Hz); frame ``i`` has timestamp ``i / fps``.
        calibrate: measure the body (bone lengths, the offsets of multi-child joints' children) over the whole
            clip first (else the running estimate is used).

    Returns:
        ``{"local_quats": (F, J, 4) float32, "root_pos": (F, 3) m, "positions": (F, J, 3) m, "reset": (F,) bool,
        "bone_lengths": (J,) m, "skeleton": the calibrated Skeleton (m), whose FK of the output is "positions"}``.
    """
    own = not isinstance(solver_or_pack, Solver)
    solver = Solver(solver_or_pack, backend) if own else solver_or_pack
    X = np.asarray(positions, dtype=np.float64)
    if X.ndim != 3 or X.shape[-1] != 3:
        raise InputError(f"positions must have shape (F, J, 3), got {X.shape}")
    if mask is not None and np.shape(mask) != X.shape[:2]:
        raise InputError(f"mask has shape {np.shape(mask)}, expected {X.shape[:2]}")
    F = len(X)
    try:
        solver.open_stream(stream, layout=layout, units=units, fps=fps, joints=joints)
        if calibrate:
            solver.calibrate(stream, X, mask)
        out = {
            "local_quats": np.zeros((F, solver.J, 4), np.float32),
            "root_pos": np.zeros((F, 3), np.float32),
            "positions": np.zeros((F, solver.J, 3), np.float32),
            "reset": np.zeros(F, bool),
        }
        for i in range(F):
            solver.push(stream, X[i], i / fps, None if mask is None else mask[i])
            r = solver.tick()[stream]
            out["local_quats"][i], out["root_pos"][i], out["positions"][i], out["reset"][i] = (
                r.local_quats, r.root_pos, r.positions, r.reset
            )  # fmt: skip
        out["bone_lengths"] = solver.calibrate(stream, lock=calibrate)
        out["skeleton"] = solver.stream_skeleton(stream)
        return out
    finally:
        if stream in solver.streams:
            solver.close_stream(stream)
        if own:
            solver.close()
