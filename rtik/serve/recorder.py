"""Live BVH recording, crash-safe, and the repair of files cut short (``rtik recover``).

A recording writes the BVH header with a frame count padded to :data:`COUNT_WIDTH` characters, then one line per
solved frame (converted in batches, off the solver's thread in the daemon), flushes at least every
``flush_interval`` seconds (at most 1 s of motion is lost to a crash) and rewrites the count in place on close.
A file cut short by a crash still has the padded placeholder: :func:`recover` counts its complete frame lines,
drops a partial last line and writes the true count.

Frames are recorded in the model skeleton (offsets and root translation scaled to ``units``: centimetres by
default, like the source mocap and what most DCC importers assume; or metres). Names are confined to the
recordings folder: plain file names only (see :func:`check_name`). A write that fails (a full disk: ENOSPC)
ends that recording with the error kept in :attr:`Recording.error`; the caller counts it and the stream goes on.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import numpy as np

from rtik.errors import InputError, RtikError
from rtik.formats import bvh, units
from rtik.geometry.skeleton import Skeleton

COUNT_WIDTH = 10
UNIT_SCALE = {u: 1.0 / m for u, m in units.METRES.items()}  # file units per metre
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
#: frames used to estimate the frame time when the stream's rate is not known
_ESTIMATE_FRAMES = 8


class RecordError(RtikError):
    """A recording that cannot be started, written or repaired."""


def check_name(name: str) -> str:
    """``name`` with ``.bvh`` appended if missing, if it is a plain file name: 1-128 characters from
    ``A-Z a-z 0-9 _ . -``, starting with a letter or digit, no ``..`` (so no path, no traversal)."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise RecordError(
            f"invalid recording name {name!r}: use a plain file name of 1-128 characters from A-Z a-z 0-9 _ . - "
            "starting with a letter or digit (no folders, no '..')"
        )
    return name if name.lower().endswith(".bvh") else name + ".bvh"


def resolve(folder, name: str) -> Path:
    """Path of recording ``name`` inside ``folder``; never outside it."""
    root = Path(folder).resolve()
    path = (root / check_name(name)).resolve()
    if path.parent != root:
        raise RecordError(f"recording name {name!r} leaves the recordings folder {root}")
    return path


class Recording:
    """One stream's BVH being written.

    ``write`` only queues a frame (cheap: the solver thread calls it); ``flush`` converts the queued frames in one
    batch and writes them. A recording flushes itself from ``write`` once ``flush_interval`` has passed, unless
    ``auto_flush=False``, where the owner calls ``flush`` from another thread (the daemon's recorder thread) at
    least that often. ``close`` flushes and finalises. Thread-safe between one writer and one flusher.

    Args:
        path: the file (created; an existing file is never overwritten).
        skeleton: output skeleton, offsets in metres.
        units: ``"cm"`` or ``"m"`` in the file.
        frame_time: seconds per frame, or ``None`` to estimate it from the first frames' timestamps.
        flush_interval: seconds between flushes, at most.
        auto_flush: flush from ``write`` when due.
        opener: ``open``-like callable (tests inject failing files through it).
        convert: ``(local_quats (F, J, 4), root (F, 3) metres) -> (local_quats (F, Jo, 4), root (F, 3))`` turning
            the frames written into ``skeleton``'s (another rig; run at flush, off the solver thread), or None.
    """

    def __init__(self, path, skeleton: Skeleton, units: str = "cm", frame_time: float | None = None,
                 flush_interval: float = 1.0, auto_flush: bool = True, opener=open, convert=None):  # fmt: skip
        if units not in UNIT_SCALE:
            raise InputError(f"unknown recording units {units!r}; valid: {', '.join(UNIT_SCALE)}")
        self.path = Path(path)
        self.scale = UNIT_SCALE[units]
        self.skeleton = skeleton.scaled(self.scale)
        self.frame_time = frame_time
        self.flush_interval = flush_interval
        self.auto_flush = auto_flush
        self.convert = convert
        self.frames = 0  # frames written to the file
        self.error: str | None = None
        self.closed = False
        self._queue: list[tuple[np.ndarray, np.ndarray, float]] = []  # (local_quats (J, 4), root (3,), t)
        self._queue_lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._started = False
        self._last_flush = time.monotonic()
        self._count_pos = 0
        try:
            self._f = opener(self.path, "xb")
        except OSError as e:
            raise RecordError(f"cannot create recording {self.path}: {e.strerror or e}") from e

    def write(self, local_quats, root_pos, timestamp: float = 0.0) -> bool:
        """Queue one frame: ``local_quats (J, 4)`` XYZW, ``root_pos (3,)`` metres, source ``timestamp`` (s).
        False once the recording has failed or was closed (see :attr:`error`)."""
        if self.closed:
            return False
        item = (np.array(local_quats, dtype=np.float64), np.array(root_pos, dtype=np.float64), float(timestamp))
        with self._queue_lock:
            self._queue.append(item)
        if self.auto_flush and time.monotonic() - self._last_flush >= self.flush_interval:
            return self.flush()
        return True

    def flush(self, final: bool = False) -> bool:
        """Write the queued frames and flush the file; False if the recording has failed."""
        with self._io_lock:
            if self.closed:
                return self.error is None
            self._last_flush = time.monotonic()
            with self._queue_lock:
                if not self._started and self.frame_time is None and len(self._queue) < _ESTIMATE_FRAMES and not final:
                    return True  # still gathering frames to measure the rate
                batch, self._queue = self._queue, []
            try:
                self._write(batch)
                self._f.flush()
            except OSError as e:
                self._fail(e)
                return False
            return True

    def _write(self, batch) -> None:
        if not self._started:
            if self.frame_time is None:
                dt = np.diff([b[2] for b in batch])
                dt = dt[dt > 0]
                self.frame_time = float(np.median(dt)) if dt.size else 1.0 / 30.0
            text = bvh.header(self.skeleton, self.frame_time, 0, COUNT_WIDTH)
            self._count_pos = len(text[: text.index("Frames:")].encode()) + len("Frames: ")
            self._f.write(text.encode())
            self._started = True
        if not batch:
            return
        q = np.stack([b[0] for b in batch])  # (F, J, 4)
        r = np.stack([b[1] for b in batch])  # (F, 3) metres
        if self.convert is not None:
            q, r = self.convert(q, r)
        r = r * self.scale
        self._f.write(bvh.format_frames(bvh.channels_from_pose(self.skeleton, q, r)).encode())
        self.frames += len(batch)

    def _fail(self, e: OSError) -> None:
        self.error = f"{self.path}: write failed: {e.strerror or e}"
        self.closed = True
        try:
            self._f.close()
        except OSError:
            pass
        try:  # leave a readable file behind if the disk lets us
            recover(self.path)
        except (RtikError, OSError):
            pass

    def close(self) -> bool:
        """Write what is queued, the final frame count, and close. True if the file is complete."""
        if not self.flush(final=True):
            return False
        with self._io_lock:
            if self.closed:
                return self.error is None
            try:
                self._f.seek(self._count_pos)
                self._f.write(str(self.frames).ljust(COUNT_WIDTH).encode())
                self._f.close()
            except OSError as e:
                self._fail(e)
                return False
            self.closed = True
            return True

    def info(self) -> dict:
        return {"path": str(self.path), "frames": self.frames, "error": self.error, "closed": self.closed}


def recover(path) -> int:
    """Repair a recording cut short: count the complete frame lines, drop a partial last line, rewrite the
    header's frame count. Returns the number of frames kept. Raises RecordError if there is no BVH header."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise RecordError(f"cannot read {p}: {e.strerror or e}") from e
    text = raw.decode("utf-8", errors="replace")
    m = re.search(r"^Frames:[ \t]*(\S*)[ \t]*\r?\n^Frame Time:[^\n]*\n", text, re.MULTILINE)
    if not m or not text.startswith("HIERARCHY"):
        raise RecordError(f"{p}: not a BVH recording (no HIERARCHY header with 'Frames:' and 'Frame Time:')")
    try:
        n_channels = bvh.parse(text[: m.start()] + "Frames: 0\nFrame Time: 1\n", str(p)).skeleton.num_channels
    except RtikError as e:
        raise RecordError(f"{p}: damaged header: {e}") from e
    lines = text[m.end() :].split("\n")[:-1]  # the last piece has no newline: empty, or cut mid-number
    keep = []
    end = m.end()  # offset just past the last complete frame line
    for line in lines:
        vals = line.split()
        if vals and (len(vals) != n_channels or not _numeric(vals)):
            break
        if vals:
            keep.append(line.rstrip("\r"))
        end += len(line) + 1
    count = str(len(keep))
    field = text[m.start(1) : text.index("\n", m.start(1))].rstrip("\r")  # the count and its padding
    if raw.isascii() and len(count) <= len(field):
        # in place: the padded count is overwritten and the partial tail cut off, so no new disk space is
        # needed (a recording stopped by a full disk is repaired on that disk)
        try:
            with open(p, "r+b") as f:
                f.seek(m.start(1))
                f.write(count.ljust(len(field)).encode())
                f.truncate(end)
            return len(keep)
        except OSError as e:
            raise RecordError(f"cannot repair {p}: {e.strerror or e}") from e
    head = text[: m.start(1)] + count.ljust(max(len(m.group(1)), len(count))) + text[m.end(1) : m.end()]
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(head + "".join(line + "\n" for line in keep), encoding="utf-8", newline="\n")
    os.replace(tmp, p)
    return len(keep)


def _numeric(vals) -> bool:
    try:
        for v in vals:
            float(v)
    except ValueError:
        return False
    return True


def rig_writer(model_skeleton: Skeleton, path, prior_local=None):
    """What a recording needs to be written in the rig of the BVH file ``path``: ``(skeleton in metres, unit,
    convert)`` for :class:`Recording` (``unit``: the rig file's own: m, cm, mm or inches, judged by its legs).
    The model's output goes onto the body (:mod:`rtik.formats.rig`) and from there onto the rig; a model skeleton
    whose zero pose is not a T-pose has its twist aligned on ``prior_local`` (its mean pose). Raises
    :class:`RtikError` (a rig that cannot be read or mapped)."""
    from rtik.formats.rig import Rig, clip_arrays, leg_length, retarget

    motion = bvh.read(path)
    skel, q, root = clip_arrays(motion)
    dst = Rig.from_motion(motion) if motion.num_frames > 1 else Rig.from_skeleton(skel)
    legs = leg_length(dst.body)
    unit = units.from_legs(legs)
    if unit is None:
        raise RecordError(f"{path}: cannot tell the rig's length unit (its legs are {legs:g} long in it)")
    scale = units.METRES[unit]
    dst = Rig.from_skeleton(skel.scaled(scale), up=dst.up)  # the same rig in metres
    if motion.num_frames > 1:
        dst.fit([(q, root * scale)])
    src = Rig.from_skeleton(model_skeleton)
    if prior_local is not None:
        q = np.asarray(prior_local, dtype=np.float64)[None]
        src.fit([(q, np.zeros((1, 3)))])

    def convert(q, root):
        return retarget(src, q, root, dst)

    return skel.scaled(scale), unit, convert
