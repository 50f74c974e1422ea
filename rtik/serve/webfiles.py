"""``rtik view``: the live view's page on files (docs/view.md). A BVH is drawn as its own skeleton (positions by
forward kinematics, turned Y up, in metres); a points file (``.npz``, ``.csv``) as points. Two paths are an input
and its solved output, drawn side by side; two folders are paired by file stem, as ``rtik solve IN/ -o OUT/``
names its outputs.

The page asks ``/api/info?group=G`` for the clips of group ``G`` (one file, or an input and its output) and the
list of groups, then ``/clip/K?group=G`` for clip ``K``'s positions: float32 ``(F, J, 3)`` little-endian, metres,
NaN where a joint is missing. Clips are read when first asked for and the last few are kept.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np

from rtik.errors import InputError, RtikError
from rtik.formats.points import SUFFIXES
from rtik.formats.units import METRES
from rtik.serve.web import jsonable, skeleton_message, static_files
from rtik.serve.webserver import Handler, Response

log = logging.getLogger("rtik.view")

SIDE_GAP = 1.2  # m between an input and its output
CACHED = 4  # clips kept in memory


@dataclass(frozen=True)
class ViewClip:
    """A file ready to draw: ``positions (F, J, 3)`` float32 metres Y up, joint ``names``, ``bones`` and ``joints``
    to draw (see :func:`rtik.serve.web.skeleton_message`), ``fps``, the file's length ``unit``."""

    positions: np.ndarray
    names: tuple[str, ...]
    bones: list
    joints: list
    fps: float
    unit: str


def groups_of(paths: list[Path]) -> list[list[tuple[Path, str]]]:
    """What ``rtik view PATH [PATH]`` shows: a list of groups, each ``[(file, side)]`` with side ``""``,
    ``"input"`` or ``"output"``. One file: one group; a folder: a group per file; two files: one group of both;
    two folders: groups of the files paired by stem (a file without a partner alone). InputError for anything
    else."""
    if not 1 <= len(paths) <= 2:
        raise InputError(f"give one file or folder, or an input and its output (two paths); got {len(paths)}")
    for p in paths:
        if not p.exists():
            raise InputError(f"{p}: no such file or folder")
    files = lambda d: sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in SUFFIXES)  # noqa: E731
    if len(paths) == 1:
        (p,) = paths
        out = [[(f, "")] for f in files(p)] if p.is_dir() else [[(p, "")]]
    elif all(p.is_file() for p in paths):
        out = [[(paths[0], "input"), (paths[1], "output")]]
    elif all(p.is_dir() for p in paths):
        outputs = {f.stem: f for f in files(paths[1])}
        out = [[(f, "input"), (outputs.pop(f.stem), "output")] if f.stem in outputs else [(f, "input")]
               for f in files(paths[0])]  # fmt: skip
        out += [[(f, "output")] for f in outputs.values()]
    else:
        raise InputError(f"{paths[0]} and {paths[1]}: give two files or two folders, not one of each")
    if not out:
        raise InputError(f"{paths[0]}: no {', '.join(SUFFIXES)} files in this folder")
    return out


def read_clip(path: Path, units: str | None = None, stride: int = 1) -> ViewClip:
    """A file as drawn: BVH by forward kinematics in its own rig (turned Y up where its world is not), points files
    as they are; every ``stride``-th frame. InputError naming the file when it cannot be read."""
    from rtik.formats import bvh, points

    try:
        if path.suffix.lower() != ".bvh":
            c = points.read_input(path, units=units)
            pos = np.where(c.mask[..., None], c.positions, np.nan) if c.mask is not None else c.positions
            n = len(c.joints)
            return ViewClip(_metres(pos[::stride], c.units), tuple(c.joints), [], list(range(n)), c.fps / stride,
                            c.units)  # fmt: skip
        from rtik.formats.rig import Rig, RigError, axis_matrix, clip_arrays
        from rtik.geometry.kinematics import forward_kinematics

        m = bvh.read(path)
        unit = units or bvh.guess_units(m) or "m"
        skel, q, root = clip_arrays(m)
        pos = forward_kinematics(skel, q[::stride], root[::stride])[0] if len(q) else m.positions()[::stride]
        try:
            up = Rig.from_skeleton(skel).up_of(pos)
            if up != "+Y":
                pos = pos @ axis_matrix(up).T
        except RigError:
            pass  # a rig that does not map onto a body: drawn in its own axes
        hello = skeleton_message(skel, "files")
        return ViewClip(_metres(pos, unit), tuple(skel.names), hello["bones"], hello["joints"],
                        m.fps / stride, unit)  # fmt: skip
    except RtikError as e:
        raise InputError(str(e) if str(path) in str(e) else f"{path}: {e}") from e
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: {e}") from e


def _metres(pos, unit: str) -> np.ndarray:
    return (np.asarray(pos, dtype=np.float64) * METRES[unit]).astype(np.float32)


class FilesView(Handler):
    """The page, the groups of ``paths`` (see :func:`groups_of`) and their clips, for a
    :class:`~rtik.serve.webserver.WebServer`."""

    def __init__(self, paths: list[Path], units: str | None = None, stride: int = 1):
        self.groups = groups_of(paths)
        self.units, self.stride = units, stride
        self._files = static_files()
        self._cache: OrderedDict[Path, ViewClip] = OrderedDict()

    def clip(self, path: Path) -> ViewClip:
        c = self._cache.get(path)
        if c is None:
            c = self._cache[path] = read_clip(path, self.units, self.stride)
            while len(self._cache) > CACHED:
                self._cache.popitem(last=False)
        self._cache.move_to_end(path)
        return c

    def _group(self, query: str) -> int | None:
        try:
            g = int(parse_qs(query).get("group", ["0"])[0])
        except ValueError:
            return None
        return g if 0 <= g < len(self.groups) else None

    def get(self, path: str, query: str) -> Response | None:
        if path in self._files:
            body, kind = self._files[path]
            return Response(200, body, kind)
        g = self._group(query)
        if path == "/api/info":
            if g is None:
                return Response(404, b"no such group\n")
            return self._json(self.info(g))
        if path.startswith("/clip/") and g is not None:
            try:
                k = int(path.removeprefix("/clip/"))
                file, _ = self.groups[g][k]
            except (ValueError, IndexError):
                return None
            try:
                return Response(200, self.clip(file).positions.astype("<f4").tobytes(), "application/octet-stream")
            except InputError as e:
                return Response(400, f"{e}\n".encode())
        return None

    def info(self, g: int) -> dict:
        """Group ``g``'s clips (a clip that cannot be read is listed with its error) and every group's name."""
        clips = []
        for k, (file, side) in enumerate(self.groups[g]):
            entry = {"name": file.name, "side": side, "offset": k * SIDE_GAP}
            try:
                c = self.clip(file)
                entry.update(frames=len(c.positions), fps=c.fps, unit=c.unit, names=list(c.names), bones=c.bones,
                             joints=c.joints)  # fmt: skip
            except InputError as e:
                entry["error"] = str(e)
            clips.append(entry)
        names = [" | ".join(f.name for f, _ in grp) for grp in self.groups]
        return {"mode": "files", "group": g, "groups": names, "clips": clips}

    @staticmethod
    def _json(doc) -> Response:
        return Response(200, json.dumps(jsonable(doc)).encode(), "application/json")
