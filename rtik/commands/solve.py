"""``rtik solve INPUT -o OUTPUT``: solve joint positions from files into BVH rotations, offline.

INPUT is a ``.bvh`` (joint positions by forward kinematics; its rotations are ignored), a ``.npz`` (``positions``
[F, J, 3], ``joints`` [J] names, ``fps``, optional ``units`` "m"/"cm"/"mm" (default m) and ``mask`` [F, J]) or a
``.csv`` (header ``frame,time,<joint>_x,<joint>_y,<joint>_z,...``; ``frame`` and ``time`` optional, an empty or
NaN cell marks the joint missing in that row), read by :mod:`rtik.formats.points`. OUTPUT is a BVH in the model's
skeleton, with bone lengths calibrated from the input, in the input's unit. A folder in gives a folder out. Every
frame goes through the same per-frame path as live streams (:func:`rtik.solve.solver.solve_sequence`).

A BVH whose world has another up axis than Y (the model's) is turned upright before solving; the result in the
model's skeleton is Y up. ``--rig input`` writes the result in the input BVH's own rig instead (its joints,
offsets, channel orders, unit and axes), ``--rig RIG.bvh`` in the rig of another BVH file: the model's output goes
onto the body and from there onto that rig (:mod:`rtik.formats.rig`). Joints the body does not model (fingers,
twist bones, extra spine segments) keep their rest rotation relative to the rig's T-pose.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from rtik.commands.options import add_ray_options, fraction
from rtik.errors import InputError, RtikError
from rtik.formats import bvh
from rtik.formats.layouts import NAMES as LAYOUTS
from rtik.formats.points import SUFFIXES, UNITS, read_input
from rtik.geometry import kinematics


def solve_file(solver, src: Path, dst: Path, layout="auto", units=None, fps=None, rig=None) -> Path:
    """Solve one file into a BVH at ``dst``; errors name ``src``. ``rig``: None (the model's skeleton),
    ``"input"`` (the input BVH's rig) or the path of a BVH whose rig the output takes."""
    from rtik.solve.solver import solve_sequence

    clip = read_input(src, units, fps)
    lay = "bvh" if layout == "auto" else layout
    positions = clip.positions
    if layout == "auto" and clip.skeleton is not None:
        lay, positions = _rig_input(clip.skeleton, positions, lay, clip.joints)
    try:
        out = solve_sequence(solver, positions, clip.fps, clip.mask, lay, clip.units, joints=clip.joints)
    except RtikError as e:
        raise type(e)(f"{src}: {e}") from e
    scale = 1.0 / UNITS[clip.units]
    # the calibrated body: bone lengths and where the children of the hips and chest sit
    calibrated = (
        out["skeleton"] if "skeleton" in out else kinematics.rescale_skeleton(solver.skeleton, out["bone_lengths"])
    )
    skel = calibrated.scaled(scale)
    if not any(skel.channels):
        from rtik.geometry.skeleton import Skeleton

        rot = ("Zrotation", "Xrotation", "Yrotation")
        chans = [
            (("Xposition", "Yposition", "Zposition") if j == skel.motion_root() else ()) + rot for j in range(len(skel))
        ]
        skel = Skeleton(skel.names, skel.parents, skel.offsets, chans, skel.end_sites)
    q, root = out["local_quats"], out["root_pos"] * scale
    if clip.repeats is not None and (clip.repeats >= 0).any():  # rows holding another row's pose take its output
        held = np.flatnonzero(clip.repeats >= 0)
        q, root = q.copy(), root.copy()
        q[held], root[held] = q[clip.repeats[held]], root[clip.repeats[held]]
    if rig is not None:
        skel, q, root = _in_rig(rig, src, skel, q, root)
    motion = bvh.from_pose(skel, q, 1.0 / clip.fps, root, source=str(src))
    dst.parent.mkdir(parents=True, exist_ok=True)
    bvh.write(dst, motion)
    return dst


def _rig_input(skeleton, positions, fallback, names):
    """``(layout, positions)`` of a BVH (rows ``names``: its joints, then its End Sites): its joints onto the
    model's by its rig mapping (name and structure: CMU's ``LeftShoulder`` is an upper arm, a ``*Dummy`` merges
    with its neighbour), head, hand and toe tips onto the leaf markers by name, and its positions turned Y up (the
    model's world) when the file's world has another up axis; a rig the mapping refuses falls back to names alone
    and the positions as they are."""
    from rtik.formats import markers
    from rtik.formats.layouts import Layout, from_names
    from rtik.formats.rig import Rig, RigError, axis_matrix

    try:
        rig = Rig.from_skeleton(skeleton)
    except RigError:
        return fallback, positions
    up = rig.up_of(positions)
    if up != "+Y":
        positions = positions @ axis_matrix(up).T
    tips = from_names(tuple(names), markers.NAMES).rows
    return Layout("rig", tuple(names), {**rig.layout().rows, **tips}), positions


def _in_rig(rig, src: Path, skel, q, root):
    """The solved motion (model skeleton ``skel``) in the rig ``rig`` names: ``(skeleton, local_quats, root)``."""
    from rtik.formats.rig import Rig, clip_arrays, retarget

    path = src if rig == "input" else Path(rig)
    if path.suffix.lower() != ".bvh":
        raise InputError(f"{src}: --rig {rig} needs a BVH rig, and {path} is not a .bvh file")
    target = bvh.read(path)
    dst_skel = clip_arrays(target)[0]
    dst = Rig.from_motion(target) if target.num_frames > 1 else Rig.from_skeleton(dst_skel)
    src_rig = Rig.from_skeleton(skel).fit([(q, root)])
    q2, root2 = retarget(src_rig, q, root, dst)
    return dst_skel, q2, root2


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
    p.add_argument(
        "--rig",
        default=None,
        help="write the output in a BVH rig: 'input' (the input file's own) or a .bvh file (default: the model's)",
    )
    p.add_argument(
        "--twist-prior",
        type=fraction,
        default=1.0,
        metavar="W",
        help="how far the pack's twist_prior joints (clavicles, neck, limbs, feet) take the mean pose's twist "
        "instead of the network's, 0..1 (default 1: better on performers the model has not seen; 0 for those "
        "it was trained on; docs/solver.md)",
    )
    add_ray_options(p, "files")
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
    from rtik.solve.solver import Solver, SolverOptions

    src: Path = args.input
    if not src.exists():
        raise InputError(f"{src}: no such file or folder")
    opts = {"layout": args.layout, "units": args.units, "fps": args.fps, "rig": args.rig}
    if getattr(args, "ray", None) is not None:
        return run_ray(args, src, opts)
    solver = Solver.from_path(args.model, backend=args.backend, options=SolverOptions(twist_prior=args.twist_prior))
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


# ------------------------------------------------------------------------------------------------------ Ray
def _ray_setup(model, backend, twist_prior: float = 1.0):
    """A worker's solver (built once per worker)."""
    from rtik.solve.solver import Solver, SolverOptions

    return Solver.from_path(model, backend=backend, options=SolverOptions(twist_prior=twist_prior))


def _ray_solve(solver, job) -> tuple[bytes | None, str | None]:
    """One file on a worker: ``job = (input path, its bytes, rig file name and bytes or None, options)``; the
    files travel with the job (the worker may be another machine) and the BVH comes back: ``(bvh, None)`` or
    ``(None, error message)``."""
    import tempfile

    path, data, rig, opts = job
    with tempfile.TemporaryDirectory(prefix="rtik-solve-") as tmp:
        src = Path(tmp) / "in" / Path(path).name
        src.parent.mkdir()
        src.write_bytes(data)
        if rig is not None:
            (Path(tmp) / rig[0]).write_bytes(rig[1])
            opts = {**opts, "rig": str(Path(tmp) / rig[0])}
        dst = Path(tmp) / "out.bvh"
        try:
            solve_file(solver, src, dst, **opts)
        except RtikError as e:
            msg = str(e).replace(str(src), path)
            return None, msg if path in msg else f"{path}: {msg}"
        return dst.read_bytes(), None


def run_ray(args, src: Path, opts: dict) -> int:
    """``rtik solve --ray``: every file solved whole by one worker of a Ray cluster (rtik.serve.ray_cluster);
    the outputs are written here, as a serial run writes them."""
    from functools import partial

    from rtik.serve import ray_cluster

    files = [src] if src.is_file() else sorted(f for f in src.iterdir() if f.suffix.lower() in SUFFIXES)
    if not files:
        raise InputError(f"{src}: no {', '.join(SUFFIXES)} files in this folder")
    rig = None
    if opts["rig"] not in (None, "input"):
        rig_path = Path(opts["rig"])
        if not rig_path.is_file():
            raise InputError(f"--rig {rig_path}: no such file")
        rig = ("rig-" + rig_path.name, rig_path.read_bytes())
    dsts = [args.output] if src.is_file() else [args.output / (f.stem + ".bvh") for f in files]
    ray_cluster.connect(args.ray, num_cpus=args.workers)
    workers = args.workers or ray_cluster.cluster_cpus()
    jobs = ((str(f), f.read_bytes(), rig, opts) for f in files)
    bar = _bar(len(files), f"solve ({workers} Ray workers)")
    failed = 0

    def done(i: int, out) -> None:
        nonlocal failed
        data, err = out
        if err is None:
            dsts[i].parent.mkdir(parents=True, exist_ok=True)
            dsts[i].write_bytes(data)
        else:
            print(f"rtik solve: error: {err}", file=sys.stderr)
            failed += 1
        bar.update(1)

    try:
        ray_cluster.map_items(
            partial(_ray_setup, args.model, args.backend, args.twist_prior), _ray_solve, jobs, workers, done
        )
    finally:
        bar.close()
    if src.is_file():
        if failed:
            return 1
        print(f"{src} -> {args.output}")
        return 0
    print(f"solved {len(files) - failed}/{len(files)} files into {args.output}")
    return 1 if failed else 0


def _bar(total: int, desc: str):
    """A progress bar on stderr (tqdm), or a line per file without it."""
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="file", file=sys.stderr)
    except ImportError:

        class Lines:
            n = 0

            def update(self, k: int) -> None:
                self.n += k
                print(f"{desc}: {self.n}/{total}", file=sys.stderr)

            def close(self) -> None:
                pass

        return Lines()
