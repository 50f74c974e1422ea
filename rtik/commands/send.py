"""``rtik send``: replay joint positions from a file as a live source (ZeroMQ or OSC)."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from rtik.errors import InputError
from rtik.formats.units import METRES

SCALE = METRES


def _positive(kind):
    def parse(s):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {s}")
        return v

    return parse


def register(sub) -> None:
    p = sub.add_parser("send", help="replay positions from a BVH or npz file as a live source")
    p.add_argument("file", metavar="FILE", help="BVH (positions by forward kinematics) or npz (positions, mask, fps)")
    p.add_argument("--rate", type=_positive(float), help="frames per second (default: the file's rate)")
    p.add_argument("--stream", default="default", help="stream name (default: %(default)s)")
    p.add_argument("--noise-mm", type=float, default=0.0, metavar="S", help="add Gaussian noise, S mm per coordinate")
    p.add_argument("--loop", action="store_true", help="start over at the end (until --count or Ctrl+C)")
    p.add_argument("--count", type=_positive(int), metavar="N", help="stop after N frames")
    p.add_argument("--osc", action="store_true", help="send /rtik/frame over OSC/UDP instead of ZeroMQ")
    p.add_argument("--endpoint", default="tcp://127.0.0.1:7700", help="ZeroMQ ingest endpoint (default: %(default)s)")
    p.add_argument("--osc-host", default="127.0.0.1", help="OSC ingest host (default: %(default)s)")
    p.add_argument("--osc-port", type=int, default=7703, help="OSC ingest port (default: %(default)s)")
    p.add_argument("--file-units", choices=tuple(SCALE), help="unit of the file (default: cm for BVH, m for npz)")
    p.add_argument("--seed", type=int, default=0, help="noise random seed (default: %(default)s)")
    from rtik.serve.security import add_client_args

    add_client_args(p)
    p.set_defaults(func=run)


def load_positions(path, file_units: str | None = None) -> tuple[np.ndarray, np.ndarray | None, float | None]:
    """``(positions (F, n, 3) metres, mask (F, n) bool or None, fps)`` from a BVH or npz file (fps None: an npz
    without an ``fps`` array).

    BVH: global joint positions by forward kinematics, every joint but a static dummy root (the ``rtik`` layout
    of a model trained on that skeleton). npz: arrays ``positions`` and optionally ``mask`` and ``fps``."""
    p = Path(path)
    if p.suffix.lower() == ".bvh":
        from rtik.formats import bvh

        motion = bvh.read(p)
        pos = motion.positions() * SCALE[file_units or "cm"]
        dummy = motion.skeleton.dummy_root()
        if dummy is not None:
            pos = np.delete(pos, dummy, axis=1)
        return pos, None, motion.fps
    if p.suffix.lower() == ".npz":
        from rtik.formats.points import npz_arrays

        z = npz_arrays(p)
        try:
            pos = z["positions"].astype(np.float64) * SCALE[file_units or "m"]
            mask = z["mask"].astype(bool) if "mask" in z else None
            fps = float(z["fps"]) if "fps" in z else None
        except (ValueError, TypeError) as e:  # a mask or fps that is no such thing
            raise InputError(f"{p}: cannot read positions: {e}") from e
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise InputError(f"{p}: fps must be a positive number, got {fps}")
        if pos.ndim != 3 or pos.shape[2] != 3:
            raise InputError(f"{p}: positions have shape {pos.shape}, expected (F, n, 3)")
        if mask is not None and mask.shape != pos.shape[:2]:
            raise InputError(f"{p}: mask has shape {mask.shape}, expected {pos.shape[:2]}")
        return pos, mask, fps
    raise InputError(f"{p}: unsupported file type {p.suffix!r}; use .bvh or .npz")


def run(args) -> int:
    from rtik.wire.client import Sender

    pos, mask, fps = load_positions(args.file, args.file_units)
    if len(pos) == 0:
        raise InputError(f"{args.file}: no frames")
    rate = args.rate or fps
    if rate is None:
        raise InputError(f"{args.file}: no 'fps' array in the file; pass --rate")
    rng = np.random.default_rng(args.seed)
    total = args.count or (None if args.loop else len(pos))
    osc = (args.osc_host, args.osc_port) if args.osc else None
    period = 1.0 / rate
    from rtik.serve.security import client_keys_from_args

    curve = None if osc else client_keys_from_args(args)
    with Sender(args.stream, args.endpoint, osc=osc, curve=curve) as tx:
        t0 = time.perf_counter()
        wall0 = time.time()
        i = 0
        try:
            while total is None or i < total:
                k = i % len(pos)
                if not args.loop and i >= len(pos):
                    break
                frame = pos[k]
                if args.noise_mm > 0:
                    frame = frame + rng.normal(0.0, args.noise_mm / 1000.0, frame.shape)
                delay = t0 + i * period - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                tx.send(frame, timestamp=wall0 + i * period, mask=None if mask is None else mask[k])
                i += 1
        except KeyboardInterrupt:
            pass
        elapsed = time.perf_counter() - t0
    print(f"sent {tx.sent} frames of stream {args.stream!r} in {elapsed:.2f} s "
          f"({tx.sent / max(elapsed, 1e-9):.1f} Hz), {tx.dropped} dropped")  # fmt: skip
    return 0
