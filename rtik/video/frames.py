"""Frames from video files and cameras, through OpenCV (the ``video`` extra).

:func:`open_video` reads any file OpenCV's FFmpeg build reads and checks it first: a file that is missing,
empty, not a video, or without a frame rate raises :class:`~rtik.errors.InputError` naming it.
:func:`open_camera` opens a camera by index. Both yield RGB frames.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtik.errors import BackendError, InputError

#: file name endings taken from a folder (a single file of any name is tried)
SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".mts", ".gif")


def cv2():
    """OpenCV, or a :class:`BackendError` saying how to install it. FFmpeg's own log (a line per damaged packet)
    is silenced: what cannot be read is reported as an error or warning naming the file."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    try:
        import cv2 as _cv2
    except ImportError as e:
        raise BackendError(f'OpenCV is not installed ({e}); pip install "rtik[video]"') from e
    return _cv2


@dataclass(frozen=True)
class VideoInfo:
    """What a video says about itself. ``frames`` is the container's frame count (an estimate for some formats;
    0 when unknown); ``fps`` in Hz; ``size`` ``(W, H)`` pixels."""

    path: str
    fps: float
    frames: int
    size: tuple[int, int]


class Video:
    """An opened video file: :attr:`info`, and :meth:`frames` to read it once. Use as a context manager."""

    def __init__(self, path, fps: float | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such file")
        if self.path.stat().st_size == 0:
            raise InputError(f"{self.path}: empty file")
        cv = cv2()
        self._cap = cv.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise InputError(f"{self.path}: not a video OpenCV can read")
        rate = fps or self._cap.get(cv.CAP_PROP_FPS)
        if not (rate and math.isfinite(rate) and 0 < rate <= 1000):
            self.close()
            raise InputError(f"{self.path}: the video has no usable frame rate ({rate}); pass --fps")
        w, h = int(self._cap.get(cv.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv.CAP_PROP_FRAME_HEIGHT))
        n = self._cap.get(cv.CAP_PROP_FRAME_COUNT)
        self.info = VideoInfo(str(self.path), float(rate), int(n) if math.isfinite(n) and n > 0 else 0, (w, h))

    def frames(self, start: float = 0.0, end: float | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
        """``(index, time (s), rgb (H, W, 3) uint8)`` for frames with ``start <= time < end``, frame ``i`` at time
        ``i / fps``. Frames before ``start`` are decoded and skipped (seeking is not exact in every format).
        A video with no frame at all raises :class:`InputError`."""
        cv = cv2()
        fps, i = self.info.fps, 0
        while True:
            t = i / fps
            if end is not None and t >= end:
                return
            if t < start:
                if not self._cap.grab():
                    break
                i += 1
                continue
            ok, bgr = self._cap.read()
            if not ok or bgr is None:
                break
            yield i, t, cv.cvtColor(bgr, cv.COLOR_BGR2RGB)
            i += 1
        if i == 0:
            raise InputError(f"{self.path}: no frame could be decoded (empty or damaged video)")

    def close(self) -> None:
        cap, self._cap = getattr(self, "_cap", None), None
        if cap is not None:
            cap.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_video(path, fps: float | None = None) -> Video:
    """A checked :class:`Video`; ``fps`` overrides the container's frame rate."""
    return Video(path, fps)


def open_camera(index: int, width: int | None = None, height: int | None = None):
    """An OpenCV ``VideoCapture`` of camera ``index`` (``/dev/video<index>`` on Linux), optionally asking for a
    frame size; raises :class:`InputError` when it cannot be opened or gives no frame."""
    cv = cv2()
    cap = cv.VideoCapture(int(index))
    if not cap.isOpened():
        raise InputError(f"camera {index}: cannot be opened")
    cap.set(cv.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not one queued while the last was estimated
    if width:
        cap.set(cv.CAP_PROP_FRAME_WIDTH, int(width))
    if height:
        cap.set(cv.CAP_PROP_FRAME_HEIGHT, int(height))
    ok, _ = cap.read()
    if not ok:
        cap.release()
        raise InputError(f"camera {index}: opened but gives no frame")
    return cap
