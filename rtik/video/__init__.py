"""Video and camera input: pose estimation turns frames into landmarks the solver reads (``rtik video``,
``rtik capture``; docs/video.md).

- :mod:`rtik.video.estimator`: the estimator seam (frames in, landmarks + visibility out) and ``open_estimator``;
- :mod:`rtik.video.mediapipe_pose`: MediaPipe Pose through the Tasks API and the bundle shipped in ``models/``;
- :mod:`rtik.video.frames`: frames from video files and cameras (OpenCV);
- :mod:`rtik.video.landmarks`: landmarks over time into solver input (root translation, floor, gaps): numpy only;
- :mod:`rtik.video.track`: a whole video into a :class:`~rtik.video.landmarks.Track`;
- :mod:`rtik.video.preview`: a contact sheet of video frames beside the solved skeleton;
- :mod:`rtik.video.capture`: a camera (or a looped file) as a live source of the daemon;
- :mod:`rtik.video.bundle`: how ``models/pose_landmarker_full.task`` is built.

Importing this package loads nothing heavy: OpenCV and MediaPipe (the ``video`` extra) are imported by the
functions that need them.
"""
