"""``rtik capture --camera 0 --stream actor1``: a webcam as a live source of the daemon.

Every camera frame goes through MediaPipe Pose (the ``video`` extra) and the person's 33 landmarks leave as one
``mediapipe33`` frame (metres, Y up) over the daemon's ZeroMQ ingest, so a webcam drives the daemon's outputs (a VMC
avatar, the pose feed, recordings) with nothing else installed. ``--video FILE`` stands in for the camera: the file
plays at its own frame rate, looped. Frames with no person send nothing (the daemon holds the last pose). Root
translation comes from the image for a still, level camera with the horizontal field of view ``--fov``
(``--root fixed``: none). docs/video.md, "a webcam into Unity through VMC".
"""

from __future__ import annotations

import sys

from rtik.commands.options import fraction
from rtik.commands.send import _positive as _positive_number
from rtik.commands.solve import _positive


def register(sub) -> None:
    p = sub.add_parser("capture", help="a webcam (or a looped video) as a live source of the daemon",
                       description=__doc__)  # fmt: skip
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", type=int, metavar="INDEX", help="camera index (/dev/video<INDEX> on Linux)")
    src.add_argument("--video", metavar="FILE", help="a video file standing in for the camera, played looped")
    p.add_argument("--stream", default="camera", help="stream name (default: %(default)s)")
    p.add_argument("--endpoint", default="tcp://127.0.0.1:7700", help="ZeroMQ ingest endpoint (default: %(default)s)")
    p.add_argument("--root", choices=("camera", "fixed"), default="camera",
                   help="root translation from the image for a still camera (default) or none")  # fmt: skip
    p.add_argument("--fov", type=_positive, default=60.0, help="the camera's horizontal field of view, degrees")
    p.add_argument("--min-visibility", type=fraction, default=0.5,
                   help="landmarks less visible than this are sent as missing (default: 0.5)")  # fmt: skip
    p.add_argument(
        "--width", type=_positive_number(int), default=None, help="ask the camera for this frame width (pixels)"
    )
    p.add_argument(
        "--height", type=_positive_number(int), default=None, help="ask the camera for this frame height (pixels)"
    )
    p.add_argument("--once", action="store_true", help="play --video once instead of looping it")
    p.add_argument("--count", type=_positive_number(int), default=None, metavar="N", help="stop after N frames sent")
    p.add_argument("--seconds", type=_positive, default=None, help="stop after this many seconds")
    from rtik.serve.security import add_client_args

    add_client_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from rtik.serve.security import client_keys_from_args
    from rtik.video.capture import LiveInput, camera_frames, capture, file_frames
    from rtik.video.estimator import open_estimator
    from rtik.video.frames import open_video
    from rtik.wire.client import Sender

    if args.video is not None:
        open_video(args.video).close()  # a clear error for a bad file before anything starts
        frames = file_frames(args.video, loop=not args.once)
        source = args.video
    else:
        frames = camera_frames(args.camera, args.width, args.height)
        source = f"camera {args.camera}"
    live = LiveInput(None, args.fov, args.root, args.min_visibility)
    with (
        open_estimator("mediapipe", "video") as est,
        Sender(args.stream, args.endpoint, layout="mediapipe33", curve=client_keys_from_args(args)) as tx,
    ):
        print(f"capture: {source} -> stream {args.stream!r} at {args.endpoint} (Ctrl+C stops)", file=sys.stderr)
        stats = capture(frames, est, tx, live, args.count, args.seconds)
    print(
        f"captured {stats.read} frames in {stats.seconds:.1f} s ({stats.read / max(stats.seconds, 1e-9):.1f} Hz): "
        f"a person on {stats.seen}, {stats.sent} sent, {stats.dropped} dropped"
    )
    return 0
