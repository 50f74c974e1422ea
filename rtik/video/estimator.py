"""The pose-estimator seam: frames in, landmarks and their visibility out.

An estimator is anything with :meth:`PoseEstimator.estimate`; each estimator lives in its own module and is named
in :data:`ESTIMATORS`, so another one is one new module. The solver never imports an estimator: what an estimator
returns becomes a :class:`~rtik.video.landmarks.Track`, and from there the ``mediapipe33`` layout.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

import numpy as np

from rtik.errors import InputError

#: estimator name -> "module:factory"; the factory takes ``(mode, **options)``
ESTIMATORS = {"mediapipe": "rtik.video.mediapipe_pose:MediaPipePose"}
#: ``video``: frames of one clip in order (the estimator may track from frame to frame); ``image``: unrelated images
MODES = ("video", "image")


class Landmarks(NamedTuple):
    """One person's landmarks on one frame.

    Fields:
        world: ``(K, 3)`` float32 metres, hip-centred, camera axes (x right, y down, z away from the camera).
        image: ``(K, 2)`` float32 pixels from the image's top-left corner (x right, y down).
        visibility: ``(K,)`` float32 in [0, 1].
    """

    world: np.ndarray
    image: np.ndarray
    visibility: np.ndarray


class PoseEstimator:
    """Finds one person's landmarks (the ``mediapipe33`` set, in its order) on RGB frames.

    Use as a context manager, or call :meth:`close`."""

    #: landmark names, in the order of :class:`Landmarks` rows
    joints: tuple[str, ...] = ()

    def estimate(self, rgb: np.ndarray, timestamp: float) -> Landmarks | None:
        """Landmarks of the person on ``rgb`` (``(H, W, 3)`` uint8, RGB), or None when there is none.
        ``timestamp`` (s) must increase from call to call in ``video`` mode."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the estimator's resources."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_estimator(name: str = "mediapipe", mode: str = "video", **options) -> PoseEstimator:
    """The estimator ``name`` (see :data:`ESTIMATORS`) in ``mode`` (see :data:`MODES`). Raises
    :class:`InputError` for an unknown name or mode, and :class:`~rtik.errors.BackendError` when the estimator's
    packages are not installed (``pip install "rtik[video]"``)."""
    if name not in ESTIMATORS:
        raise InputError(f"unknown pose estimator {name!r}; available: {', '.join(ESTIMATORS)}")
    if mode not in MODES:
        raise InputError(f"unknown estimator mode {mode!r}; valid: {', '.join(MODES)}")
    module, attr = ESTIMATORS[name].split(":")
    return getattr(importlib.import_module(module), attr)(mode, **options)
