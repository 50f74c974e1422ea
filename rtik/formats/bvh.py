"""BVH reader and writer.

Reads any channel order, 3 or 6 (or any subset of the 6) channels on any joint, End Sites, tabs, repeated
spaces, CRLF and scientific notation. A malformed file raises :class:`~rtik.errors.BVHError` naming the file and
the line. Rotations come back as unit quaternions (XYZW) converted from each joint's own Euler order, so the
rest of rtik never sees Euler angles; the writer converts back to the skeleton's channel orders.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from dataclasses import dataclass

import numpy as np

from rtik.errors import BVHError
from rtik.formats._bvh_parse import parse_text
from rtik.geometry import rotations as rot
from rtik.geometry.skeleton import Skeleton


@dataclass(frozen=True, eq=False)
class Motion:
    """A BVH clip.

    Fields:
        skeleton: hierarchy, offsets and channel layout.
        frame_time: seconds per frame.
        channels: raw channel values ``(F, C)`` float64 in file order (degrees, skeleton units).
        source: file name the clip came from ("" if built in memory).
    """

    skeleton: Skeleton
    frame_time: float
    channels: np.ndarray
    source: str = ""

    @property
    def num_frames(self) -> int:
        return self.channels.shape[0]

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time if self.frame_time > 0 else 0.0

    def _columns(self, j: int) -> list[int]:
        start = sum(len(c) for c in self.skeleton.channels[:j])
        return list(range(start, start + len(self.skeleton.channels[j])))

    def local_positions(self) -> np.ndarray:
        """Per-frame local translation of each joint ``(F, J, 3)``: position channels where present, else
        the OFFSET (a position channel replaces the offset's component)."""
        skel = self.skeleton
        out = np.broadcast_to(skel.offsets, (self.num_frames, len(skel), 3)).copy()
        for j, chans in enumerate(skel.channels):
            for col, name in zip(self._columns(j), chans, strict=True):
                if name.endswith("position"):
                    out[:, j, "XYZ".index(name[0])] = self.channels[:, col]
        return out

    def local_quats(self) -> np.ndarray:
        """Local rotations ``(F, J, 4)`` XYZW; joints without rotation channels get identity."""
        skel = self.skeleton
        out = rot.quat_identity((self.num_frames, len(skel)))
        by_order: dict[str, tuple[list[int], list[list[int]]]] = {}  # one vectorised call per Euler order
        for j, chans in enumerate(skel.channels):
            cols = [c for c, n in zip(self._columns(j), chans, strict=True) if n.endswith("rotation")]
            if not cols:
                continue
            order = skel.rotation_order(j)
            # fewer than three rotation channels: pad with the missing axes, which stay at zero (column -1)
            order += "".join(a for a in "XYZ" if a not in order)
            joints, columns = by_order.setdefault(order, ([], []))
            joints.append(j)
            columns.append(cols + [-1] * (3 - len(cols)))
        padded = np.concatenate([self.channels, np.zeros((self.num_frames, 1))], axis=1)  # column -1 is 0
        for order, (joints, columns) in by_order.items():
            out[:, joints] = rot.euler_to_quat(padded[:, columns], order)  # (F, n, 3) -> (F, n, 4)
        return out

    def positions(self) -> np.ndarray:
        """Global joint positions ``(F, J, 3)`` by forward kinematics, skeleton units."""
        from rtik.geometry.kinematics import forward_kinematics

        pos, _ = forward_kinematics(self.skeleton, self.local_quats(), local_pos=self.local_positions())
        return pos


# ------------------------------------------------------------------------------------------------- reading
def parse(text: str | bytes, name: str = "<string>") -> Motion:
    """Parse BVH text (``str``, or ``bytes`` in UTF-8 or Latin-1); ``name`` appears in error messages.

    Motion lines beyond the header's frame count are ignored; fewer lines, a line with the wrong number of
    values, or a value that is not a finite number raise :class:`BVHError` naming the line.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        raw = bytes(text)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
    if "\n" not in text and "\r" in text:  # classic Mac line ends
        text = text.replace("\r", "\n")
    skel, frame_time, data = parse_text(text, name)
    return Motion(skel, frame_time, data, name)


def read(path_or_file, name: str | None = None) -> Motion:
    """Read a BVH from a path or a binary/text file object."""
    if hasattr(path_or_file, "read"):
        raw = path_or_file.read()
        label = name or getattr(path_or_file, "name", "<stream>")
    else:
        label = name or os.fspath(path_or_file)
        try:
            with open(path_or_file, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise BVHError(f"{label}: cannot read: {e.strerror or e}") from e
    return parse(raw, str(label))


# ------------------------------------------------------------------------------------------------- writing
_DECIMALS = 6  # written precision: 1e-6 degrees and skeleton units


def _fmt(x: float) -> str:
    return f"{round(float(x), _DECIMALS) + 0.0:.{_DECIMALS}f}"  # + 0.0 turns -0.0 into 0.0


def header(skel: Skeleton, frame_time: float, n_frames: int, frames_width: int = 0) -> str:
    """The HIERARCHY and MOTION header; ``frames_width`` pads the frame count so it can be rewritten in place."""
    out = io.StringIO()

    def joint(j: int, depth: int):
        ind = "\t" * depth
        kind = "ROOT" if skel.parents[j] < 0 else "JOINT"
        out.write(f"{ind}{kind} {skel.names[j]}\n{ind}{{\n")
        out.write(f"{ind}\tOFFSET {' '.join(_fmt(v) for v in skel.offsets[j])}\n")
        ch = skel.channels[j]
        out.write(f"{ind}\tCHANNELS {len(ch)}{''.join(' ' + c for c in ch)}\n")
        for c in skel.children(j):
            joint(c, depth + 1)
        e = skel.end_sites[j]
        if e is not None:
            out.write(f"{ind}\tEnd Site\n{ind}\t{{\n{ind}\t\tOFFSET {' '.join(_fmt(v) for v in e)}\n{ind}\t}}\n")
        out.write(f"{ind}}}\n")

    out.write("HIERARCHY\n")
    joint(0, 0)
    out.write(f"MOTION\nFrames: {str(n_frames).ljust(frames_width)}\nFrame Time: {frame_time:.10g}\n")
    return out.getvalue()


def channels_from_pose(skel: Skeleton, local_quats, root_pos=None, local_pos=None) -> np.ndarray:
    """Channel values ``(F, C)`` in the skeleton's layout from local rotations ``(F, J, 4)``.

    Position channels take ``local_pos (F, J, 3)`` if given, else the offsets, with ``root_pos (F, 3)``
    replacing the motion root's translation.
    """
    q = np.asarray(local_quats, dtype=np.float64)
    F, J = q.shape[:2]
    trans = np.broadcast_to(skel.offsets, (F, J, 3)).copy() if local_pos is None else np.array(local_pos)
    if root_pos is not None:
        trans[:, skel.motion_root()] = root_pos
    cols = []
    for j, chans in enumerate(skel.channels):
        order = skel.rotation_order(j)
        if order:
            # fewer than three rotation channels: the missing axes come last (as the reader pads them) and the
            # pose is assumed to turn about the written axes only
            eul = rot.quat_to_euler(q[:, j], order + "".join(a for a in "XYZ" if a not in order))
        k = 0
        for c in chans:
            if c.endswith("position"):
                cols.append(trans[:, j, "XYZ".index(c[0])])
            else:
                cols.append(eul[:, k])
                k += 1
    return np.stack(cols, axis=-1) if cols else np.zeros((F, 0))


def format_frames(channels) -> str:
    """Motion lines for ``channels (F, C)``, one frame a line, fixed-point with :data:`_DECIMALS` decimals."""
    ch = np.round(np.asarray(channels, dtype=np.float64), _DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0
    if ch.ndim != 2:
        raise BVHError(f"channels has shape {ch.shape}, expected (frames, channels)")
    line = " ".join([f"%.{_DECIMALS}f"] * ch.shape[1]) + "\n"
    return "".join(line % tuple(row) for row in ch.tolist())


def dumps(motion: Motion) -> str:
    return header(motion.skeleton, motion.frame_time, motion.num_frames) + format_frames(motion.channels)


def write(path, motion: Motion) -> None:
    """Write ``motion`` to ``path`` (atomically: a temporary file renamed into place)."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    text = dumps(motion)
    try:
        with open(tmp, "w", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise BVHError(f"{path}: cannot write: {e.strerror or e}") from e


def from_pose(skel: Skeleton, local_quats, frame_time: float, root_pos=None, source: str = "") -> Motion:
    """A :class:`Motion` from local rotations ``(F, J, 4)`` and the motion root's translation ``(F, 3)``."""
    return Motion(skel, frame_time, channels_from_pose(skel, local_quats, root_pos), source)


_BVH_RE = re.compile(r"\.bvh$", re.IGNORECASE)


def iter_archive(path, pattern: str = ""):
    """Yield ``(member_name, Motion | BVHError)`` for every ``.bvh`` in a tar archive (``.tar``, ``.tar.xz``, ...)
    in archive order, reading it as one stream (no backward seeks in the compressed data). ``pattern`` keeps
    names containing it. A malformed member yields its :class:`BVHError` instead of a Motion, so one bad file
    does not end the walk; a damaged archive raises BVHError."""
    import lzma
    import tarfile
    import zlib

    try:
        with tarfile.open(path, "r|*") as tar:
            for m in tar:
                if not (m.isfile() and _BVH_RE.search(m.name) and pattern in m.name):
                    continue
                label = f"{os.fspath(path)}:{m.name}"
                try:
                    yield m.name, read(tar.extractfile(m), name=label)
                except BVHError as e:
                    yield m.name, e
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error) as e:
        raise BVHError(f"{os.fspath(path)}: cannot read archive: {e}") from e


#: plausible hip heights per length unit (a standing adult's hips are ~0.8-1.2 m above the feet)
UNIT_HIP_HEIGHTS = {"m": (0.4, 2.5), "cm": (40.0, 250.0), "mm": (400.0, 2500.0)}


def hip_height(motion: Motion) -> float:
    """Median over frames of the motion root's height (Y up) above the lowest joint, in the file's unit."""
    P = motion.positions()  # (F, J, 3)
    if len(P) == 0:
        return float("nan")
    return float(np.median(P[:, motion.skeleton.motion_root(), 1] - P[:, :, 1].min(axis=1)))


def guess_units(motion: Motion) -> str | None:
    """``"m"``, ``"cm"``, ``"mm"`` or ``"in"`` judged from the length of the rig's legs (whatever its up axis and
    zero pose; :func:`rtik.formats.units.from_legs`) where the rig maps onto the body, else ``"m"``, ``"cm"`` or
    ``"mm"`` from :func:`hip_height` (Y up); ``None`` if nothing fits."""
    from rtik.formats.rig import Rig, RigError, clip_arrays, leg_length
    from rtik.formats.units import from_legs

    try:
        unit = from_legs(leg_length(Rig.from_skeleton(clip_arrays(motion)[0]).body))
    except RigError:
        unit = None
    if unit is not None:
        return unit
    h = hip_height(motion)
    for unit, (lo, hi) in UNIT_HIP_HEIGHTS.items():
        if lo <= h <= hi:
            return unit
    return None
