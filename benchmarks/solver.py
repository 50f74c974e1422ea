"""Solver latency and throughput per backend: the whole per-frame path (normalise + network + IK + refinement).

    python benchmarks/solver.py                                  # shipped model, onnx and torch, 1/16/64 streams
    python benchmarks/solver.py --model PACK --backends onnx,onnx-int8,torch --frames 3000 --json

Each backend gets the table of ``rtik bench`` (p50/p99 tick latency, the backend call's p50, frames/s, memory per
stream). Backends that cannot open here (no GPU, no INT8 engine built) are listed as skipped with the reason.
The load average is printed beside each table: numbers taken while other work competes for the CPU are not
comparable with quiet ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtik.commands.bench import run_bench, table  # noqa: E402
from rtik.errors import RtikError  # noqa: E402
from rtik.solve.compiled import KERNELS  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model pack folder (default: the shipped model)")
    ap.add_argument("--backends", default="onnx,torch", help="comma-separated backends")
    ap.add_argument("--streams", default="1,16,64", help="comma-separated stream counts")
    ap.add_argument("--frames", type=int, default=2000, help="timed ticks per stream count")
    ap.add_argument("--clip", type=Path, default=None, help="a BVH clip in the model's skeleton (default: synthetic)")
    ap.add_argument("--kernels", default="auto", choices=KERNELS, help="pre/post-processing")
    ap.add_argument("--rate", type=float, default=0.0, help="pace the ticks at this rate (Hz); 0 = back to back")
    ap.add_argument("--json", action="store_true", help="one JSON object per backend, one per line")
    args = ap.parse_args(argv)
    streams = tuple(int(s) for s in args.streams.split(","))
    for name in args.backends.split(","):
        try:
            info = run_bench(args.model, name, streams, args.frames, args.clip, args.kernels, args.rate)
        except RtikError as e:
            print(json.dumps({"backend": name, "skipped": str(e)}) if args.json else f"{name}: skipped: {e}\n")
            continue
        print(json.dumps(info) if args.json else table(info) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
