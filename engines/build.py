"""Build compiled engines for a model pack and print a report.

    python -m engines.build PACK --target onnx-int8 [--clip FILE.bvh ...] [--frames 3000] [--max-drift-deg 2]
    python -m engines.build PACK --target tensorrt [--fp16]

``onnx-int8``: dynamic INT8 quantisation (ONNX Runtime) written to the engine cache with its drift report
(:mod:`engines.drift`): the ``onnx-int8`` backend only opens an INT8 graph whose report exists and was accepted
(mean rotation deviation within ``--max-drift-deg``). ``tensorrt``: a TensorRT plan (FP32, or FP16 from an FP16
copy of the ONNX) for this GPU and TensorRT version. Engines live in ``$RTIK_ENGINE_CACHE`` (default
``~/.cache/rtik/engines``), one folder per pack content hash.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rtik.errors import RtikError
from rtik.models import modelpack
from rtik.models.backends.base import engine_dir, open_backend
from rtik.models.backends.onnx import INT8_FILE, INT8_REPORT

TARGETS = ("onnx-int8", "tensorrt")


def default_clips() -> list[Path]:
    """The sample clips beside the checkout (``../shared/mocap/sample``) or under ``$RTIK_MOCAP``."""
    import os

    root = Path(__file__).resolve().parents[1].parent / "shared" / "mocap"
    if not root.is_dir():
        root = Path(os.environ.get("RTIK_MOCAP", root))
    return sorted((root / "sample").glob("*.bvh"))


def build_int8(pack, clips, frames: int = 3000, max_drift_deg: float = 2.0) -> dict:
    """Quantise, measure drift against FP32, write both into the cache; returns the report."""
    from engines.convert import to_int8
    from engines.drift import measure

    d = engine_dir(pack)
    tmp = d / (INT8_FILE + ".tmp")
    to_int8(pack.file("onnx"), tmp)
    int8 = open_backend(pack, "onnx", path=tmp)
    ref = open_backend(pack, "onnx")
    t0 = time.perf_counter()
    drift = measure(pack, int8, ref, clips, frames)
    report = {
        "pack": pack.name, "digest": pack.digest(), "target": "onnx-int8", "quantization": "dynamic, QInt8 weights",
        "clips": [Path(c).name for c in clips], **drift, "max_drift_deg": max_drift_deg,
        "accepted": drift["rot_deg_mean"] <= max_drift_deg, "measure_s": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    tmp.replace(d / INT8_FILE)
    (d / INT8_REPORT).write_text(json.dumps(report, indent=1))
    return report


def format_report(r: dict) -> list[str]:
    lines = [f"{k:26s} {v}" for k, v in r.items() if not isinstance(v, list)]
    if r.get("clips"):
        lines.append(f"{'clips':26s} {len(r['clips'])} ({r['clips'][0]} ...)")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engines.build", description=__doc__.split("\n\n")[0])
    ap.add_argument("pack", help="model pack folder")
    ap.add_argument("--target", choices=TARGETS, required=True, help="engine to build")
    ap.add_argument("--fp16", action="store_true", help="tensorrt: FP16 engine (from an FP16 ONNX copy)")
    ap.add_argument("--clip", action="append", type=Path, help="onnx-int8: BVH clip(s) for the drift measurement")
    ap.add_argument("--frames", type=int, default=3000, help="onnx-int8: frames of the drift sequence")
    ap.add_argument("--max-drift-deg", type=float, default=2.0, help="onnx-int8: accept up to this mean deviation")
    args = ap.parse_args(argv)
    try:
        pack = modelpack.load(args.pack)
        if args.target == "onnx-int8":
            report = build_int8(pack, args.clip or default_clips(), args.frames, args.max_drift_deg)
            where = engine_dir(pack) / INT8_FILE
        else:
            from rtik.models.backends.trt_plan import build_engine

            where = build_engine(pack, "fp16" if args.fp16 else "fp32")
            report = json.loads(where.with_suffix(".json").read_text())
    except RtikError as e:
        print(f"engines.build: error: {e}", file=sys.stderr)
        return 1
    print(f"built {args.target} for {pack.name}: {where}")
    print("\n".join(format_report(report)))
    if report.get("accepted") is False:
        print(f"NOT accepted: mean rotation drift above {args.max_drift_deg} deg; the onnx-int8 backend will refuse it")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
