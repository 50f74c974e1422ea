"""Input conditions: the corruptions under which accuracy is measured (and with which training augments).

Numpy only. Every function takes joint positions ``(F, J, 3)`` in metres (any float dtype, kept) and a seeded
``np.random.Generator``, never touches its input, and is deterministic for a given generator state. Masks are
``(F, J)`` bool, ``True`` = observed. Missing positions are ``fill`` (``nan`` by default, so that a consumer
that forgets the mask fails loudly; pass ``fill=0.0`` for the network's convention).

The named conditions (DESIGN "How accuracy is measured"):

============  ==========================================================================================
``clean``     the positions as they are
``noise10``   Gaussian noise, sigma = 10 mm per coordinate, independent per frame, joint and axis
``occlusion`` joints missing for 0.5 s spans, onsets at 0.2 per joint per second (about 9 % missing)
``outliers``  1 % of joint samples displaced by 10 cm in a uniformly random direction
============  ==========================================================================================

Beyond the default four, ``monocular`` is a pose estimator's error from one camera: Gaussian noise of 15 mm per
coordinate and 30 mm more along the camera's viewing ray (one horizontal direction per clip), independent per
frame and joint; ``rtik eval --conditions monocular`` asks for it.
"""

from __future__ import annotations

import numpy as np

from rtik.errors import InputError

NOISE_SIGMA = 0.010  # m, per coordinate (noise10)
OCCLUSION_SPAN = 0.5  # s, length of one missing span
OCCLUSION_RATE = 0.2  # span onsets per joint per second
OUTLIER_FRACTION = 0.01  # of joint samples
OUTLIER_DISTANCE = 0.10  # m

MONO_SIGMA = 0.015  # m, per coordinate (monocular)
MONO_DEPTH = 0.030  # m, more along the viewing ray (monocular)

#: the named conditions, in table order (the default set)
CONDITIONS = ("clean", "noise10", "occlusion", "outliers")
#: every condition ``rtik eval --conditions`` accepts; a condition's index here seeds its corruption
ALL_CONDITIONS = (*CONDITIONS, "monocular")


def _check(positions) -> np.ndarray:
    P = np.asarray(positions)
    if P.ndim != 3 or P.shape[-1] != 3:
        raise InputError(f"positions has shape {P.shape}, expected (F, J, 3)")
    if P.dtype not in (np.float32, np.float64):
        P = P.astype(np.float64)
    return P


def gaussian_noise(positions, rng: np.random.Generator, sigma: float = NOISE_SIGMA) -> np.ndarray:
    """``positions (F, J, 3)`` plus i.i.d. Gaussian noise of standard deviation ``sigma`` (metres) per
    coordinate."""
    P = _check(positions)
    if sigma < 0:
        raise InputError(f"noise sigma must be >= 0, got {sigma}")
    return (P + rng.normal(0.0, sigma, size=P.shape)).astype(P.dtype)


def occlusion_mask(
    shape: tuple[int, int],
    fps: float,
    rng: np.random.Generator,
    span: float = OCCLUSION_SPAN,
    rate: float = OCCLUSION_RATE,
    joints=None,
) -> np.ndarray:
    """Observation mask ``(F, J)`` bool with missing spans.

    Each joint (of ``joints``, an index array; all by default) independently starts a missing span of ``span``
    seconds at each frame with probability ``rate / fps`` (a Poisson process of ``rate`` onsets per second);
    overlapping spans merge. The first frame is always complete, so a stream starts from a full pose (bone
    lengths can be calibrated, a hold-last filler has a value to hold). The missing fraction is about
    ``1 - exp(-rate * span)``.
    """
    F, J = shape
    if fps <= 0:
        raise InputError(f"fps must be positive, got {fps}")
    if span < 0 or rate < 0:
        raise InputError(f"occlusion span and rate must be >= 0, got span={span}, rate={rate}")
    n = max(1, int(round(span * fps)))  # frames per span
    onsets = rng.random((F, J)) < rate / fps
    onsets[0] = False
    if joints is not None:
        keep = np.zeros(J, dtype=bool)
        keep[np.asarray(joints, dtype=np.int64)] = True
        onsets &= keep
    # frame f is missing if a span started in (f - n, f]: a running count of onsets over a window of n frames
    c = np.cumsum(onsets, axis=0, dtype=np.int64)
    window = c.copy()
    window[n:] -= c[:-n]
    return window == 0


def occlude(
    positions,
    fps: float,
    rng: np.random.Generator,
    span: float = OCCLUSION_SPAN,
    rate: float = OCCLUSION_RATE,
    joints=None,
    fill: float = np.nan,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions with missing spans (see :func:`occlusion_mask`) set to ``fill``, and the mask ``(F, J)``."""
    P = _check(positions)
    mask = occlusion_mask(P.shape[:2], fps, rng, span, rate, joints)
    out = P.copy()
    out[~mask] = fill
    return out, mask


def random_directions(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, 3)`` unit vectors uniform on the sphere."""
    v = rng.normal(size=(n, 3))
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(norm, 1e-12)


def outliers(
    positions, rng: np.random.Generator, fraction: float = OUTLIER_FRACTION, distance: float = OUTLIER_DISTANCE
) -> tuple[np.ndarray, np.ndarray]:
    """A ``fraction`` of joint samples (frame, joint) displaced by ``distance`` metres in random directions.

    Returns ``(positions (F, J, 3), hit (F, J) bool)``; ``hit`` marks the displaced samples (they stay
    *observed*: an outlier is a wrong measurement, not a missing one). The number displaced is
    ``round(fraction * F * J)``, drawn without replacement.
    """
    P = _check(positions)
    if not 0.0 <= fraction <= 1.0:
        raise InputError(f"outlier fraction must be in [0, 1], got {fraction}")
    F, J = P.shape[:2]
    k = int(round(fraction * F * J))
    hit = np.zeros(F * J, dtype=bool)
    hit[rng.choice(F * J, size=k, replace=False)] = True
    hit = hit.reshape(F, J)
    out = P.copy()
    out[hit] += (distance * random_directions(rng, k)).astype(P.dtype)
    return out, hit


def apply_condition(name: str, positions, fps: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Apply the named condition (one of :data:`CONDITIONS`) to ``positions (F, J, 3)`` metres.

    Returns ``(positions (F, J, 3), mask (F, J) bool)``: missing joints (``occlusion``) are ``nan`` and
    ``False`` in the mask; every other condition observes everything. The input is not modified.
    """
    P = _check(positions)
    full = np.ones(P.shape[:2], dtype=bool)
    if name == "clean":
        return P.copy(), full
    if name == "noise10":
        return gaussian_noise(P, rng, NOISE_SIGMA), full
    if name == "occlusion":
        return occlude(P, fps, rng)
    if name == "outliers":
        return outliers(P, rng)[0], full
    if name == "monocular":
        a = rng.uniform(0.0, 2.0 * np.pi)
        ray = np.array([np.cos(a), 0.0, np.sin(a)])
        depth = rng.normal(0.0, MONO_DEPTH, P.shape[:2])[..., None] * ray
        return (gaussian_noise(P, rng, MONO_SIGMA) + depth).astype(P.dtype), full
    raise InputError(f"unknown input condition {name!r}; valid conditions: {', '.join(ALL_CONDITIONS)}")


def parse_conditions(text: str) -> tuple[str, ...]:
    """Comma-separated condition names -> tuple, each validated (the error lists the valid names)."""
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    if not names:
        raise InputError(f"no input condition given; valid conditions: {', '.join(ALL_CONDITIONS)}")
    for n in names:
        if n not in ALL_CONDITIONS:
            raise InputError(f"unknown input condition {n!r}; valid conditions: {', '.join(ALL_CONDITIONS)}")
    return names
