"""MediaPipe Pose (BlazePose GHUM 3D, the "full" model) through MediaPipe's Tasks API, offline.

The models come with rtik: ``models/pose_landmarker_full.task`` is the bundle of the detector and the landmark
model of the ``mediapipe==0.10.21`` wheel with their metadata (:mod:`rtik.video.bundle` builds it; Apache-2.0,
``models/NOTICE``), so nothing is downloaded at run time. ``mediapipe>=1.2`` (the ``video`` extra) runs it.

World landmarks are metres, hip-centred, in camera axes (x right, y down, z away); image landmarks come normalised
to the image and are returned in pixels.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

import numpy as np

from rtik.errors import BackendError, InputError
from rtik.formats.layouts import MEDIAPIPE33
from rtik.video.estimator import Landmarks, PoseEstimator

#: the shipped bundle
TASK = Path(__file__).resolve().parent / "models" / "pose_landmarker_full.task"


log = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet():
    """MediaPipe's native code logs to file descriptor 2 (model loading, per-frame notes) with no switch to turn
    it down: it is sent to /dev/null while MediaPipe runs, unless this module's logger is at DEBUG (``-vv``)."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _tasks():
    """MediaPipe's Tasks modules, or a :class:`BackendError` saying how to install them."""
    os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ log: warnings and errors only
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision
    except ImportError as e:
        raise BackendError(f'MediaPipe is not installed ({e}); pip install "rtik[video]"') from e
    return mp, BaseOptions, vision


class MediaPipePose(PoseEstimator):
    """One person's 33 landmarks per frame (:data:`~rtik.formats.layouts.MEDIAPIPE33`).

    Args:
        mode: ``"video"`` (tracks from frame to frame; timestamps must increase) or ``"image"``.
        task: the ``.task`` bundle (default: the shipped one).
        min_detection, min_presence, min_tracking: MediaPipe's confidence thresholds in [0, 1].
    """

    joints = MEDIAPIPE33

    def __init__(self, mode: str = "video", task: Path | None = None, min_detection: float = 0.5,
                 min_presence: float = 0.5, min_tracking: float = 0.5):  # fmt: skip
        self._mp, BaseOptions, vision = _tasks()
        path = Path(task) if task is not None else TASK
        if not path.is_file():
            raise BackendError(f"pose model bundle not found: {path}")
        for name, v in (("min_detection", min_detection), ("min_presence", min_presence),
                        ("min_tracking", min_tracking)):  # fmt: skip
            if not 0.0 <= v <= 1.0:
                raise InputError(f"{name} must be in [0, 1], got {v}")
        running = vision.RunningMode.VIDEO if mode == "video" else vision.RunningMode.IMAGE
        opts = vision.PoseLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)), running_mode=running, num_poses=1,
            min_pose_detection_confidence=min_detection, min_pose_presence_confidence=min_presence,
            min_tracking_confidence=min_tracking,
        )  # fmt: skip
        try:
            with _quiet():
                self._lm = vision.PoseLandmarker.create_from_options(opts)
        except (RuntimeError, ValueError, OSError) as e:
            raise BackendError(f"cannot load the pose model {path}: {e}") from e
        self._video = mode == "video"
        self._last_ms = -1

    def estimate(self, rgb: np.ndarray, timestamp: float) -> Landmarks | None:
        img = np.ascontiguousarray(rgb, dtype=np.uint8)
        if img.ndim != 3 or img.shape[2] != 3:
            raise InputError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=img)
        if self._video:
            ms = max(int(round(timestamp * 1000.0)), self._last_ms + 1)  # strictly increasing, as the graph needs
            self._last_ms = ms
            with _quiet():
                res = self._lm.detect_for_video(image, ms)
        else:
            with _quiet():
                res = self._lm.detect(image)
        if not res.pose_world_landmarks:
            return None
        h, w = img.shape[:2]
        world = np.array([(p.x, p.y, p.z) for p in res.pose_world_landmarks[0]], np.float32)
        norm = res.pose_landmarks[0]
        image_px = np.array([(p.x * w, p.y * h) for p in norm], np.float32)
        vis = np.array([p.visibility if p.visibility is not None else 0.0 for p in norm], np.float32)
        return Landmarks(world, image_px, np.clip(vis, 0.0, 1.0))

    def close(self) -> None:
        lm, self._lm = getattr(self, "_lm", None), None
        if lm is not None:
            with _quiet():
                lm.close()
