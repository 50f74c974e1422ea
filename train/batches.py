"""Training examples from clips: augment a whole clip, corrupt its positions like a sensor would, normalise it
exactly as the runtime does, and cut it into windows for truncated back-propagation through time.

A batch holds ``B`` *streams*; each walks through its own augmented clip window after window, carrying the
recurrent state across windows (as the runtime does frame after frame), and starts over with a zero state on a
new clip — sometimes at a random point in the middle of the motion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtik.eval import conditions
from rtik.formats import markers as mk
from rtik.geometry import rotations as rot
from rtik.geometry.kinematics import forward_kinematics, mean_local_rotations
from rtik.models import normalize as nz
from train import augment as aug
from train.data import ClipSet


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the augmentations (see :mod:`train.augment`)."""

    mirror: float = 0.5  # probability of a left/right mirror image
    mix_upper: float = 0.15  # probability of an upper body from another clip
    perturb: float = 0.5  # probability of small pose perturbations
    perturb_deg: float = 5.0
    rates: tuple = (1, 2, 4)  # frame-rate factors (30 -> 30, 60, 120 Hz)
    rate_p: tuple = (0.4, 0.3, 0.3)
    speed: tuple = (0.8, 1.25)
    warp: float = 0.3  # max relative speed change of the time warp
    bones: float = 0.8  # probability of bone-length scaling
    bone_sigma: float = 0.08
    noise: float = 0.7  # probability of sensor noise, sigma uniform in noise_mm
    noise_mm: tuple = (0.0, 20.0)
    occlude: float = 0.4  # probability of occluded spans
    outliers: float = 0.3  # probability of outlier spikes
    mid_start: float = 0.5  # probability that a stream starts at a random point of its clip
    # markers (models with leaf markers only): which the input has, and how far from their canonical place
    markers_none: float = 0.3  # probability that an example has no marker at all
    markers_estimator: float = 0.35  # probability of a pose estimator's points (see ExampleMaker.make)
    estimator_joints: float = 0.6  # within those: the estimator's joints too (no spine, chest, neck, clavicles)
    marker_deg: float = 12.0  # per-clip direction scatter of each marker's offset (degrees, rms)
    marker_scale: tuple = (0.5, 2.0)  # per-clip length factor of each marker's offset (log-uniform)
    depth_mm: tuple = (0.0, 40.0)  # extra noise along one horizontal camera ray for estimator examples


class ExampleMaker:
    """Turns clip ``i`` of a :class:`ClipSet` into one augmented, corrupted, normalised example.

    Each clip has its own body where the clip set holds one per clip (:meth:`ClipSet.skeleton_of`: a corpus of
    several performers); bone-length scaling then varies that body. The clip set's ``skeleton`` gives the tree,
    the mirror map and the reflections."""

    def __init__(self, clips: ClipSet, cfg: AugmentConfig = AugmentConfig(), spec: nz.NormSpec | None = None,
                 markers: tuple[str, ...] = ()):  # fmt: skip
        self.clips, self.cfg, self.spec = clips, cfg, spec or nz.NormSpec()
        self.markers = tuple(markers)
        skel = self.skel = clips.skeleton
        self.mean_local = mean_local_rotations(clips.quats[:: max(1, clips.num_frames // 20000)])
        self.N = aug.mirror_reflections(skel, self.mean_local)
        self.dummy = skel.dummy_root()
        self.keep = np.array([j for j in range(len(skel)) if j != self.dummy])
        self.names = [skel.names[j] for j in self.keep]
        self.mr = skel.motion_root()
        self.root_in = self.names.index(self.spec.root)
        self.mr_in = int(np.nonzero(self.keep == self.mr)[0][0])
        self.upper = aug.subtree(skel, skel.children(self.mr)[0]) if skel.children(self.mr) else np.array([], int)
        self.movable = np.array([j for j in self.keep if j != self.mr])
        self.legs = [skel.index(n) for n in skel.names if "Leg" in n or "Foot" in n]
        self.m_parent = np.array([self.names.index(mk.BY_NAME[m].parent) for m in self.markers], dtype=np.int64)
        self.m_offset = mk.offsets(self.markers)
        self.m_group = np.array([mk.BY_NAME[m].group for m in self.markers])
        self.m_estimator = np.array([mk.group_of(m) in mk.ESTIMATOR for m in self.markers], dtype=bool)
        self.m_rig = np.array([mk.group_of(m) in mk.RIG_TIPS for m in self.markers], dtype=bool)
        self.shank = [skel.index(n) for n in ("LowerLeg_L", "Foot_L") if n in skel.names]

    def make(self, i: int, rng: np.random.Generator) -> dict:
        """Arrays of one example (``T`` frames): ``pos (T, Ji, 3)``, ``mask (T, Ji)``, ``pos_gt (T, Ji, 3)``,
        ``G (T, Ji, 3, 3)`` global rotations in the heading frame, ``L (T, Ji, 3, 3)`` local (the motion root's
        in the heading frame), ``offsets (Ji, 3)`` normalised bone offsets; all float32."""
        c, skel = self.cfg, self.clips.skeleton_of(i)
        q, r = self.clips.clip(i)
        if rng.random() < c.mix_upper and len(self.upper):
            q = aug.mix_upper_body(q, self.clips.clip(int(rng.integers(len(self.clips))))[0], self.upper)
        if rng.random() < c.mirror:
            q, r = aug.mirror(skel, self.N, q, r)
        if rng.random() < c.perturb:
            q = aug.perturb_pose(q, self.movable, rng, c.perturb_deg)
        factor = float(rng.choice(c.rates, p=c.rate_p))
        q, r = aug.resample(q, r, factor, rng.uniform(*c.speed), rng.uniform(0, c.warp), rng)
        q, r = aug.rotate_heading(skel, q, r, rng.uniform(0, 2 * np.pi), rng.uniform(-2, 2, 2))
        if rng.random() < c.bones:
            s, f = aug.scale_bones(skel, rng, c.bone_sigma)
            r = r * np.array([1.0, np.mean(f[self.legs]), 1.0], dtype=np.float32)
        else:
            s = skel
        P, Gq = forward_kinematics(s, q.astype(np.float64), root_pos=r)
        P, Gq = P[:, self.keep], Gq[:, self.keep]
        T, Ji = P.shape[:2]
        present, estimator = np.zeros(len(self.markers), bool), False
        if self.markers:
            P = np.concatenate([P, self._marker_positions(s, P, Gq, rng)], axis=1)
            present, estimator = self._marker_choice(rng)
        n_in = P.shape[1]
        noisy = P
        if estimator:
            noisy = self._as_estimator(noisy, rng)
        if rng.random() < c.noise:
            noisy = conditions.gaussian_noise(noisy, rng, rng.uniform(*c.noise_mm) / 1000.0)
        if rng.random() < c.outliers:
            noisy = conditions.outliers(noisy, rng, rng.uniform(0, 0.02), rng.uniform(0.05, 0.2))[0]
        mask = np.ones((T, n_in), dtype=bool)
        if rng.random() < c.occlude:
            others = np.array([k for k in range(n_in) if k != self.root_in])
            mask = conditions.occlusion_mask(
                (T, n_in), self.clips.fps * factor, rng, rng.uniform(0.2, 1.0), rng.uniform(0.05, 0.4), others
            )
        if self.markers:
            mask[:, Ji:] &= present
            if estimator and rng.random() < c.estimator_joints:
                mask[:, [self.names.index(n) for n in mk.ESTIMATOR_MISSING if n in self.names]] = False
        size = nz.body_size(self.spec, self.names, s.bone_lengths()[self.keep])
        yaw, ok = nz.heading(self.spec, self.names, noisy, mask)
        yaw = _hold_last(yaw, ok)
        pos = nz.normalize(noisy, self.root_in, yaw, size) * mask[..., None]
        qinv = rot.quat_conj(nz.yaw_quat(yaw))  # (T, 4)
        rel = P - noisy[:, self.root_in : self.root_in + 1]  # joints and markers
        pos_gt = rot.quat_apply(np.broadcast_to(qinv[:, None], rel.shape[:-1] + (4,)), rel) / size
        Gh = rot.quat_mul(np.broadcast_to(qinv[:, None], Gq.shape), Gq)
        Lq = q[:, self.keep].astype(np.float64)
        Lq[:, self.mr_in] = Gh[:, self.mr_in]
        off = s.offsets[self.keep] / size
        off[self.mr_in] = 0.0
        f32 = np.float32
        return {
            "pos": pos.astype(f32),
            "mask": mask.astype(f32),
            "pos_gt": pos_gt.astype(f32),
            "G": rot.quat_to_matrix(Gh).astype(f32),
            "L": rot.quat_to_matrix(Lq).astype(f32),
            "offsets": np.broadcast_to(off.astype(f32), (T, Ji, 3)),
        }

    # ---------------------------------------------------------------------------------------------- markers
    def _marker_positions(self, s, P, Gq, rng) -> np.ndarray:
        """World positions ``(T, K, 3)`` of the markers on body ``s`` (joints ``P``, global rotations ``Gq``),
        their offsets scaled to the body and scattered per clip in length and direction."""
        c = self.cfg
        leg = float(np.linalg.norm(s.offsets[self.shank], axis=-1).sum()) if self.shank else mk.REFERENCE_LEG
        K = len(self.markers)
        axis = rng.normal(size=(K, 3))
        axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
        jitter = rot.axis_angle_to_quat(axis * np.deg2rad(rng.normal(0.0, c.marker_deg, K))[:, None])
        f = np.exp(rng.uniform(*np.log(c.marker_scale), K))  # end sites of rigs run from half to twice the canonical
        off = rot.quat_apply(jitter, self.m_offset) * (leg / mk.REFERENCE_LEG * f)[:, None]
        G = Gq[:, self.m_parent]  # (T, K, 4)
        return P[:, self.m_parent] + rot.quat_apply(G, np.broadcast_to(off, G.shape[:-1] + (3,)))

    def _marker_choice(self, rng) -> tuple[np.ndarray, bool]:
        """Which markers this example has ``(K,)`` and whether it is a pose estimator's input: none at all;
        a pose estimator's points (every estimator marker); or a rig's tips (each group of tips, head / hands /
        feet, present or not, a tip within a present group kept with probability 0.7)."""
        c, K = self.cfg, len(self.markers)
        u = rng.random()
        if u < c.markers_none:
            return np.zeros(K, bool), False
        if u < c.markers_none + c.markers_estimator:
            return self.m_estimator.copy(), True
        groups = {g: rng.random() < 0.6 for g in ("head", "hand", "foot")}
        keep = np.array([groups[g] for g in self.m_group]) & (rng.random(K) < 0.7)
        return keep & (self.m_rig | (rng.random() < 0.3)), False

    def _as_estimator(self, P, rng) -> np.ndarray:
        """Joint rows as a pose estimator's layout gives them (``mediapipe33``: the hips' midpoint for Hips, the
        ears' for Head, the foot index for Toes), and extra noise along one horizontal camera ray."""
        row = {m: len(self.names) + i for i, m in enumerate(self.markers)}
        P = mk.as_estimator_joints(P, self.names, row)
        a = rng.uniform(0, 2 * np.pi)
        ray = np.array([np.cos(a), 0.0, np.sin(a)])
        depth = rng.normal(0.0, rng.uniform(*self.cfg.depth_mm) / 1000.0, P.shape[:2])
        return P + depth[..., None] * ray


def _hold_last(yaw, ok):
    """``yaw (T,)`` where ``ok`` is false replaced by the last observable value (0 before any)."""
    idx = np.where(ok, np.arange(len(yaw)), -1)
    idx = np.maximum.accumulate(idx)
    return np.where(idx >= 0, yaw[np.maximum(idx, 0)], 0.0)


class Streams:
    """``B`` streams of examples cut into windows of ``T`` frames (see the module doc)."""

    def __init__(self, maker: ExampleMaker, batch: int, window: int, seed: int = 0):
        self.maker, self.B, self.T = maker, batch, window
        self.rng = np.random.default_rng(seed)
        self.ex: list[dict | None] = [None] * batch
        self.cursor = [0] * batch

    def _new(self, b: int) -> None:
        while True:
            ex = self.maker.make(int(self.rng.integers(len(self.maker.clips))), self.rng)
            n = len(ex["pos"])
            if n >= self.T:
                break
        start = 0
        if self.rng.random() < self.maker.cfg.mid_start and n > 2 * self.T:
            start = int(self.rng.integers(0, n - self.T))
        self.ex[b], self.cursor[b] = ex, start

    def next(self) -> tuple[dict, np.ndarray]:
        """One batch ``{key: (B, T, ...)}`` and ``reset (B,)`` bool: rows whose state must start at zero."""
        reset = np.zeros(self.B, dtype=bool)
        parts = []
        for b in range(self.B):
            ex = self.ex[b]
            if ex is None or self.cursor[b] + self.T > len(ex["pos"]):
                self._new(b)
                reset[b] = True
            a = self.cursor[b]
            parts.append({k: v[a : a + self.T] for k, v in self.ex[b].items()})
            self.cursor[b] = a + self.T
        return {k: np.stack([p[k] for p in parts]) for k in parts[0]}, reset
