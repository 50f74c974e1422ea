"""``rtik solve INPUT -o OUTPUT``: solve joint positions from files into BVH rotations, offline.

INPUT is a ``.bvh`` (joint positions by forward kinematics; its rotations are ignored), a ``.npz`` (``positions``
[F, J, 3], ``joints`` [J] names, ``fps``, optional ``units`` "m"/"cm"/"mm" (default m) and ``mask`` [F, J]) or a
``.csv`` (header ``frame,time,<joint>_x,<joint>_y,<joint>_z,...``; ``frame`` and ``time`` optional, an empty or
NaN cell marks the joint missing in that row). OUTPUT is a BVH in the model's skeleton, with bone lengths
calibrated from the input, in the input's unit. A folder in gives a folder out. Every frame goes through the
same per-frame path as live streams (:func:`rtik.solve.solver.solve_sequence`).
"""

from __future__ import annotations

import csv
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtik.errors import InputError, RtikError
from rtik.formats import bvh
from rtik.formats.layouts import NAMES as LAYOUTS
from rtik.geometry import kinematics
from rtik.solve.solver import UNITS

SUFFIXES = (".bvh", ".npz", ".csv")


@dataclass(frozen=True)
class Clip:
    """Positions read from a file. ``positions (F, J, 3)`` in ``units``; ``mask (F, J)`` bool or None."""

    positions: np.ndarray
    joints: tuple[str, ...]
    fps: float
    units: str
    mask: np.ndarray | None = None


def _units(value, path: Path, guess: str | None) -> str:
    u = value or guess
    if u is None:
        raise InputError(f"{path}: cannot guess the length unit; pass --units ({', '.join(UNITS)})")
    if u not in UNITS:
        raise InputError(f"{path}: unknown units {u!r}; valid units: {', '.join(UNITS)}")
    return u


def read_bvh(path: Path, units=None, fps=None) -> Clip:
    m = bvh.read(path)
    return Clip(m.positions(), m.skeleton.names, float(fps or m.fps), _units(units, path, bvh.guess_units(m)))


#: what numpy raises on a damaged or hostile npz (empty, truncated, not a zip, arrays of the wrong kind)
_NPZ_ERRORS = (OSError, ValueError, TypeError, EOFError, AttributeError, MemoryError, zipfile.BadZipFile)


def npz_arrays(path: Path, required=("positions",)) -> dict[str, np.ndarray]:
    """Every array of an npz file (no pickles), after checking that ``required`` are there and that ``positions``
    holds real numbers; a damaged or hostile file raises :class:`InputError` naming it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except _NPZ_ERRORS as e:
        raise InputError(f"{path}: cannot read: {e}") from e
    for key in required:
        if key not in data:
            raise InputError(f"{path}: missing array {key!r} (has: {', '.join(data) or 'nothing'})")
    if "positions" in data and data["positions"].dtype.kind not in "fiu":
        raise InputError(f"{path}: positions must be real numbers, got dtype {data['positions'].dtype}")
    return data


def read_npz(path: Path, units=None, fps=None) -> Clip:
    try:
        return _read_npz(path, units, fps)
    except _NPZ_ERRORS as e:
        raise InputError(f"{path}: cannot read: {e}") from e


def _read_npz(path: Path, units=None, fps=None) -> Clip:
    data = npz_arrays(path, ("positions", "joints"))
    P, joints = data["positions"].astype(np.float64), tuple(str(j) for j in data["joints"])
    if P.ndim != 3 or P.shape[1:] != (len(joints), 3):
        raise InputError(f"{path}: positions has shape {P.shape}, expected (F, {len(joints)}, 3)")
    rate = fps or (float(data["fps"]) if "fps" in data else None)
    if not rate:
        raise InputError(f"{path}: no 'fps' array; pass --fps")
    mask = data["mask"].astype(bool) if "mask" in data else None
    if mask is not None and mask.shape != P.shape[:2]:
        raise InputError(f"{path}: mask has shape {mask.shape}, expected {P.shape[:2]}")
    u = units or (str(data["units"]) if "units" in data else "m")
    return Clip(P, joints, float(rate), _units(u, path, None), mask)


def read_csv(path: Path, units=None, fps=None) -> Clip:
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read: {e}") from e
    if len(rows) < 2:
        raise InputError(f"{path}: needs a header row and at least one frame")
    head = [h.strip() for h in rows[0]]
    joints = [h[:-2] for h in head if h.endswith("_x")]
    cols = []
    for j in joints:
        for ax in "xyz":
            if f"{j}_{ax}" not in head:
                raise InputError(f"{path}: joint {j!r} has no column {j}_{ax}")
            cols.append(head.index(f"{j}_{ax}"))
    if not joints:
        raise InputError(f"{path}: no <joint>_x,<joint>_y,<joint>_z columns in the header")
    try:
        vals = np.array([[float(r[c]) if c < len(r) and r[c].strip() else np.nan for c in cols] for r in rows[1:]])
        times = np.array([float(r[head.index("time")]) for r in rows[1:]]) if "time" in head else None
    except ValueError as e:
        raise InputError(f"{path}: not a number: {e}") from e
    except IndexError:
        raise InputError(f"{path}: a row has no 'time' cell (every row needs one when the header has 'time')") from None
    P = vals.reshape(len(vals), len(joints), 3)
    if not fps and times is not None and len(times) > 1:
        fps = 1.0 / float(np.median(np.diff(times)))
    if not fps or not np.isfinite(fps) or fps <= 0:
        raise InputError(f"{path}: no usable 'time' column; pass --fps")
    mask = np.isfinite(P).all(axis=-1)
    return Clip(P, tuple(joints), float(fps), _units(units or "m", path, None), None if mask.all() else mask)


READERS = {".bvh": read_bvh, ".npz": read_npz, ".csv": read_csv}


def read_input(path: Path, units=None, fps=None) -> Clip:
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise InputError(f"{path}: unsupported input type; valid: {', '.join(SUFFIXES)}")
    return reader(path, units, fps)


def solve_file(solver, src: Path, dst: Path, layout="auto", units=None, fps=None) -> Path:
    """Solve one file into a BVH at ``dst``; errors name ``src``."""
    from rtik.solve.solver import solve_sequence

    clip = read_input(src, units, fps)
    lay = "bvh" if layout == "auto" else layout
    try:
        out = solve_sequence(solver, clip.positions, clip.fps, clip.mask, lay, clip.units, joints=clip.joints)
    except RtikError as e:
        raise type(e)(f"{src}: {e}") from e
    scale = 1.0 / UNITS[clip.units]
    skel = kinematics.rescale_skeleton(solver.skeleton, out["bone_lengths"]).scaled(scale)
    if not any(skel.channels):
        from rtik.geometry.skeleton import Skeleton

        rot = ("Zrotation", "Xrotation", "Yrotation")
        chans = [
            (("Xposition", "Yposition", "Zposition") if j == skel.motion_root() else ()) + rot for j in range(len(skel))
        ]
        skel = Skeleton(skel.names, skel.parents, skel.offsets, chans, skel.end_sites)
    motion = bvh.from_pose(skel, out["local_quats"], 1.0 / clip.fps, out["root_pos"] * scale, source=str(src))
    dst.parent.mkdir(parents=True, exist_ok=True)
    bvh.write(dst, motion)
    return dst


def register(sub) -> None:
    p = sub.add_parser(
        "solve", help="solve joint positions (BVH, NPZ, CSV) into a BVH of rotations", description=__doc__
    )
    p.add_argument("input", type=Path, help="a .bvh, .npz or .csv file, or a folder of them")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .bvh file (a folder for a folder input)")
    p.add_argument("--model", default=None, help="model pack folder (default: the shipped model)")
    p.add_argument("--backend", default="onnx", help="inference backend: onnx, onnx-int8, onnx-cuda, tensorrt, torch")
    p.add_argument("--layout", default="auto", choices=("auto", *LAYOUTS), help="input joint layout (auto: by name)")
    p.add_argument("--units", choices=tuple(UNITS), default=None, help="input length unit (default: guessed/metres)")
    p.add_argument("--fps", type=_positive, default=None, help="frame rate override (Hz)")
    p.set_defaults(func=run)


def _positive(s: str) -> float:
    import argparse

    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {s}")
    return v


def _progress(items, desc: str):
    try:
        from tqdm import tqdm

        return tqdm(items, desc=desc, unit="file", file=sys.stderr)
    except ImportError:
        return items


def run(args) -> int:
    from rtik.solve.solver import Solver

    src: Path = args.input
    if not src.exists():
        raise InputError(f"{src}: no such file or folder")
    solver = Solver.from_path(args.model, backend=args.backend)
    opts = {"layout": args.layout, "units": args.units, "fps": args.fps}
    if src.is_file():
        out = solve_file(solver, src, args.output, **opts)
        print(f"{src} -> {out}")
        return 0
    files = sorted(f for f in src.iterdir() if f.suffix.lower() in SUFFIXES)
    if not files:
        raise InputError(f"{src}: no {', '.join(SUFFIXES)} files in this folder")
    failed = 0
    for f in _progress(files, "solve"):
        try:
            solve_file(solver, f, args.output / (f.stem + ".bvh"), **opts)
        except RtikError as e:
            msg = str(e) if str(f) in str(e) else f"{f}: {e}"
            print(f"rtik solve: error: {msg}", file=sys.stderr)
            failed += 1
    print(f"solved {len(files) - failed}/{len(files)} files into {args.output}")
    return 1 if failed else 0
