"""Pose-estimation landmarks over time, and how they become solver input: numpy only.

A :class:`Track` holds what an estimator saw on every frame of a video: MediaPipe Pose's 33 landmarks in metres
(hip-centred, camera axes: x right, y down, z away from the camera), in the image (pixels), and their visibility.
:func:`solver_input` turns it into the ``mediapipe33`` layout's positions (metres, Y up, the model's world) and a
mask, with

- **root translation** from the landmarks' image positions: with a pinhole camera of a known horizontal field of
  view (principal point at the image centre, no lens distortion, camera still and level), the image position of
  every landmark is a linear function of the body's translation ``T``, solved by weighted least squares per frame
  (:func:`camera_translation`), then smoothed; or none (``root="fixed"``: the hips above the origin);
- **a floor**: heights are shifted so that the feet (heels, foot tips, ankles) stand at y = 0, and the first frame
  with a person has its hips above the origin;
- **frames with no person** held (the last seen pose repeats; before the first detection, the first one) or cut.

Symbols: ``T`` frames, ``K`` = 33 landmarks, ``(W, H)`` image size in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtik.errors import InputError
from rtik.formats.layouts import MEDIAPIPE33

#: camera axes (x right, y down, z away) -> the model's world (x right, Y up, z towards the camera)
TO_Y_UP = np.array([1.0, -1.0, -1.0])
#: landmarks the floor is measured from
FEET = tuple(MEDIAPIPE33.index(n) for n in ("left_heel", "right_heel", "left_foot_index", "right_foot_index"))
#: the landmarks MediaPipe's world coordinates are centred on: always observed where a person is
HIPS = (MEDIAPIPE33.index("left_hip"), MEDIAPIPE33.index("right_hip"))
#: how frames without a person are handled by :func:`solver_input`
GAPS = ("hold", "cut")
#: root translation: from the image (``camera``) or none (``fixed``)
ROOTS = ("camera", "fixed")


@dataclass(frozen=True)
class Track:
    """Landmarks of one person over ``T`` frames of a video.

    Fields:
        world: ``(T, K, 3)`` float32 metres, hip-centred, camera axes (x right, y down, z away); NaN where no
            person was found.
        image: ``(T, K, 2)`` float32 pixels (x right, y down from the top-left corner); NaN where no person.
        visibility: ``(T, K)`` float32 in [0, 1], the estimator's confidence that the landmark is in view and
            unoccluded; 0 where no person.
        detected: ``(T,)`` bool, a person was found on the frame.
        fps: frames per second of the video (Hz).
        size: ``(W, H)`` image size in pixels.
        start: time of the first frame in the video (s).
        joints: the landmark names (``MEDIAPIPE33``).
    """

    world: np.ndarray
    image: np.ndarray
    visibility: np.ndarray
    detected: np.ndarray
    fps: float
    size: tuple[int, int]
    start: float = 0.0
    joints: tuple[str, ...] = MEDIAPIPE33

    def __post_init__(self):
        T, K = self.visibility.shape
        if self.world.shape != (T, K, 3) or self.image.shape != (T, K, 2) or self.detected.shape != (T,):
            raise InputError(
                f"track arrays disagree: world {self.world.shape}, image {self.image.shape}, visibility "
                f"{self.visibility.shape}, detected {self.detected.shape}"
            )
        if K != len(self.joints):
            raise InputError(f"track has {K} landmarks and {len(self.joints)} names")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise InputError(f"track fps must be positive, got {self.fps}")

    def __len__(self) -> int:
        return len(self.detected)


def stack(frames, fps: float, size, start: float = 0.0) -> Track:
    """A :class:`Track` from per-frame estimator results: each ``(world (K, 3), image (K, 2), visibility (K,))``
    or None where no person was found."""
    frames = list(frames)
    K = len(MEDIAPIPE33)
    T = len(frames)
    world = np.full((T, K, 3), np.nan, np.float32)
    image = np.full((T, K, 2), np.nan, np.float32)
    vis = np.zeros((T, K), np.float32)
    detected = np.zeros(T, bool)
    for t, f in enumerate(frames):
        if f is not None:
            world[t], image[t], vis[t] = f
            detected[t] = True
    return Track(world, image, vis, detected, float(fps), (int(size[0]), int(size[1])), float(start))


def focal_px(width: int, fov_deg: float) -> float:
    """Focal length in pixels of a pinhole camera ``width`` pixels wide with horizontal field of view ``fov_deg``."""
    if not 1.0 <= fov_deg <= 179.0:
        raise InputError(f"field of view must be between 1 and 179 degrees, got {fov_deg}")
    return 0.5 * width / np.tan(np.radians(fov_deg) / 2)


def camera_translation(world, image, weights, size, fov_deg: float) -> np.ndarray:
    """The body's translation from the camera, per frame: ``(T, 3)`` metres in camera axes, NaN where a frame has
    fewer than 3 weighted landmarks.

    A landmark at ``X`` (hip-centred, camera axes) is seen at pixel ``u = f (X_x + T_x) / (X_z + T_z) + c_x``, and
    likewise for ``v``; multiplied out, ``a T_z - T_x = X_x - a X_z`` with ``a = (u - c_x) / f``: two equations
    per landmark, linear in ``T``, solved by least squares weighted by ``weights (T, K)`` (visibility).

    Args:
        world: ``(T, K, 3)`` metres; image: ``(T, K, 2)`` pixels; size: ``(W, H)``; fov_deg: horizontal field of
            view (degrees).
    """
    world, image = np.asarray(world, np.float64), np.asarray(image, np.float64)
    w = np.where(np.isfinite(world).all(-1) & np.isfinite(image).all(-1), np.asarray(weights, np.float64), 0.0)
    f = focal_px(size[0], fov_deg)
    c = np.array([size[0], size[1]], np.float64) / 2
    a = (np.nan_to_num(image) - c) / f  # (T, K, 2)
    X = np.nan_to_num(world)
    T, K = w.shape
    out = np.full((T, 3), np.nan)
    for t in range(T):
        if np.count_nonzero(w[t] > 0) < 3:
            continue
        A = np.zeros((2 * K, 3))
        A[:K, 0] = -1.0
        A[K:, 1] = -1.0
        A[:K, 2], A[K:, 2] = a[t, :, 0], a[t, :, 1]
        b = np.concatenate([X[t, :, 0] - a[t, :, 0] * X[t, :, 2], X[t, :, 1] - a[t, :, 1] * X[t, :, 2]])
        sw = np.sqrt(np.concatenate([w[t], w[t]]))
        sol, *_ = np.linalg.lstsq(A * sw[:, None], b * sw, rcond=None)
        if sol[2] > 0:  # in front of the camera
            out[t] = sol
    return out


def smooth(x, window: int) -> np.ndarray:
    """Centred moving average of ``x (T, D)`` over ``window`` frames within each run of finite rows (NaN rows split
    runs and stay NaN); the window shrinks at a run's ends."""
    x = np.asarray(x, np.float64)
    out = x.copy()
    if window <= 1:
        return out
    ok = np.isfinite(x).all(-1)
    h = window // 2
    t = 0
    while t < len(x):
        if not ok[t]:
            t += 1
            continue
        e = t
        while e < len(x) and ok[e]:
            e += 1
        run = x[t:e]
        csum = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(run, axis=0)])
        i = np.arange(e - t)
        lo, hi = np.maximum(i - h, 0), np.minimum(i + h + 1, e - t)
        out[t:e] = (csum[hi] - csum[lo]) / (hi - lo)[:, None]
        t = e
    return out


def held_indices(detected) -> np.ndarray:
    """``(T,)`` int: for each frame, the frame whose landmarks it shows when frames with no person are held (the
    last detected one; before the first detection, the first). Raises :class:`InputError` when no frame has a
    person."""
    detected = np.asarray(detected, bool)
    if not detected.any():
        raise InputError(f"no person found in any of the {len(detected)} frames")
    idx = np.where(detected, np.arange(len(detected)), -1)
    idx = np.maximum.accumulate(idx)
    idx[idx < 0] = int(np.argmax(detected))
    return idx


@dataclass(frozen=True)
class SolverInput:
    """What the solver reads: the ``mediapipe33`` layout in metres, Y up.

    Fields:
        positions: ``(F, K, 3)`` float64 metres, Y up (the model's world), floor at y = 0.
        mask: ``(F, K)`` bool, observed landmarks.
        frames: ``(F,)`` int, the track (video) frame each row stands for.
        source: ``(F,)`` int, the track frame whose landmarks each row has (another one where a frame is held).
        fps: frames per second (Hz).
    """

    positions: np.ndarray
    mask: np.ndarray
    frames: np.ndarray
    source: np.ndarray
    fps: float

    @property
    def held(self) -> np.ndarray:
        """``(F,)`` bool: rows with no person of their own, holding another frame's pose."""
        return self.frames != self.source


def solver_input(track: Track, gaps: str = "hold", root: str = "camera", fov_deg: float = 60.0,
                 min_visibility: float = 0.5, smooth_s: float = 0.2) -> SolverInput:  # fmt: skip
    """Positions and mask for the solver from ``track`` (see the module docstring).

    Args:
        gaps: ``"hold"`` (frames with no person repeat the last seen pose; the output keeps every video frame) or
            ``"cut"`` (they are left out).
        root: ``"camera"`` (translation from the image, see :func:`camera_translation`) or ``"fixed"``.
        fov_deg: the camera's horizontal field of view (degrees), for ``root="camera"``.
        min_visibility: landmarks below it are masked as missing (the hips never are: they are the origin).
        smooth_s: the translation's moving-average window (s).
    """
    if gaps not in GAPS:
        raise InputError(f"unknown gap handling {gaps!r}; valid: {', '.join(GAPS)}")
    if root not in ROOTS:
        raise InputError(f"unknown root {root!r}; valid: {', '.join(ROOTS)}")
    src = held_indices(track.detected)
    world = track.world.astype(np.float64)
    if root == "camera":
        trans = camera_translation(world, track.image, track.visibility, track.size, fov_deg)
        trans = smooth(trans, max(1, int(round(smooth_s * track.fps)) | 1))
        missing = ~np.isfinite(trans).all(-1)
        trans[missing] = 0.0
        if missing[track.detected].any():  # a detected frame whose translation failed: its nearest neighbour's
            good = np.flatnonzero(~missing)
            if len(good):
                near = good[np.abs(good[None, :] - np.arange(len(trans))[:, None]).argmin(1)]
                trans = trans[near]
    else:
        trans = np.zeros((len(track), 3))
    pos = (world + trans[:, None, :]) * TO_Y_UP  # (T, K, 3) Y up, camera at the origin
    mask = track.visibility >= min_visibility
    mask[:, list(HIPS)] = True
    frames = np.arange(len(track)) if gaps == "hold" else np.flatnonzero(track.detected)
    src = src[frames]
    pos, mask = pos[src], mask[src]
    # the first frame's hips above the origin, the feet on the floor
    hips0 = pos[0, list(HIPS)].mean(0)
    pos = pos - np.array([hips0[0], 0.0, hips0[2]])
    floor = float(np.percentile(pos[:, list(FEET), 1].min(1), 5))
    pos[..., 1] -= floor
    return SolverInput(pos, mask, frames.astype(np.int64), src.astype(np.int64), track.fps)


def save(track: Track, path, solver: SolverInput | None = None) -> None:
    """Write ``track`` to an ``.npz`` (a path or a binary file) that ``rtik solve --layout mediapipe33`` reads:
    ``positions`` / ``mask`` / ``frames`` / ``source`` from ``solver`` (or from :func:`solver_input` with its
    defaults), ``joints``, ``fps``, ``units`` (``"m"``), and the raw estimate: ``world``, ``image``,
    ``visibility``, ``detected``, ``size``, ``start``."""
    s = solver if solver is not None else solver_input(track)
    np.savez_compressed(
        path, positions=s.positions.astype(np.float32), mask=s.mask, frames=s.frames, source=s.source,
        joints=np.array(track.joints),
        fps=np.float64(s.fps), units=np.array("m"), world=track.world, image=track.image,
        visibility=track.visibility, detected=track.detected, size=np.array(track.size), start=np.float64(track.start),
    )  # fmt: skip
