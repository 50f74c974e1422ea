"""``rtik listen``: receive the daemon's pose feed, print rate and latency, optionally record it as BVH."""

from __future__ import annotations

import signal
import threading
import time

import numpy as np

from rtik.errors import RtikError


def register(sub) -> None:
    p = sub.add_parser("listen", help="receive poses: print rate and latency once a second, optionally record BVH")
    p.add_argument("--endpoint", default="tcp://127.0.0.1:7701", help="pose feed endpoint (default: %(default)s)")
    p.add_argument("--control", default="tcp://127.0.0.1:7702", help="control endpoint, asked for the skeleton")
    p.add_argument("--stream", action="append", default=[], help="only this stream (repeatable; default: all)")
    p.add_argument("--bvh", metavar="OUT", help="record the first (or --stream) stream's poses to this BVH file")
    p.add_argument("--units", choices=("cm", "m"), default="cm", help="BVH length unit (default: %(default)s)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: at Ctrl+C or SIGTERM)")
    p.add_argument("--quiet", action="store_true", help="print only the summary at the end")
    from rtik.serve.security import add_client_args

    add_client_args(p)
    p.set_defaults(func=run)


class Tally:
    """Per-stream counts and latencies (ms) over a reporting window and over the whole run."""

    def __init__(self):
        self.window: dict[str, list] = {}
        self.all: dict[str, list] = {}
        self.inner: dict[str, list] = {}
        self.gaps: dict[str, int] = {}
        self.last_seq: dict[str, int] = {}

    def add(self, pose, now: float) -> None:
        s = pose.stream
        lat = (now - pose.sent) * 1e3 if pose.sent else float("nan")
        self.window.setdefault(s, []).append(lat)
        self.all.setdefault(s, []).append(lat)
        self.inner.setdefault(s, []).append((pose.pub - pose.recv) * 1e3 if pose.recv else float("nan"))
        last = self.last_seq.get(s)
        if last is not None and pose.seq > last + 1:
            self.gaps[s] = self.gaps.get(s, 0) + pose.seq - last - 1
        self.last_seq[s] = pose.seq

    def lines(self, table: dict, seconds: float) -> list[str]:
        out = []
        for s, lat in sorted(table.items()):
            a = np.asarray(lat, dtype=float)
            a = a[np.isfinite(a)]
            q = np.percentile(a, [50, 99]) if a.size else (float("nan"),) * 2
            out.append(f"{s}: {len(lat) / max(seconds, 1e-9):7.1f} Hz  latency p50 {q[0]:6.3f} ms  p99 {q[1]:6.3f} ms"
                       f"  missed {self.gaps.get(s, 0)}")  # fmt: skip
        return out


def stop_on_sigterm(stop: threading.Event):
    """Have SIGTERM set ``stop``, so that a terminated listener ends as Ctrl+C ends it (summary printed, recording
    finalised); the handler it replaced, to restore, or None where none was installed (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())


def run(args) -> int:
    stop = threading.Event()
    previous = stop_on_sigterm(stop)
    try:
        return _listen(args, stop)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _listen(args, stop: threading.Event) -> int:
    from rtik.geometry.skeleton import Skeleton
    from rtik.serve.recorder import Recording
    from rtik.serve.security import client_keys_from_args
    from rtik.wire.client import Control, ControlError, Listener

    curve = client_keys_from_args(args)
    rec = None
    rec_stream = args.stream[0] if args.stream else None
    skeleton = None
    if args.bvh:
        try:
            with Control(args.control, timeout=1.0, curve=curve) as ctl:
                skeleton = Skeleton.from_dict(ctl.skeleton()["skeleton"])
        except (ControlError, RtikError):
            skeleton = None  # wait for the feed's periodic skeleton message instead
    tally = Tally()
    start = last = time.monotonic()
    with Listener(args.endpoint, args.stream, curve=curve) as rx:
        try:
            while not stop.is_set() and (args.duration is None or time.monotonic() - start < args.duration):
                pose = rx.recv(timeout=0.2)
                now_wall, now = time.time(), time.monotonic()
                if pose is not None:
                    tally.add(pose, now_wall)
                    if args.bvh:
                        if skeleton is None and rx.skeleton is not None:
                            skeleton = Skeleton.from_dict(rx.skeleton)
                        rec_stream = rec_stream or pose.stream
                        if rec is None and skeleton is not None and pose.stream == rec_stream:
                            rec = Recording(args.bvh, skeleton, args.units)
                        if rec is not None and pose.stream == rec_stream:
                            rec.write(pose.local_quats, pose.root_pos, pose.timestamp)
                if now - last >= 1.0 and not args.quiet:
                    for line in tally.lines(tally.window, now - last) or ["(no poses)"]:
                        print(line, flush=True)
                    tally.window = {}
                    last = now
        except KeyboardInterrupt:
            pass
    elapsed = time.monotonic() - start
    print(f"summary over {elapsed:.1f} s:")
    for line in tally.lines(tally.all, elapsed) or ["(no poses received)"]:
        print(line)
    if rec is not None:
        rec.close()
        print(f"recorded {rec.frames} frames of stream {rec_stream!r} to {rec.path}"
              + (f" (error: {rec.error})" if rec.error else ""))  # fmt: skip
    elif args.bvh:
        print("nothing recorded (no skeleton or no poses received)")
    return 0
