"""``rtik video`` end to end in video frames per second, on a 640 x 480 clip made from the test photograph.

The clip (``--frames`` frames at 30 frames/s, the public-domain photograph of tests/data/video moving and growing
over a grey background, H.264-free ``mp4v``) is written to a temporary folder first; then ``rtik video`` runs on it
in this process, as the command does (decode, MediaPipe Pose in tracking mode, the solver, the BVH), and the
frames per second are printed: of the whole command (model loading included; the best of ``--repeats`` runs),
and of its two stages.

    python benchmarks/video.py                    # 300 frames (10 s of video)
    python benchmarks/video.py --frames 900 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

PHOTO = Path(__file__).resolve().parents[1] / "tests" / "data" / "video" / "astronaut.jpg"
W, H, FPS = 640, 480, 30.0


def make_clip(path: Path, frames: int) -> None:
    import cv2

    photo = cv2.imread(str(PHOTO))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    for i in range(frames):
        k = abs((i % 120) - 60) / 60  # 0..1..0 every 4 s
        side = int(360 + 120 * k)
        img = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
        out = np.full((H, W, 3), 128, np.uint8)
        x0, y0 = int(20 + 200 * k), H - side + 60
        x1, y1 = min(W, x0 + side), min(H, y0 + side)
        out[max(y0, 0) : y1, x0:x1] = img[max(0, -y0) : y1 - y0, : x1 - x0]
        writer.write(out)
    writer.release()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=300, help="frames of the 640 x 480, 30 frames/s clip")
    p.add_argument("--repeats", type=int, default=2, help="end-to-end runs; the best is reported")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)

    from rtik.cli import main as rtik_main
    from rtik.solve.solver import Solver
    from rtik.video.landmarks import solver_input
    from rtik.video.track import track_video

    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        make_clip(clip, args.frames)

        total = float("inf")
        for _ in range(max(1, args.repeats)):
            t0 = time.perf_counter()
            code = rtik_main(["video", str(clip), "-o", str(Path(tmp) / "clip.bvh"), "--no-progress"])
            total = min(total, time.perf_counter() - t0)
            if code:
                raise SystemExit(f"rtik video failed ({code})")

        t0 = time.perf_counter()
        track = track_video(clip)
        estimate = time.perf_counter() - t0
        sin = solver_input(track)
        from rtik.solve.solver import solve_sequence

        solver = Solver.from_path(None)
        solve_sequence(solver, sin.positions[:2], sin.fps, sin.mask[:2], "mediapipe33")  # warm (kernels compiled)
        t0 = time.perf_counter()
        solve_sequence(solver, sin.positions, sin.fps, sin.mask, "mediapipe33")
        solve = time.perf_counter() - t0
        solver.close()

    n = args.frames
    res = {
        "frames": n, "size": [W, H], "cpus": os.cpu_count(), "machine": platform.machine(),
        "load_average": os.getloadavg()[0], "detected": int(track.detected.sum()),
        "end_to_end_fps": n / total, "estimate_fps": n / estimate, "solve_fps": n / solve,
    }  # fmt: skip
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{n} frames {W}x{H} ({res['detected']} with a person), {res['cpus']} CPUs, "
              f"load {res['load_average']:.1f}")  # fmt: skip
        print(f"rtik video end to end (model loading included): {res['end_to_end_fps']:.1f} frames/s")
        print(f"  decode + MediaPipe Pose (tracking): {res['estimate_fps']:.1f} frames/s")
        print(f"  solver (mediapipe33, one stream):   {res['solve_fps']:.1f} frames/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
