"""BVH read speed (MB/s) and forward-kinematics speed (frames/s) over the shared archive's clips.

The archive's members are read into memory first, so only parsing is timed (not xz decompression).

    python benchmarks/bvh.py                 # every clip of ../shared/mocap/bandai-namco-motion-2.tar.xz
    python benchmarks/bvh.py --limit 200     # the first 200 clips
"""

from __future__ import annotations

import argparse
import os
import platform
import tarfile
import time
from pathlib import Path

import numpy as np

from rtik.formats import bvh
from rtik.geometry.kinematics import analytic_ik, forward_kinematics

DEFAULT_ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "mocap" / "bandai-namco-motion-2.tar.xz"


def load_members(archive: Path, limit: int | None) -> list[tuple[str, bytes]]:
    out = []
    with tarfile.open(archive, "r|*") as tar:
        for m in tar:
            if m.isfile() and m.name.lower().endswith(".bvh"):
                out.append((m.name, tar.extractfile(m).read()))
                if limit and len(out) >= limit:
                    break
    return out


def best_of(fn, repeats: int) -> tuple[float, float]:
    """Best wall-clock and best CPU seconds over ``repeats`` calls (CPU time is what a busy machine distorts
    least: compare the two to see how much other work stole)."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - w0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archive", type=Path, default=Path(os.environ.get("RTIK_ARCHIVE", DEFAULT_ARCHIVE)),
                   help="tar archive of BVH clips (default: the shared Bandai Namco archive)")  # fmt: skip
    p.add_argument("--limit", type=int, default=None, help="use only the first N clips")
    p.add_argument("--repeats", type=int, default=3, help="timed passes; the best is reported")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    members = load_members(args.archive, args.limit)
    load_s = time.perf_counter() - t0
    size_mb = sum(len(b) for _, b in members) / 1e6
    motions: list[bvh.Motion] = []

    def parse_all():
        motions.clear()
        motions.extend(bvh.parse(data, name) for name, data in members)

    parse_s = best_of(parse_all, args.repeats)
    frames = sum(m.num_frames for m in motions)
    poses = [(m.skeleton, m.local_quats(), m.local_positions()) for m in motions]
    fk_s = best_of(lambda: [forward_kinematics(s, q, local_pos=lp) for s, q, lp in poses], args.repeats)
    quats_s = best_of(lambda: [m.local_quats() for m in motions], args.repeats)
    few = motions[: max(1, len(motions) // 10)]  # IK on a tenth of the clips keeps the run short
    pos = [(m.skeleton, m.positions()) for m in few]
    ik_frames = sum(len(P) for _, P in pos)
    ik_s = best_of(lambda: [analytic_ik(s, P) for s, P in pos], 1)
    write_s = best_of(lambda: [bvh.dumps(m) for m in few], 1)
    write_mb = sum(len(bvh.dumps(m)) for m in few) / 1e6

    print(f"rtik BVH benchmark: {len(members)} clips, {size_mb:.1f} MB, {frames} frames "
          f"({platform.processor() or platform.machine()}, numpy {np.__version__})")  # fmt: skip
    print(f"(archive read and decompressed in {load_s:.1f} s, not timed below; best of {args.repeats})")
    print(f"{'stage':34s} {'wall s':>8s} {'rate (wall)':>18s} {'cpu s':>8s} {'rate (cpu)':>18s}")
    rows = [
        ("parse BVH text", parse_s, size_mb, "MB/s"),
        ("Euler channels -> quaternions", quats_s, frames, "frames/s"),
        ("forward kinematics", fk_s, frames, "frames/s"),
        (f"analytic IK ({len(few)} clips)", ik_s, ik_frames, "frames/s"),
        (f"write BVH text ({len(few)} clips)", write_s, write_mb, "MB/s"),
    ]
    for name, (wall, cpu), amount, unit in rows:
        print(f"{name:34s} {wall:8.3f} {amount / wall:9.1f} {unit:8s} {cpu:8.3f} {amount / cpu:9.1f} {unit:8s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
