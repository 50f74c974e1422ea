"""Noise-gated causal smoothing of solved poses: an avatar must not jitter when its input does.

The network and the refinement follow the input closely (clean input comes back within a millimetre), so input
noise reaches the output as jitter: at 120 Hz a third difference of millimetre noise is thousands of m/s³. This
step smooths what leaves the solver — every joint's local rotation and the root position — with a One Euro filter
per stream (Casiez, Roussel and Vogel 2012: an exponential low-pass whose cutoff rises with speed, so slow motion
is smoothed hard and fast motion lightly), run as ``stages`` first-order stages in series, and *gates* it with the
stream's own input-noise estimate:

    w = noise⁴ / (noise⁴ + sigma⁴)          (0 on clean input, towards 1 as the noise grows past ``sigma``)
    output = filtered · w + raw · (1 − w)   (quaternions: normalised blend in the raw rotation's hemisphere)

so clean input passes through untouched (exact positions, no lag) and noisy input is smoothed. Below
:data:`GATE_MIN` (noise under half a millimetre at the default ``sigma``) the gate is shut: the raw pose
leaves as it came, and the solver skips recomputing positions for that stream (``gate_power`` is the exponent, 4;
with 2, σ = 10 mm input left 8 % of the raw pose's jitter in the output, half the jerk that remained at 120 Hz).
The filter runs on every frame whatever ``w`` is, so the gate never switches on a stale state. Quaternion
components are filtered as a 4-vector in the previous estimate's hemisphere and normalised; a joint's speed is
the norm of the derivative of its quaternion (about half its angular speed in rad/s). All arrays are per stream,
vectorised over a tick's batch; the state lives in the solver's per-stream slots (so it travels with
:meth:`Solver.export_stream`).

Stages: one first-order low-pass lets noise through in proportion to ``cutoff / frequency``, while jerk (the third
derivative) weighs a frequency by its cube, so what jitter remains comes from the highest frequencies. ``n`` stages
in series, each at ``n`` times the One Euro cutoff, delay slow motion about as much as one stage does (each delays
by ``1 / (2π n fc)``) and pass ``(n fc / f)^n`` of a high frequency ``f`` instead of ``fc / f``. Every stage takes
the same cutoff; the speed that raises it is measured on the first stage, as the One Euro filter measures it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SmoothConfig:
    """Fields: ``sigma`` (m) input noise at which the output is half smoothed; rotations: ``min_cutoff`` (Hz) at
    rest, ``beta`` (Hz per unit of quaternion speed, 1/s); the root: ``root_min_cutoff`` (Hz), ``root_beta`` (Hz per
    m/s); ``d_cutoff`` (Hz) of the speed estimates.

    The defaults were chosen on training clips of two sources under σ = 10 mm noise (4 clips each of snu-vsports
    at 30 Hz and mpi-poseprior at 120 Hz, never their val parts), trading jitter against lag: a slow root filter
    (``root_beta`` 1) lagged fast sports motion by ~25 mm, a slow speed estimate (``d_cutoff`` 1 Hz) smoothed the
    onset of fast moves. ``beta_hz``: above this frame rate the rotations' ``beta`` shrinks in proportion
    (``beta * beta_hz / fps``), since input noise inflates a speed estimate more the higher the rate (None: a fixed
    ``beta``); on 120 Hz training clips of mpi-poseprior it takes the jerk ratio from 113 to 81 for 0.4 mm (beta 2
    there), and leaves 30 Hz streams as they were. ``beta_power``: the exponent of that shrinking (``beta *
    (beta_hz / fps) ** beta_power``): noise inflates a speed estimate in proportion to the rate, and a jittering
    speed opens the cutoff. ``stages``: low-pass stages in series (1 to :data:`MAX_STAGES`; 1 is the plain One Euro
    filter). ``gate_power``: the exponent of the gate (module docstring).

    ``stages`` 2 and ``gate_power`` 4 (before: 1 and 2) were chosen on training clips with ``benchmarks/smooth.py``
    (4 clips each of snu-vsports at 30 Hz, mpi-poseprior and animated-drawings at 120 Hz, σ = 10 mm): jerk ratio
    3.2 → 2.8, 93 → 65 and 172 → 57, MPJPE +2.1, +1.1 and +1.4 mm. ``beta_power`` 2 took mpi-poseprior's slow
    range-of-motion clips to jerk 21 but lagged animated-drawings' fast dances by 3.4 mm more; three stages
    smooth a little more for a little more lag (docs/solver.md)."""

    sigma: float = 0.003
    min_cutoff: float = 1.0
    beta: float = 8.0
    root_min_cutoff: float = 1.0
    root_beta: float = 10.0
    d_cutoff: float = 2.0
    beta_hz: float | None = 30.0
    beta_power: float = 1.0
    stages: int = 2
    gate_power: float = 4.0

    def __post_init__(self):
        if not 1 <= int(self.stages) <= MAX_STAGES or int(self.stages) != self.stages:
            raise ValueError(f"SmoothConfig.stages must be an integer from 1 to {MAX_STAGES}, not {self.stages!r}")


#: the most low-pass stages a stream's filter state holds
MAX_STAGES = 3


#: gate weights below this count as zero (the output is the raw pose, bit for bit)
GATE_MIN = 1e-3


def gate(cfg: SmoothConfig, noise) -> np.ndarray:
    """The gate weight ``w (B,)`` of each stream's input-noise estimate ``noise (B,)`` (m); 0 below :data:`GATE_MIN`."""
    v = (np.asarray(noise, dtype=np.float64) / cfg.sigma) ** cfg.gate_power
    w = v / (v + 1.0)
    return np.where(w < GATE_MIN, 0.0, w)


def _alpha(cutoff, dt):
    return 1.0 / (1.0 + 1.0 / (2.0 * np.pi * cutoff * dt))


def smooth(cfg: SmoothConfig, q, root, noise, dt, fresh, state) -> tuple[np.ndarray, np.ndarray]:
    """One frame of ``B`` streams: raw local rotations ``q (B, J, 4)`` XYZW and root ``(B, 3)``, each stream's
    input-noise estimate ``noise (B,)`` (m), time since its previous frame ``dt (B,)`` (s) and ``fresh (B,)``
    (state just reset: the filter starts over at the raw pose). ``state``: ``(sq (B, MAX_STAGES, J, 4), sdq (B, J,
    4), sr (B, MAX_STAGES, 3), sdr (B, 3))`` each stage's estimate and the first stage's speeds, returned updated
    as the last four results (stages past ``cfg.stages`` are left as they are).
    -> ``(q_out (B, J, 4), root_out (B, 3), sq, sdq, sr, sdr)``; a stream whose gate is shut gets its raw pose.
    :func:`rtik.solve.kernels.smooth` computes the same in place."""
    raw = q
    q = np.asarray(q, dtype=np.float64)
    root = np.asarray(root, dtype=np.float64)
    sq, sdq, sr, sdr = (np.array(a, dtype=np.float64) for a in state)
    dt = np.maximum(np.asarray(dt, dtype=np.float64), 1e-4)[:, None]
    fresh = np.asarray(fresh, bool)
    n = int(cfg.stages)
    # rotations: into the first stage's hemisphere, speed, speed-dependent cutoff (n times it for n stages)
    q = np.where((np.einsum("bjc,bjc->bj", q, sq[:, 0]) < 0)[..., None], -q, q)
    dq = (q - sq[:, 0]) / dt[..., None]
    sdq = sdq + _alpha(cfg.d_cutoff, dt)[..., None] * (dq - sdq)
    beta = cfg.beta * (np.minimum(1.0, cfg.beta_hz * dt) ** cfg.beta_power if cfg.beta_hz else 1.0)  # (B, 1)
    cut = cfg.min_cutoff + np.asarray(beta)[..., None] * np.linalg.norm(sdq, axis=-1, keepdims=True)
    a = _alpha(n * cut, dt[..., None])
    x = q
    for k in range(n):
        x = np.where((np.einsum("bjc,bjc->bj", x, sq[:, k]) < 0)[..., None], -x, x)
        sq[:, k] = sq[:, k] + a * (x - sq[:, k])
        sq[:, k] /= np.linalg.norm(sq[:, k], axis=-1, keepdims=True)
        x = sq[:, k]
    # root
    dr = (root - sr[:, 0]) / dt
    sdr = sdr + _alpha(cfg.d_cutoff, dt) * (dr - sdr)
    rcut = cfg.root_min_cutoff + cfg.root_beta * np.linalg.norm(sdr, axis=-1, keepdims=True)
    a = _alpha(n * rcut, dt)
    x = root
    for k in range(n):
        sr[:, k] = sr[:, k] + a * (x - sr[:, k])
        x = sr[:, k]
    # fresh streams start over at the raw pose
    sq[:, :n] = np.where(fresh[:, None, None, None], q[:, None], sq[:, :n])
    sdq = np.where(fresh[:, None, None], 0.0, sdq)
    sr[:, :n] = np.where(fresh[:, None, None], root[:, None], sr[:, :n])
    sdr = np.where(fresh[:, None], 0.0, sdr)
    out_q, out_r = sq[:, n - 1], sr[:, n - 1]
    out_q = np.where((np.einsum("bjc,bjc->bj", out_q, q) < 0)[..., None], -out_q, out_q)
    w = gate(cfg, noise)[:, None]
    qo = q + w[..., None] * (out_q - q)
    qo /= np.linalg.norm(qo, axis=-1, keepdims=True)
    shut = w[:, 0] == 0
    qo[shut] = np.asarray(raw, dtype=np.float64)[shut]
    ro = root + w * (out_r - root)
    return qo, ro, sq, sdq, sr, sdr


def config_array(cfg: SmoothConfig) -> np.ndarray:
    """``cfg`` as the float array :func:`rtik.solve.kernels.smooth` takes: ``[sigma, min_cutoff, beta,
    root_min_cutoff, root_beta, d_cutoff, GATE_MIN, beta_hz, beta_power, stages, gate_power]`` (``beta_hz`` 0
    for None)."""
    return np.array(
        [cfg.sigma, cfg.min_cutoff, cfg.beta, cfg.root_min_cutoff, cfg.root_beta, cfg.d_cutoff, GATE_MIN,
         cfg.beta_hz or 0.0, cfg.beta_power, float(cfg.stages), cfg.gate_power]
    )  # fmt: skip
