"""Cross-rig evaluation: every source's clips solved from the joints its own rig has, scored in the body.

Numpy only (the model method imports :mod:`rtik.solve` inside). Each clip (:class:`rtik.eval.sources.SourceClip`)
is the corpus's mapping of a source rig onto the model's 22-joint body. The **input** is the body's FK positions
of the joints the rig has (``present``): these are the rig's own joint positions, rotated to Y up and in metres,
exactly where the rig's chains between body joints are rigid (docs/rigs.md); joints the rig lacks are missing on
every frame. Rotations are compared in the **body**: the model's output goes onto the body through
``Rig.from_skeleton(pack skeleton)``, the baselines solve in the clip's own body.

Per joint and source (or per clip: ``offsets="clip"``), the **constant rest offset** ``C_j`` is the rotation
minimising ``sum_f |G_out[f, j] C_j - G_gt[f, j]|_F^2`` over every evaluated frame of the source's clips (the
chordal mean of ``G_out^-1 G_gt``): what is left after it is the error a per-joint re-rigging cannot remove.
Every rotation error is reported with the offset fitted (``*_fit``) and without. Local rotations are taken
relative to the nearest joint the rig has (the body parent unless it is virtual); with the offset,
``L'_j = (G_out,a C_a)^-1 G_out,j C_j`` for that ancestor ``a``. MPJPE and the jerk ratio are over the input
joints; the static dummy root is never scored.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rtik.errors import InputError
from rtik.eval import baselines
from rtik.eval.conditions import ALL_CONDITIONS, CONDITIONS, apply_condition
from rtik.eval.metrics import jerk
from rtik.eval.sources import SourceClip
from rtik.formats import markers
from rtik.geometry import kinematics as kin
from rtik.geometry import rotations as rot
from rtik.geometry.skeleton import GROUPS

_FIELDS = ("pos_mm", "rot_deg", "rot_fit_deg", "grot_deg", "grot_fit_deg")
#: summary keys, in table order: MPJPE, then local and global rotation error with the fitted offset and without
KEYS = (
    "mpjpe_mm",
    *(f"{k}_{g}_deg" for k in ("rot_fit", "grot_fit", "rot", "grot") for g in ("all", *GROUPS)),
    "jerk_ratio",
)


def fit_offsets(out_global, gt_global) -> np.ndarray:
    """``(J, 4)`` XYZW: per joint, the rotation ``C`` minimising ``sum_f |R(out[f]) R(C) - R(gt[f])|_F^2`` for
    global rotations ``(F, J, 4)`` XYZW (the chordal mean of ``out^-1 gt``)."""
    d = rot.quat_mul(rot.quat_conj(np.asarray(out_global, np.float64)), np.asarray(gt_global, np.float64))
    return kin.mean_local_rotations(d)


def scored_parents(parents, present) -> np.ndarray:
    """``(J,)`` the nearest ancestor of each joint that is ``present`` (``-1``: none, the world)."""
    out = np.full(len(parents), -1)
    for j, p in enumerate(parents):
        while p >= 0 and not present[p]:
            p = parents[p]
        out[j] = p
    return out


def body_groups(skel) -> tuple[str, ...]:
    """The joint group of each body joint by the body's structure (``determined``: two or more children,
    ``limb``: one, ``leaf``: none), the same for every clip whatever its rest offsets."""
    return tuple(GROUPS[0] if len(k) >= 2 else GROUPS[1] if len(k) == 1 else GROUPS[2]
                 for k in (skel.children(j) for j in range(len(skel))))  # fmt: skip


def _local(G, anc) -> np.ndarray:
    """Rotations ``G (F, J, 4)`` relative to ``anc`` (``-1``: the world)."""
    P = np.where((anc >= 0)[None, :, None], G[:, np.maximum(anc, 0)], rot.quat_identity(G.shape[:2]))
    return rot.quat_mul(rot.quat_conj(P), G)


@dataclass(frozen=True, eq=False)
class RigErrors:
    """Summed errors over clips of the body (combine with ``+``).

    Fields:
        frames, clips: totals.
        sums: per field of ``pos_mm``, ``rot_deg``, ``rot_fit_deg``, ``grot_deg``, ``grot_fit_deg`` the ``(J,)``
            sums over scored frames (mm or degrees).
        n: ``(J,)`` scored frames per joint (a joint counts in the clips whose rig has it).
        jerk_out, jerk_gt: summed jerk (m/s^3) of the output and the ground truth at the input joints.
        jerk_ratio_sum, jerk_frames: per-clip jerk ratios weighted by frames, and the frames they cover.
        groups: ``(J,)`` joint group names of the body.
    """

    frames: int
    clips: int
    sums: dict
    n: np.ndarray
    jerk_out: float
    jerk_gt: float
    jerk_ratio_sum: float
    jerk_frames: int
    groups: tuple[str, ...]

    def __add__(self, other: RigErrors) -> RigErrors:
        if self.groups != other.groups:
            raise InputError("cannot combine errors of different skeletons")
        return RigErrors(
            self.frames + other.frames,
            self.clips + other.clips,
            {k: self.sums[k] + other.sums[k] for k in _FIELDS},
            self.n + other.n,
            self.jerk_out + other.jerk_out,
            self.jerk_gt + other.jerk_gt,
            self.jerk_ratio_sum + other.jerk_ratio_sum,
            self.jerk_frames + other.jerk_frames,
            self.groups,
        )

    @property
    def joints(self) -> np.ndarray:
        """``(J,)`` bool: joints scored in at least one frame."""
        return self.n > 0

    def per_joint(self) -> dict[str, np.ndarray]:
        """Mean error per joint ``(J,)`` for each field (``nan`` for joints never scored)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return {k: np.where(self.n > 0, v / np.maximum(self.n, 1), np.nan) for k, v in self.sums.items()}

    def summary(self) -> dict[str, float]:
        """The :data:`KEYS` figures (per-joint means averaged over the joints of each group; ``nan`` for a group
        with no scored joint), then ``jerk_ratio_pooled``, ``frames`` and ``clips``."""
        pj = self.per_joint()
        groups = np.array(self.groups)

        def mean(v, sel):
            sel = sel & self.joints
            return float(np.mean(v[sel])) if np.any(sel) else float("nan")

        out = {"mpjpe_mm": mean(pj["pos_mm"], np.ones(len(groups), bool))}
        for key in ("rot_fit", "grot_fit", "rot", "grot"):
            out[f"{key}_all_deg"] = mean(pj[f"{key}_deg"], np.ones(len(groups), bool))
            for g in GROUPS:
                out[f"{key}_{g}_deg"] = mean(pj[f"{key}_deg"], groups == g)
        out["jerk_ratio"] = self.jerk_ratio_sum / self.jerk_frames if self.jerk_frames > 0 else float("nan")
        out = {k: out[k] for k in KEYS}
        out["jerk_ratio_pooled"] = self.jerk_out / self.jerk_gt if self.jerk_gt > 0 else float("nan")
        out["frames"] = self.frames
        out["clips"] = self.clips
        return out


def clip_errors(clip: SourceClip, out_global, out_positions, offsets=None) -> RigErrors:
    """Errors of one clip: ``out_global (F, 22, 4)`` body global rotations XYZW and ``out_positions (F, 22, 3)``
    metres (only the input joints are read). ``offsets (22, 4)``: the rest offsets ``C_j`` (XYZW) of the
    ``*_fit`` errors; ``None`` fits them on this clip (:func:`fit_offsets`)."""
    skel, present = clip.skeleton, clip.present
    F, J = clip.local_quats.shape[:2]
    if np.shape(out_global) != (F, J, 4) or np.shape(out_positions) != (F, J, 3):
        raise InputError(
            f"output has shapes {np.shape(out_global)} and {np.shape(out_positions)}, expected ({F}, {J}, 4/3)"
        )
    gt = kin.local_to_global(skel, clip.local_quats)
    out = rot.quat_normalize(np.asarray(out_global, np.float64))
    C = fit_offsets(out, gt) if offsets is None else np.array(offsets, dtype=np.float64)
    C[~present] = rot.quat_identity()
    out_fit = rot.quat_mul(out, C[None])
    anc = scored_parents(skel.parents, present)
    gt_local = _local(gt, anc)
    errs = {
        "grot_deg": rot.quat_geodesic(out, gt),
        "grot_fit_deg": rot.quat_geodesic(out_fit, gt),
        "rot_deg": rot.quat_geodesic(_local(out, anc), gt_local),
        "rot_fit_deg": rot.quat_geodesic(_local(out_fit, anc), gt_local),
    }
    sums = {k: np.where(present, np.degrees(v).sum(axis=0), 0.0) for k, v in errs.items()}
    Pout = np.asarray(out_positions, np.float64)[:, present]
    Pgt = clip.positions[:, present]
    sums["pos_mm"] = np.zeros(J)
    sums["pos_mm"][present] = 1000.0 * np.linalg.norm(Pout - Pgt, axis=-1).sum(axis=0)
    jo, jg = jerk(Pout, clip.fps), jerk(Pgt, clip.fps)
    has_jerk = jg.size > 0 and jg.sum() > 0
    return RigErrors(
        frames=F,
        clips=1,
        sums={k: sums[k] for k in _FIELDS},
        n=np.where(present, F, 0),
        jerk_out=float(jo.sum()),
        jerk_gt=float(jg.sum()),
        jerk_ratio_sum=F * float(jo.sum() / jg.sum()) if has_jerk else 0.0,
        jerk_frames=F if has_jerk else 0,
        groups=body_groups(skel),
    )


# ----------------------------------------------------------------------------------------------- methods
#: a method: (clip, input positions (F, 22, 3) with nan where missing, mask (F, 22)) ->
#: (body global rotations (F, 22, 4) XYZW, positions (F, 22, 3) metres)
Method = Callable[[SourceClip, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
#: the body child that places each possibly virtual joint on its chain
_CHAIN_CHILD = {"Spine": "Chest", "Neck": "Head", "Shoulder_L": "UpperArm_L", "Shoulder_R": "UpperArm_R"}


def fill_virtual(clip: SourceClip, positions, mask) -> tuple[np.ndarray, np.ndarray]:
    """Input positions with every absent (virtual) joint placed on its chain between its parent and child at
    the body's proportions (where the mapping puts it; exact on clean input), observed where both are. A
    classical solver needs every joint; the model gets the rig's joints only."""
    P, m = np.array(positions, dtype=np.float64), np.array(mask, dtype=bool)
    skel = clip.skeleton
    for name, child in _CHAIN_CHILD.items():
        if name not in skel.names:
            continue
        j, c = skel.index(name), skel.index(child)
        if clip.present[j]:
            continue
        p = skel.parents[j]
        a, b = np.linalg.norm(skel.offsets[j]), np.linalg.norm(skel.offsets[c])
        t = a / (a + b) if a + b > 0 else 0.0
        P[:, j] = P[:, p] + t * (P[:, c] - P[:, p])
        m[:, j] = m[:, p] & m[:, c]
    return P, m


def fill_torso(clip: SourceClip, positions, mask) -> tuple[np.ndarray, np.ndarray]:
    """A pose estimator's input gives no spine, chest, neck or clavicles; a classical solver needs them. Where
    the input never observes ``Chest`` (the ``estimator`` marker mode), they are placed as a user would: the neck
    at the upper arms' midpoint, the spine and chest on the line from the hips to it at the body's proportions, each
    clavicle joint halfway from the neck to its upper arm (observed where those are). Other inputs pass as they are."""
    skel = clip.skeleton
    n = skel.index
    if mask[:, n("Chest")].any():
        return positions, mask
    P, m = np.array(positions, dtype=np.float64), np.array(mask, dtype=bool)
    arms = m[:, n("UpperArm_L")] & m[:, n("UpperArm_R")]
    neck = 0.5 * (P[:, n("UpperArm_L")] + P[:, n("UpperArm_R")])
    length = [float(np.linalg.norm(skel.offsets[n(j)])) for j in ("Spine", "Chest", "Neck")]
    total = sum(length) or 1.0
    hips = P[:, n("Hips")]
    seen = arms & m[:, n("Hips")]
    P[:, n("Spine")] = hips + length[0] / total * (neck - hips)
    P[:, n("Chest")] = hips + (length[0] + length[1]) / total * (neck - hips)
    P[:, n("Neck")] = neck
    for j in ("Spine", "Chest", "Neck"):
        m[:, n(j)] = seen
    for side in ("_L", "_R"):
        P[:, n("Shoulder" + side)] = 0.5 * (neck + P[:, n("UpperArm" + side)])
        m[:, n("Shoulder" + side)] = arms
    return P, m


def baseline_method(name: str, prior_body: np.ndarray | None) -> Method:
    """A baseline of :mod:`rtik.eval.baselines` solving in the clip's body (``prior_body (22, 4)``: the body's
    mean local rotations, for the ``analytic_prior*`` baselines). Leaf markers in the input are not used."""

    def run(clip: SourceClip, positions: np.ndarray, mask: np.ndarray):
        J = len(clip.skeleton)
        P, m = fill_virtual(clip, *fill_torso(clip, positions[:, :J], mask[:, :J]))
        sol = baselines.solve(name, clip.skeleton, P, clip.fps, m, prior_body)
        return kin.local_to_global(sol.skeleton, sol.local_quats), sol.positions

    return run


def pack_rig(pack):
    """The :class:`~rtik.formats.rig.Rig` of a model pack's skeleton, its twist aligned on the pack's mean pose
    (``prior_local``) where its zero pose is no T-pose (the shipped pack: the Bandai rig); a pack trained in the
    body's own frames maps onto the body as it is."""
    from rtik.formats.rig import Rig

    rig = Rig.from_skeleton(pack.skeleton)
    prior = np.asarray(pack.prior_local, dtype=np.float64)[None]
    return rig.fit([(prior, np.zeros((1, 3)))])


def pack_prior_body(pack, rig=None) -> np.ndarray:
    """``(22, 4)`` a model pack's mean local rotations (``prior_local``) mapped onto the body."""
    rig = rig or pack_rig(pack)
    q, _ = rig.to_body(np.asarray(pack.prior_local, dtype=np.float64)[None], np.zeros((1, 3)))
    return q[0]


def model_method(pack, backend: str = "onnx", fill: bool = False, solver=None, markers_mode: str = "none") -> Method:
    """The learned solver as a :data:`Method`: :func:`rtik.solve.solver.solve_sequence` fed one frame at a time
    with the input joints (by body name; the joints the rig lacks missing, as ``rtik solve`` feeds a BVH through
    its rig's layout, or placed on their chain like the baselines' with ``fill``), bone lengths calibrated over
    the clip's observed input; its output mapped onto the body by :func:`pack_rig`. ``solver``: a
    :class:`~rtik.solve.solver.Solver` of ``pack`` to use (other options), else one is made. ``markers_mode``
    ``"estimator"``: the input's hips, head and toes are a pose estimator's stand-ins, marked approximate as the
    ``mediapipe33`` layout marks them (:func:`rtik.formats.layouts.as_estimator`)."""
    from rtik.formats import layouts
    from rtik.formats.rig import BODY_NAMES
    from rtik.solve.solver import Solver, solve_sequence

    solver = solver if solver is not None else Solver(pack, backend=backend)
    rig = pack_rig(pack)
    out_names = tuple(solver.skeleton.names)
    lacking = [n for n in BODY_NAMES if n not in out_names]
    if lacking:
        raise InputError(f"the model's skeleton lacks body joints: {', '.join(lacking)}")
    out_idx = np.array([out_names.index(n) for n in BODY_NAMES])

    def run(clip: SourceClip, positions: np.ndarray, mask: np.ndarray):
        J = len(clip.skeleton)
        extra = [k for k in range(J, positions.shape[1]) if mask[:, k].any()]  # the leaf markers it has
        P, M = positions[:, :J], mask[:, :J]
        if fill:
            P, M = fill_virtual(clip, P, M)
            names = list(pack.input_joints)
        else:  # the rig's joints only: a layout that lacks the others (the solver calibrates without them)
            names = [n for n in pack.input_joints if clip.present[clip.skeleton.index(n)]]
        idx = clip.skeleton.indices(names)
        P, M = P[:, idx], M[:, idx]
        if extra and pack.markers:
            names += [markers.NAMES[k - J] for k in extra]
            P = np.concatenate([P, positions[:, extra]], axis=1)
            M = np.concatenate([M, mask[:, extra]], axis=1)
        layout = layouts.from_names(tuple(names), pack.input_rows, name="names")
        if markers_mode == "estimator":
            layout = layouts.as_estimator(layout)
        res = solve_sequence(solver, P, clip.fps, M, layout=layout, units="m")
        G, _ = rig.body_globals(res["local_quats"].astype(np.float64), res["root_pos"].astype(np.float64))
        return rot.matrix_to_quat(G), res["positions"][:, out_idx].astype(np.float64)

    return run


# ----------------------------------------------------------------------------------------------- running
#: which leaf markers an evaluation's input has (``rtik eval --markers``): none; the clip's own rig's head, hand
#: and toe tips (where its rig has them, :attr:`SourceClip.tips`); or a pose estimator's points and joints
#: (MediaPipe Pose's: nose, eyes, ears, index, pinky, thumb, heel and foot index at their canonical places on the
#: clip's body; no spine, chest, neck or clavicles; the hips' midpoint for the hips, the ears' for the head, the foot
#: index for the toes, as the ``mediapipe33`` layout feeds them)
MARKER_MODES = ("none", "rig", "estimator")


def marker_positions(clip: SourceClip, mode: str) -> np.ndarray:
    """World positions ``(F, K, 3)`` of the leaf markers :data:`rtik.formats.markers.NAMES` on ``clip`` under
    ``mode`` (:data:`MARKER_MODES`), NaN where the input has none."""
    if mode not in MARKER_MODES:
        raise InputError(f"unknown marker mode {mode!r}; valid: {', '.join(MARKER_MODES)}")
    F, K = len(clip.positions), len(markers.NAMES)
    if mode == "none":
        return np.full((F, K, 3), np.nan)
    if mode == "rig":
        off = clip.tips if clip.tips is not None else np.full((K, 3), np.nan)
    else:
        skel = clip.skeleton
        leg = sum(np.linalg.norm(skel.offsets[skel.index(n)]) for n in ("Foot_L", "Toes_L"))
        off = markers.offsets(markers.NAMES) * (leg / markers.REFERENCE_LEG)
        off[[markers.group_of(m) not in markers.ESTIMATOR for m in markers.NAMES]] = np.nan
    G = kin.local_to_global(clip.skeleton, clip.local_quats)  # (F, 22, 4)
    par = clip.skeleton.indices([markers.BY_NAME[m].parent for m in markers.NAMES])
    P = clip.positions[:, par] + rot.quat_apply(G[:, par], np.broadcast_to(np.nan_to_num(off), (F, K, 3)))
    return np.where(np.isfinite(off).all(-1)[None, :, None], P, np.nan)


def corrupted_input(clip: SourceClip, condition: str, seed: int, markers_mode: str = "none"):
    """The input of ``clip`` under ``condition``: positions ``(F, 22 + K, 3)`` metres (the body's joints, then
    the leaf markers of ``markers_mode``; ``nan`` where missing or absent) and mask ``(F, 22 + K)``; the
    corruption touches the input's joints and markers only, the generator is seeded from ``(seed,
    crc32(source/name), condition index)``. A static dummy root stays exact and observed."""
    J = len(clip.skeleton)
    Pm = marker_positions(clip, markers_mode)
    truth = np.concatenate([clip.positions, Pm], axis=1)
    have = np.concatenate([clip.present, np.isfinite(Pm).all(-1).all(0)])
    if markers_mode == "estimator":  # what the mediapipe33 layout makes of a pose estimator's landmarks
        n = clip.skeleton.names
        truth = markers.as_estimator_joints(truth, n, {m: J + k for k, m in enumerate(markers.NAMES)})
        have[[n.index(j) for j in markers.ESTIMATOR_MISSING]] = False
    inputs = np.nonzero(have)[0]
    key = zlib.crc32(f"{clip.source}/{clip.name}".encode())
    rng = np.random.default_rng([seed, key, ALL_CONDITIONS.index(condition)])
    P_in, m_in = apply_condition(condition, truth[:, inputs], clip.fps, rng)
    P = np.full_like(truth, np.nan)
    mask = np.zeros(P.shape[:2], dtype=bool)
    P[:, inputs], mask[:, inputs] = P_in, m_in
    dummy = clip.skeleton.dummy_root()
    if dummy is not None:
        P[:, dummy], mask[:, dummy] = clip.positions[:, dummy], True
    return P, mask


#: where the rest offsets are fitted: over all clips of a source (one ``C_j`` per source, method and
#: condition), or per clip
OFFSET_FITS = ("source", "clip")


def evaluate(
    clips: list[SourceClip],
    methods: dict[str, Method],
    conditions=CONDITIONS,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    offsets: str = "source",
    markers_mode: str = "none",
) -> dict[str, dict[str, dict[str, RigErrors]]]:
    """``{part: {method: {condition: RigErrors}}}``: one part per source (sorted), then ``"all"`` (every clip)
    when there are several. Every method gets the same corrupted input. ``offsets`` (:data:`OFFSET_FITS`):
    fit the rest offsets per source (over every frame of its clips: a rig convention, not a clip's mean error)
    or per clip. ``markers_mode`` (:data:`MARKER_MODES`): the leaf markers the input has."""
    if offsets not in OFFSET_FITS:
        raise InputError(f"unknown offset fit {offsets!r}; valid: {', '.join(OFFSET_FITS)}")
    log = log or (lambda s: None)
    solved: dict[str, dict[str, dict[str, list]]] = {}  # source -> method -> condition -> [(clip, out_g, out_p)]
    for i, clip in enumerate(clips):
        part = solved.setdefault(clip.source, {m: {c: [] for c in conditions} for m in methods})
        for cond in conditions:
            P, mask = corrupted_input(clip, cond, seed, markers_mode)
            for name, run in methods.items():
                out_global, out_pos = run(clip, P, mask)
                part[name][cond].append((clip, out_global.astype(np.float32), out_pos.astype(np.float32)))
        if (i + 1) % 5 == 0 or i + 1 == len(clips):
            log(f"solved {i + 1}/{len(clips)} clips")
    per: dict[str, dict[str, dict[str, list[RigErrors]]]] = {}
    for source, pm in solved.items():
        per[source] = {m: {} for m in methods}
        for m, pc in pm.items():
            for cond, items in pc.items():
                C = None
                if offsets == "source":
                    gt = np.concatenate([kin.local_to_global(c.skeleton, c.local_quats) for c, _, _ in items])
                    C = fit_offsets(np.concatenate([g for _, g, _ in items]), gt)
                per[source][m][cond] = [clip_errors(c, g, p, C) for c, g, p in items]
    out = {s: {m: {c: _sum(v) for c, v in pm.items()} for m, pm in per[s].items()} for s in sorted(per)}
    if len(out) > 1:
        out["all"] = {m: {c: _sum([e for s in per for e in per[s][m][c]]) for c in conditions} for m in methods}
    return out


def _sum(errors: list[RigErrors]) -> RigErrors:
    total = errors[0]
    for e in errors[1:]:
        total = total + e
    return total
