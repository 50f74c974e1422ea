"""A live source: send joint positions to the rtik daemon at a steady rate.

Here the positions come from a BVH clip (as `rtik send` does); in a real integration they come from your mocap
system or pose estimator, once per captured frame, with the capture time as the timestamp.

    python clients/python/live_source.py CLIP.bvh [--stream actor1] [--rate 60] [--osc]
"""

from __future__ import annotations

import argparse
import time

from rtik.commands.send import load_positions
from rtik.wire.client import Sender


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip", help="BVH or npz file with positions")
    ap.add_argument("--stream", default="actor1", help="stream name (default: %(default)s)")
    ap.add_argument("--rate", type=float, default=60.0, help="frames per second (default: %(default)s)")
    ap.add_argument("--osc", action="store_true", help="send OSC /rtik/frame to 127.0.0.1:7703 instead of ZeroMQ")
    args = ap.parse_args()

    positions, mask, _ = load_positions(args.clip)  # (F, n, 3) metres
    sender = Sender(args.stream, osc=("127.0.0.1", 7703) if args.osc else None)
    period, start = 1.0 / args.rate, time.perf_counter()
    try:
        for i in range(10**9):
            time.sleep(max(0.0, start + i * period - time.perf_counter()))
            frame = positions[i % len(positions)]
            sender.send(frame, timestamp=time.time(), mask=None if mask is None else mask[i % len(positions)])
    except KeyboardInterrupt:
        pass
    finally:
        sender.close()
        print(f"sent {sender.sent} frames, {sender.dropped} dropped")


if __name__ == "__main__":
    main()
