"""Drive the daemon from a script: list streams, recalibrate one, record a ten-second take.

python clients/python/control_session.py actor1 [--seconds 10]
"""

from __future__ import annotations

import argparse
import time

from rtik.wire.client import Control


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stream", help="stream to calibrate and record")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the take (default: %(default)s)")
    args = ap.parse_args()

    with Control() as ctl:
        status = ctl.status()
        print(f"rtik {status['version']}, model {status['model']}, {status['streams']} streams")
        for s in ctl.streams():
            print(f"  {s['stream']}: {s['frames_in']} in, {s['frames_out']} out, {s['latency_ms']:.2f} ms")
        lengths = ctl.calibrate(args.stream)["bone_lengths"]  # fix the bone lengths measured so far
        print("left upper arm (shoulder to elbow):", lengths.get("LowerArm_L"), "m")
        path = ctl.record_start(args.stream, f"{args.stream}-take")["path"]
        time.sleep(args.seconds)
        done = ctl.record_stop(args.stream)
        print(f"recorded {done['frames']} frames to {path}")


if __name__ == "__main__":
    main()
