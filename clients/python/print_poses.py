"""Receive solved poses and print, per stream, the latency and a few joint rotations as Euler angles.

python clients/python/print_poses.py [--stream actor1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rtik.geometry import rotations
from rtik.wire.client import Control, Listener


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stream", action="append", default=[], help="only this stream (repeatable)")
    args = ap.parse_args()

    with Control() as ctl:  # the skeleton names the rows of every pose's quaternions
        names = ctl.skeleton()["skeleton"]["names"]
    show = [n for n in ("Hips", "UpperArm_L", "LowerArm_L", "Head") if n in names]
    last = 0.0
    with Listener(streams=args.stream) as rx:
        for pose in rx:
            if pose is None or time.monotonic() - last < 0.5:
                continue
            last = time.monotonic()
            latency_ms = (time.time() - pose.sent) * 1e3 if pose.sent else float("nan")
            euler = rotations.quat_to_euler(pose.local_quats.astype(np.float64), "ZXY")  # degrees
            cols = "  ".join(f"{n} {np.round(euler[names.index(n)], 1)}" for n in show)
            print(f"{pose.stream} #{pose.seq}  {latency_ms:5.2f} ms  root {np.round(pose.root_pos, 3)}  {cols}")


if __name__ == "__main__":
    main()
