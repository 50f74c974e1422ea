"""A whole video into a :class:`~rtik.video.landmarks.Track`: every frame through a pose estimator, in order."""

from __future__ import annotations

from collections.abc import Callable

from rtik.errors import InputError
from rtik.video.estimator import PoseEstimator, open_estimator
from rtik.video.frames import open_video
from rtik.video.landmarks import Track, stack


def track_video(path, estimator: PoseEstimator | None = None, start: float = 0.0, end: float | None = None,
                fps: float | None = None, progress: Callable[[int], object] | None = None) -> Track:  # fmt: skip
    """Landmarks of the person in the video at ``path`` on every frame with ``start <= time < end`` (s).

    Args:
        estimator: a fresh estimator in ``video`` mode (default: MediaPipe, opened and closed here).
        fps: overrides the container's frame rate.
        progress: called with 1 after each frame.

    Raises :class:`~rtik.errors.InputError` for a file that is not a readable video or has no frame in the range;
    frames with no person are kept (``detected`` False)."""
    own = estimator is None
    est = open_estimator("mediapipe", "video") if own else estimator
    try:
        with open_video(path, fps) as video:
            found, t0 = [], None
            for _, t, rgb in video.frames(start, end):
                t0 = t if t0 is None else t0
                lm = est.estimate(rgb, t)
                found.append(None if lm is None else tuple(lm))
                if progress is not None:
                    progress(1)
            if not found:
                until = "the end" if end is None else f"{end:g} s"
                raise InputError(f"{path}: no frame between {start:g} s and {until}")
            return stack(found, video.info.fps, video.info.size, t0)
    finally:
        if own:
            est.close()
