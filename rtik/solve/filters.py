"""Causal smoothing of position streams: the One Euro filter, and hold-last filling of missing samples. Numpy only.

One Euro (Casiez, Roussel and Vogel, CHI 2012): an exponential low-pass whose cutoff rises with speed, so slow
motion is smoothed hard (little jitter) and fast motion lightly (little lag)::

    alpha(fc, dt) = 1 / (1 + 1 / (2 pi fc dt))
    dx  = (x - x_hat_prev) / dt;           dx_hat = dx_hat_prev + alpha(d_cutoff, dt) (dx - dx_hat_prev)
    fc  = min_cutoff + beta |dx_hat|;      x_hat  = x_hat_prev  + alpha(fc, dt) (x - x_hat_prev)

Each coordinate of each joint is one scalar signal, as in the paper; cutoffs in Hz, ``beta`` in 1/(length
unit), speeds in length units per second (metres -> ``beta`` per m/s). Missing samples (mask ``False`` or
``nan``) leave a joint's state untouched and output its last estimate; the next sample's ``dt`` spans the gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtik.errors import InputError


@dataclass(frozen=True)
class OneEuroConfig:
    """Fields: ``min_cutoff`` Hz (smoothing at rest), ``beta`` (speed coefficient, 1 / length unit),
    ``d_cutoff`` Hz (cutoff of the speed estimate)."""

    min_cutoff: float = 1.0
    beta: float = 1.0
    d_cutoff: float = 1.0

    def __post_init__(self):
        if self.min_cutoff <= 0 or self.d_cutoff <= 0 or self.beta < 0:
            raise InputError(
                f"One Euro needs min_cutoff > 0, d_cutoff > 0, beta >= 0; got min_cutoff={self.min_cutoff}, "
                f"beta={self.beta}, d_cutoff={self.d_cutoff}"
            )


def _alpha(cutoff, dt):
    return 1.0 / (1.0 + 1.0 / (2.0 * np.pi * cutoff * dt))


class OneEuroFilter:
    """A causal One Euro filter over ``J`` joints' positions ``(J, 3)``, one frame at a time.

    ``fps`` fixes the frame period; a joint missing for ``n`` frames gets ``dt = (n + 1) / fps`` on its next
    sample. Before a joint's first sample its output is ``nan``.
    """

    def __init__(self, num_joints: int, fps: float, config: OneEuroConfig | None = None):
        if fps <= 0:
            raise InputError(f"fps must be positive, got {fps}")
        self.config = config or OneEuroConfig()
        self.fps = float(fps)
        self.num_joints = int(num_joints)
        self.reset()

    def reset(self) -> None:
        """Forget all state (as for a new stream)."""
        J = self.num_joints
        self.x = np.full((J, 3), np.nan)  # last estimate
        self.dx = np.zeros((J, 3))  # last speed estimate, units/s
        self.gap = np.ones(J)  # frames since each joint's last sample

    def __call__(self, positions, mask=None) -> np.ndarray:
        """Filter one frame ``(J, 3)``; ``mask (J,)`` bool marks observed joints. Returns ``(J, 3)`` float64."""
        x = np.asarray(positions, dtype=np.float64)
        if x.shape != (self.num_joints, 3):
            raise InputError(f"positions has shape {x.shape}, expected ({self.num_joints}, 3)")
        seen = np.all(np.isfinite(x), axis=-1)
        if mask is not None:
            seen &= np.asarray(mask, dtype=bool).reshape(self.num_joints)
        c = self.config
        first = seen & np.isnan(self.x[:, 0])
        upd = seen & ~first
        if np.any(upd):
            dt = (self.gap[upd] / self.fps)[:, None]  # (n, 1)
            prev = self.x[upd]
            dx = (x[upd] - prev) / dt
            dx_hat = self.dx[upd] + _alpha(c.d_cutoff, dt) * (dx - self.dx[upd])
            cutoff = c.min_cutoff + c.beta * np.abs(dx_hat)
            self.x[upd] = prev + _alpha(cutoff, dt) * (x[upd] - prev)
            self.dx[upd] = dx_hat
        self.x[first] = x[first]
        self.dx[first] = 0.0
        self.gap[seen] = 1.0
        self.gap[~seen] += 1.0
        return self.x.copy()


def one_euro(positions, fps: float, mask=None, config: OneEuroConfig | None = None) -> np.ndarray:
    """Filter a whole sequence ``(F, J, 3)`` causally (frame ``f`` sees frames ``<= f`` only);
    ``mask (F, J)``. Returns ``(F, J, 3)`` float64 (``nan`` before a joint's first sample)."""
    P = np.asarray(positions, dtype=np.float64)
    if P.ndim != 3 or P.shape[-1] != 3:
        raise InputError(f"positions has shape {P.shape}, expected (F, J, 3)")
    f = OneEuroFilter(P.shape[1], fps, config)
    out = np.empty_like(P)
    for i in range(P.shape[0]):
        out[i] = f(P[i], None if mask is None else mask[i])
    return out


def hold_last(positions, mask=None, parents=None) -> np.ndarray:
    """Fill missing samples causally with each joint's last observed position.

    ``positions (F, J, 3)``, ``mask (F, J)`` (``nan`` counts as missing too). A joint not yet seen takes its
    parent's filled position when ``parents (J,)`` is given (a zero-length bone until it shows up), else stays
    ``nan``. Returns ``(F, J, 3)`` float64.
    """
    P = np.array(positions, dtype=np.float64)
    if P.ndim != 3 or P.shape[-1] != 3:
        raise InputError(f"positions has shape {P.shape}, expected (F, J, 3)")
    seen = np.all(np.isfinite(P), axis=-1)
    if mask is not None:
        seen &= np.asarray(mask, dtype=bool)
    F, J = seen.shape
    # index of the last observed frame at or before f, per joint (-1 = none yet)
    idx = np.where(seen, np.arange(F)[:, None], -1)
    idx = np.maximum.accumulate(idx, axis=0)
    out = np.take_along_axis(P, np.maximum(idx, 0)[..., None], axis=0)
    out[idx < 0] = np.nan
    if parents is not None:
        for j in range(J):
            p = int(parents[j])
            if p >= 0:
                none = idx[:, j] < 0
                out[none, j] = out[none, p]
    return out
