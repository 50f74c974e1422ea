"""Joint positions from files: ``.bvh`` (positions by forward kinematics; rotations ignored), ``.npz`` and
``.csv``, read into a :class:`Clip` in the file's own length unit.

- npz: arrays ``positions`` [F, J, 3], ``joints`` [J] names, ``fps``, optional ``units`` "m"/"cm"/"mm" (default
  m) and ``mask`` [F, J]; no pickles (:func:`npz_arrays` reads any npz safely).
- csv: header ``frame,time,<joint>_x,<joint>_y,<joint>_z,...``; ``frame`` and ``time`` optional, an empty or NaN
  cell marks the joint missing in that row.

A damaged or hostile file raises :class:`~rtik.errors.InputError` naming it. Used by ``rtik solve`` and
``rtik send``.
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtik.errors import InputError
from rtik.formats import bvh
from rtik.formats.units import METRES

#: metres per unit of the length units a file may be in
UNITS = METRES
SUFFIXES = (".bvh", ".npz", ".csv")


@dataclass(frozen=True)
class Clip:
    """Positions read from a file. ``positions (F, J, 3)`` in ``units``; ``mask (F, J)`` bool or None;
    ``skeleton``: the BVH's skeleton (None for points files), from which a rig mapping can be made; ``repeats``
    ``(F,)`` int or None: for a row that repeats another row's pose (a video frame with no person, held), the index
    of that row, else -1 (its output is that row's output)."""

    positions: np.ndarray
    joints: tuple[str, ...]
    fps: float
    units: str
    mask: np.ndarray | None = None
    skeleton: object = None
    repeats: np.ndarray | None = None


def _units(value, path: Path, guess: str | None) -> str:
    u = value or guess
    if u is None:
        raise InputError(f"{path}: cannot guess the length unit; pass --units ({', '.join(UNITS)})")
    if u not in UNITS:
        raise InputError(f"{path}: unknown units {u!r}; valid units: {', '.join(UNITS)}")
    return u


def read_bvh(path: Path, units=None, fps=None) -> Clip:
    """Joint positions of a BVH by forward kinematics. Position channels below the root are read as
    :func:`rtik.formats.rig.clip_arrays` reads them (a fixed bone, or ignored where an exporter wrote the joint's
    world position into them)."""
    from rtik.formats.rig import clip_arrays
    from rtik.geometry.kinematics import forward_kinematics

    m = bvh.read(path)
    u = _units(units, path, bvh.guess_units(m))
    skel, q, root = clip_arrays(m)
    if not len(q):
        return Clip(m.positions(), m.skeleton.names, float(fps or m.fps), u, skeleton=skel)
    positions, G = forward_kinematics(skel, q, root)
    ends, names = end_sites(skel, positions, G)
    return Clip(np.concatenate([positions, ends], axis=1), tuple(skel.names) + names, float(fps or m.fps), u,
                skeleton=skel)  # fmt: skip


def end_sites(skel, positions, global_quats) -> tuple[np.ndarray, tuple[str, ...]]:
    """World positions ``(F, E, 3)`` and names (``<joint>_End``) of a skeleton's End Sites that have a length
    (at least 0.5 % of the first frame's extent: zero-length end sites say nothing), from its joints' positions
    ``(F, J, 3)`` and global rotations ``(F, J, 4)``. Head tops, hand and toe tips among them become leaf markers
    (:mod:`rtik.formats.markers`) for a model that reads them."""
    from rtik.geometry import rotations as rot

    extent = float(np.ptp(positions[0], axis=0).max()) if len(positions) else 0.0
    taken = set(skel.names)
    rows, names = [], []
    for j, e in enumerate(skel.end_sites):
        name = f"{skel.names[j]}_End"
        if e is None or name in taken or np.linalg.norm(e) <= 0.005 * extent:
            continue
        rows.append(positions[:, j] + rot.quat_apply(global_quats[:, j], np.asarray(e, dtype=np.float64)))
        names.append(name)
    if not rows:
        return np.zeros(positions.shape[:1] + (0, 3)), ()
    return np.stack(rows, axis=1), tuple(names)


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
    return Clip(P, joints, float(rate), _units(u, path, None), mask, repeats=_repeats(data, len(P), path))


def _repeats(data, F: int, path: Path) -> np.ndarray | None:
    """``Clip.repeats`` from a landmarks file's ``frames`` (each row's video frame) and ``source`` (the video frame
    whose landmarks it holds), where it has them (``rtik video --landmarks``)."""
    if "frames" not in data or "source" not in data:
        return None
    frames, source = data["frames"].astype(np.int64), data["source"].astype(np.int64)
    if frames.shape != (F,) or source.shape != (F,):
        raise InputError(f"{path}: frames and source must have one entry per row ({F}), got {frames.shape}, "
                         f"{source.shape}")  # fmt: skip
    row = {int(f): r for r, f in enumerate(frames)}
    rep = np.full(F, -1, np.int64)
    for r in np.flatnonzero(frames != source):
        rep[r] = row.get(int(source[r]), -1)  # a source left out of the rows: solved as it is
    for r in np.flatnonzero(rep >= 0):  # a repeat of a repeat: of the row that has its own pose
        seen = {r}
        while rep[r] >= 0 and rep[rep[r]] >= 0 and rep[r] not in seen:
            seen.add(int(rep[r]))
            rep[r] = rep[rep[r]]
        if rep[r] in seen:  # a cycle: no row of its own to repeat
            rep[r] = -1
    return rep


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
