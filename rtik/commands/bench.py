"""``rtik bench``: per-frame latency and throughput of the whole solve (normalise + network + IK + refinement).

For each stream count N, N streams are opened and fed a synthetic motion (the model's mean pose swaying, each
stream out of phase) or a real clip (``--clip``), clean or with Gaussian noise (``--noise``, as markerless input
has: it opens the output smoothing); every tick pushes one frame per stream and solves them in one batch.
Reported per N: tick latency p50/p99/min (µs, push + tick), the backend call's share (p50), frames solved per
second, and the solver's memory per stream. The load average is printed too: p50/p99 taken while other work
competes for the CPU are inflated, the minimum much less so.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

from rtik.errors import InputError
from rtik.geometry import rotations as rot
from rtik.solve.compiled import KERNELS


def motion(pack, frames: int, clip: Path | None = None) -> np.ndarray:
    """``(F, Ji, 3)`` positions in metres of the pack's input joints: a clip's, or a synthetic sway."""
    from rtik.formats import bvh
    from rtik.geometry.kinematics import forward_kinematics

    skel = pack.skeleton
    if clip is not None:
        m = bvh.read(clip)
        unit = {"cm": 0.01, "mm": 0.001}.get(bvh.guess_units(m) or "m", 1.0)
        P = m.positions() * unit
        P = P[:, m.skeleton.indices(pack.input_joints)]
        return np.resize(P, (frames, *P.shape[1:]))
    t = np.arange(frames)[:, None, None] / 30.0
    rng = np.random.default_rng(0)
    axes, phase = rng.normal(size=(1, len(skel), 3)), rng.uniform(0, 6.28, (1, len(skel), 1))
    sway = rot.axis_angle_to_quat(0.3 * np.sin(2.0 * t + phase) * axes / np.linalg.norm(axes, axis=-1, keepdims=True))
    q = rot.quat_mul(pack.prior_local[None], sway)
    root = np.stack([np.sin(t[:, 0, 0] * 0.5), np.full(frames, 0.9), np.cos(t[:, 0, 0] * 0.5)], axis=-1)
    P, _ = forward_kinematics(skel, q, root)
    return P[:, pack.input_index]


def _memory_per_stream(solver) -> int:
    arrays = [v for k, v in vars(solver).items() if k.startswith("_") and isinstance(v, np.ndarray)]
    return int(sum(a.nbytes for a in arrays) / max(solver._cap, 1))


def measure(solver, positions: np.ndarray, streams: int, frames: int, warmup: int = 50, rate: float = 0.0) -> dict:
    """Latency of ``frames`` ticks with ``streams`` streams, after ``warmup`` ticks; back to back, or paced at
    ``rate`` ticks per second as live input arrives (the CPU's caches then go cold between ticks)."""
    names = [f"bench{i}" for i in range(streams)]
    for n in names:
        solver.open_stream(n)
    be = solver.backend
    inner = be.step
    spent = []

    def timed(*a):
        t0 = time.perf_counter()
        out = inner(*a)
        spent.append(time.perf_counter() - t0)
        return out

    be.step = timed
    F = len(positions)
    lat = np.zeros(frames)
    period, due = (1.0 / rate if rate > 0 else 0.0), time.perf_counter()
    try:
        for i in range(warmup + frames):
            if period:
                due += period
                time.sleep(max(0.0, due - time.perf_counter()))
            t0 = time.perf_counter()
            for k, n in enumerate(names):
                solver.push(n, positions[(i + 37 * k) % F], i / 30.0)
            solver.tick()
            if i >= warmup:
                lat[i - warmup] = time.perf_counter() - t0
    finally:
        del be.step
        for n in names:
            solver.close_stream(n)
    lat *= 1e6
    return {
        "streams": streams,
        "p50_us": round(float(np.percentile(lat, 50)), 1),
        "p99_us": round(float(np.percentile(lat, 99)), 1),
        "min_us": round(float(lat.min()), 1),  # the floor when nothing else competed for the CPU
        "backend_p50_us": round(float(np.percentile(np.array(spent[warmup:]) * 1e6, 50)), 1),
        "frames_per_s": round(streams * frames / (lat.sum() / 1e6), 1),
        "memory_per_stream_bytes": _memory_per_stream(solver),
    }


def run_bench(model=None, backend="onnx", streams=(1, 16, 64), frames=2000, clip=None, kernels="auto",
              rate=0.0, smooth=True, noise_mm=0.0) -> dict:  # fmt: skip
    from rtik.models.backends.base import pin_threads
    from rtik.solve.solver import Solver, SolverOptions

    pin_threads()
    options = SolverOptions(kernels=kernels) if smooth else SolverOptions(kernels=kernels, smooth=None)
    solver = Solver.from_path(model, backend=backend, options=options)
    P = motion(solver.pack, max(frames, 300), clip)
    if noise_mm > 0:  # per coordinate, fixed seed: the same input every run
        P = P + np.random.default_rng(0).normal(0.0, noise_mm / 1000.0, P.shape)
    results = [measure(solver, P, n, frames, rate=rate) for n in streams]
    info = {
        "backend": backend,
        "kernels": solver.kernels,
        "rate_hz": rate,
        "smooth": smooth,
        "noise_mm": noise_mm,
        "describe": solver.backend.describe(),
        "model": solver.pack.name,
        "state_size": solver.pack.state_size,
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "frames": frames,
        "results": results,
    }
    solver.close()
    return info


def table(info: dict) -> str:
    pace = f"at {info['rate_hz']:g} Hz" if info["rate_hz"] else "back to back"
    lines = [
        f"backend {info['describe']}; kernels {info['kernels']}; model {info['model']} (state {info['state_size']}); "
        f"{info['frames']} ticks {pace}; input noise {info['noise_mm']:g} mm; "
        f"smoothing {'on' if info['smooth'] else 'off'}; "
        f"{info['cpus']} CPUs, load {info['load_avg'][0]}",
        f"{'streams':>8} {'p50 µs':>9} {'p99 µs':>9} {'min µs':>8} {'backend µs':>11} {'frames/s':>10} "
        f"{'mem/stream':>11}",
    ]
    for r in info["results"]:
        lines.append(
            f"{r['streams']:>8} {r['p50_us']:>9.1f} {r['p99_us']:>9.1f} {r['min_us']:>8.1f} "
            f"{r['backend_p50_us']:>11.1f} "
            f"{r['frames_per_s']:>10.0f} {r['memory_per_stream_bytes'] / 1024:>9.1f} KiB"
        )
    return "\n".join(lines)


def _streams(s: str) -> tuple[int, ...]:
    import argparse

    try:
        v = tuple(int(x) for x in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated stream counts, got {s!r}") from None
    if not v or min(v) < 1:
        raise argparse.ArgumentTypeError(f"stream counts must be >= 1, got {s!r}")
    return v


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure per-frame latency and throughput of the solver", description=__doc__)
    p.add_argument("--model", default=None, help="model pack folder (default: the shipped model)")
    p.add_argument("--backend", default="onnx", help="inference backend (onnx, onnx-int8, torch, tensorrt, ...)")
    p.add_argument("--streams", type=_streams, default=(1, 16, 64), help="stream counts, e.g. 1,16,64")
    p.add_argument("--frames", type=int, default=2000, help="timed ticks per stream count")
    p.add_argument("--clip", type=Path, default=None, help="a BVH clip in the model's skeleton (default: synthetic)")
    p.add_argument("--kernels", default="auto", choices=KERNELS,
                   help="the solver's pre/post-processing (default: auto = numba when installed)")  # fmt: skip
    p.add_argument("--rate", type=float, default=0.0,
                   help="pace the ticks at this rate (Hz), as live input arrives; 0 = back to back")  # fmt: skip
    p.add_argument("--no-smooth", dest="smooth", action="store_false",
                   help="without the output smoothing (on by default, as in the daemon)")  # fmt: skip
    p.add_argument("--noise", type=float, default=0.0, metavar="MM",
                   help="Gaussian noise on the input, mm per coordinate (default 0: clean)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.frames < 1:
        raise InputError(f"--frames must be >= 1, got {args.frames}")
    if not (math.isfinite(args.rate) and args.rate >= 0):
        raise InputError(f"--rate must be a rate in Hz (0 = back to back), got {args.rate}")
    if not (math.isfinite(args.noise) and args.noise >= 0):
        raise InputError(f"--noise must be a standard deviation in mm (0 = clean), got {args.noise}")
    info = run_bench(
        args.model,
        args.backend,
        args.streams,
        args.frames,
        args.clip,
        args.kernels,
        args.rate,
        args.smooth,
        args.noise,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "backend": info["backend"],
                    "results": info["results"],
                    **{k: v for k, v in info.items() if k not in ("backend", "results")},
                }
            )
        )
    else:
        print(table(info))
    return 0
