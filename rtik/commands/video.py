"""``rtik video IN -o OUT.bvh``: a video through pose estimation and the solver into a BVH, offline.

IN is any file OpenCV reads (a folder in gives a folder out, taking the usual video file endings). MediaPipe Pose
(the model ships with rtik; the ``video`` extra installs the runtime) finds one person's 33 landmarks on every
frame; they go into the solver as the ``mediapipe33`` layout, through the same path as
``rtik solve LANDMARKS.npz --layout mediapipe33``, and come out as a BVH in the model's skeleton, in metres, at the
video's frame rate.

Frames with no person never stop the run: ``--gaps hold`` (default) repeats the last pose seen (the first one
before any), so the BVH has one frame per video frame and stays in step with the video; ``--gaps cut`` leaves
them out. A video with no person at all is an error. Root translation (``--root camera``, default) comes from
where the landmarks are in the image, for a still, level camera with the horizontal field of view ``--fov``
(default 60 degrees) and the feet on the floor (y = 0); ``--root fixed`` keeps the hips above the origin.
``--landmarks OUT.npz`` keeps the landmarks (``rtik solve`` reads the file); ``--preview OUT.png`` writes a
contact sheet of video frames beside the solved skeleton. A damaged or empty video is an error that leaves no
output behind (every file is written to a temporary name and renamed when complete). docs/video.md has more.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

from rtik.commands.options import fraction
from rtik.commands.solve import _positive, solve_file
from rtik.errors import InputError, RtikError


def register(sub) -> None:
    p = sub.add_parser("video", help="a video through pose estimation and the solver into a BVH", description=__doc__)
    p.add_argument("input", type=Path, help="a video file (anything OpenCV reads), or a folder of them")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .bvh file (a folder for a folder input)")
    p.add_argument("--landmarks", type=Path, default=None,
                   help="also write the landmarks to this .npz (a folder for a folder input)")  # fmt: skip
    p.add_argument(
        "--preview",
        type=Path,
        default=None,
        help="also write a contact sheet PNG of frames beside the solved skeleton (a folder for a folder)",
    )
    p.add_argument("--start", type=_seconds, default=0.0, help="first second of the video to use (default: 0)")
    p.add_argument("--end", type=_seconds, default=None, help="second of the video to stop at (default: its end)")
    p.add_argument("--gaps", choices=("hold", "cut"), default="hold",
                   help="frames with no person: hold the last pose (default) or cut them")  # fmt: skip
    p.add_argument("--root", choices=("camera", "fixed"), default="camera",
                   help="root translation from the image for a still camera (default) or none")  # fmt: skip
    p.add_argument("--fov", type=_positive, default=60.0, help="the camera's horizontal field of view, degrees")
    p.add_argument("--min-visibility", type=fraction, default=0.5,
                   help="landmarks less visible than this are missing to the solver (default: 0.5)")  # fmt: skip
    p.add_argument("--fps", type=_positive, default=None, help="frame rate override, for videos that lack one (Hz)")
    p.add_argument("--model", default="landmarks",
                   help="model pack folder or shipped name (default: 'landmarks', the pack trained on pose-estimator "
                   "points; 'default' is the joints-only one)")  # fmt: skip
    p.add_argument("--backend", default="onnx", help="inference backend: onnx, onnx-int8, onnx-cuda, tensorrt, torch")
    p.add_argument("--rig", default=None, help="write the output in the rig of this BVH file (default: the model's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _seconds(s: str) -> float:
    import argparse

    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {s!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {s}")
    return v


class _Bar:
    """A tqdm progress bar over a video's frames (nothing when tqdm is not installed or ``off``)."""

    def __init__(self, desc: str, total: int, off: bool):
        self._bar = None
        if not off:
            with contextlib.suppress(ImportError):
                from tqdm import tqdm

                self._bar = tqdm(total=total or None, desc=desc, unit="frame", file=sys.stderr, leave=False)

    def __call__(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def video_file(solver, src: Path, dst: Path, args, landmarks: Path | None = None, preview: Path | None = None):
    """One video into a BVH at ``dst`` (and the landmarks / contact sheet when asked); returns the track and what
    the solver read. Errors name ``src``; nothing is left at ``dst`` unless the whole file was solved."""
    from rtik.formats import bvh
    from rtik.video.frames import open_video
    from rtik.video.landmarks import save, solver_input
    from rtik.video.track import track_video

    if args.end is not None and args.end <= args.start:
        raise InputError(f"--end ({args.end:g} s) must come after --start ({args.start:g} s)")
    with open_video(src, args.fps) as v:  # checks the file before the estimator loads
        total = v.info.frames
    if total:
        total = max(0, min(total, round((args.end or 1e12) * v.info.fps)) - round(args.start * v.info.fps))
    bar = _Bar(src.name, total, args.no_progress)
    try:
        track = track_video(src, start=args.start, end=args.end, fps=args.fps, progress=bar)
    finally:
        bar.close()
    if total and len(track) < total - 1:  # containers may count a frame more than they hold
        print(f"rtik video: warning: {src}: only {len(track)} of its {total} frames could be decoded (damaged?)",
              file=sys.stderr)  # fmt: skip
    try:
        sin = solver_input(track, args.gaps, args.root, args.fov, args.min_visibility)
    except RtikError as e:
        raise type(e)(f"{src}: {e}") from e
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=".landmarks.npz", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            save(track, f, sin)
        os.chmod(tmp, 0o666 & ~_umask())
        solve_file(solver, Path(tmp), dst, layout="mediapipe33", rig=args.rig)  # writes dst atomically
        if landmarks is not None:
            landmarks.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, landmarks)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    if preview is not None:
        from rtik.video.preview import contact_sheet

        motion = bvh.read(dst)
        contact_sheet(src, track, motion.positions(), motion.skeleton, sin.frames, preview)
    return track, sin


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def run(args) -> int:
    from rtik.solve.solver import Solver
    from rtik.video.frames import SUFFIXES, cv2, open_video

    src: Path = args.input
    if not src.exists():
        raise InputError(f"{src}: no such file or folder")
    if src.is_file():
        files = [(src, args.output, args.landmarks, args.preview)]
    else:
        videos = sorted(f for f in src.iterdir() if f.is_file() and f.suffix.lower() in SUFFIXES)
        if not videos:
            raise InputError(f"{src}: no video files ({', '.join(SUFFIXES)}) in this folder")
        files = [
            (f, args.output / (f.stem + ".bvh"), args.landmarks and args.landmarks / (f.stem + ".npz"),
             args.preview and args.preview / (f.stem + ".png"))
            for f in videos
        ]  # fmt: skip
    cv2()  # the video extra is installed
    if src.is_file():
        open_video(src, args.fps).close()  # a bad file fails before the model loads
    solver = Solver.from_path(args.model, backend=args.backend)
    failed = 0
    try:
        for f, out, lms, prev in files:
            try:
                track, sin = video_file(solver, f, out, args, lms, prev)
            except RtikError as e:
                if len(files) == 1:
                    raise
                msg = str(e) if str(f) in str(e) else f"{f}: {e}"
                print(f"rtik video: error: {msg}", file=sys.stderr)
                failed += 1
                continue
            seen = int(track.detected.sum())
            print(f"{f} -> {out}: {len(sin.frames)} frames, a person on {seen} of {len(track)} video frames")
    finally:
        solver.close()
    if len(files) > 1:
        print(f"solved {len(files) - failed}/{len(files)} videos into {args.output}")
    return 1 if failed else 0
