"""A camera (or a video file standing in for one, looped) as a live source of the daemon.

Each frame goes through the pose estimator; the landmarks become one ``mediapipe33`` frame (metres, Y up, the
layout named in every frame, so the daemon opens the stream with it) and leave over the daemon's ZeroMQ ingest
(:class:`rtik.wire.client.Sender`). Frames with no person send nothing: the daemon holds the stream's last pose,
and closes the stream after its idle timeout. Root translation is :func:`rtik.video.landmarks.camera_translation`
per frame, smoothed causally (:class:`LiveInput`); the first frame with a person fixes the origin under its hips
and the floor under its feet.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from rtik.errors import InputError
from rtik.video.estimator import Landmarks
from rtik.video.landmarks import FEET, HIPS, ROOTS, TO_Y_UP, camera_translation


class LiveInput:
    """Landmarks of one frame -> ``(positions (K, 3) metres Y up, mask (K,) bool)`` for a live stream.

    Args:
        size: ``(W, H)`` of the frames (pixels; None: set by :func:`capture` from the first frame); fov_deg: the
            camera's horizontal field of view (degrees).
        root: ``"camera"`` (translation from the image, exponentially smoothed with time constant ``smooth_s``)
            or ``"fixed"`` (the hips stay above the origin).
        min_visibility: landmarks below it are sent as missing (the hips never are).
    """

    def __init__(self, size=None, fov_deg: float = 60.0, root: str = "camera", min_visibility: float = 0.5,
                 smooth_s: float = 0.15):  # fmt: skip
        if root not in ROOTS:
            raise InputError(f"unknown root {root!r}; valid: {', '.join(ROOTS)}")
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.fov, self.root = float(fov_deg), root
        self.min_visibility, self.smooth_s = float(min_visibility), float(smooth_s)
        self._trans: np.ndarray | None = None
        self._t: float | None = None
        self._offset: np.ndarray | None = None

    def __call__(self, lm: Landmarks, timestamp: float) -> tuple[np.ndarray, np.ndarray]:
        world = np.asarray(lm.world, np.float64)
        trans = np.zeros(3)
        if self.root == "camera" and self.size is not None:
            t = camera_translation(world[None], lm.image[None], lm.visibility[None], self.size, self.fov)[0]
            if np.isfinite(t).all():
                if self._trans is None or self._t is None:
                    self._trans = t
                else:
                    a = 1.0 - np.exp(-max(timestamp - self._t, 0.0) / max(self.smooth_s, 1e-6))
                    self._trans = self._trans + a * (t - self._trans)
                self._t = timestamp
            trans = self._trans if self._trans is not None else trans
        pos = (world + trans) * TO_Y_UP
        if self._offset is None:  # the first frame: hips above the origin, feet on the floor
            hips = pos[list(HIPS)].mean(0)
            self._offset = np.array([hips[0], pos[list(FEET), 1].min(), hips[2]])
        mask = np.asarray(lm.visibility) >= self.min_visibility
        mask[list(HIPS)] = True
        return pos - self._offset, mask


@dataclass
class CaptureStats:
    """Counts of one capture run: frames read, frames with a person, frames sent, frames the daemon's queue or
    the network dropped, and the seconds it ran."""

    read: int = 0
    seen: int = 0
    sent: int = 0
    dropped: int = 0
    seconds: float = 0.0


def file_frames(path, loop: bool = True) -> Iterator[tuple[float, np.ndarray]]:
    """``(time (s), rgb)`` of a video file paced at its frame rate as a camera would deliver them, started over
    at its end when ``loop``; time keeps increasing across loops."""
    from rtik.video.frames import open_video

    t0, n = time.perf_counter(), 0
    while True:
        with open_video(path) as video:
            fps = video.info.fps
            for _, _, rgb in video.frames():
                delay = t0 + n / fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                yield n / fps, rgb
                n += 1
        if not loop:
            return


def camera_frames(index: int, width: int | None = None, height: int | None = None):
    """``(time (s), rgb)`` from camera ``index`` as fast as it delivers them."""
    from rtik.video.frames import cv2, open_camera

    cv = cv2()
    cap = open_camera(index, width, height)
    t0 = time.perf_counter()
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                raise InputError(f"camera {index}: stopped delivering frames")
            yield time.perf_counter() - t0, cv.cvtColor(bgr, cv.COLOR_BGR2RGB)
    finally:
        cap.release()


def capture(frames, estimator, sender, live: LiveInput | None = None, count: int | None = None,
            seconds: float | None = None, on_frame=None) -> CaptureStats:  # fmt: skip
    """Run ``frames`` (``(time, rgb)`` pairs) through ``estimator`` and send each person's landmarks with
    ``sender`` (a :class:`rtik.wire.client.Sender` whose layout is ``mediapipe33``) until ``count`` frames are sent,
    ``seconds`` have passed, the frames end, or Ctrl+C. ``on_frame(stats)`` is called after every frame."""
    stats = CaptureStats()
    wall0, t_start = time.time(), time.perf_counter()
    try:
        for t, rgb in frames:
            stats.read += 1
            lm = estimator.estimate(rgb, t)
            if lm is not None:
                stats.seen += 1
                if live is None:
                    live = LiveInput()
                if live.size is None:
                    live.size = (rgb.shape[1], rgb.shape[0])
                pos, mask = live(lm, t)
                if sender.send(pos, timestamp=wall0 + t, mask=mask):
                    stats.sent += 1
                else:
                    stats.dropped += 1
            if on_frame is not None:
                on_frame(stats)
            if count is not None and stats.sent >= count:
                break
            if seconds is not None and time.perf_counter() - t_start >= seconds:
                break
    except KeyboardInterrupt:
        pass
    stats.seconds = time.perf_counter() - t_start
    return stats
