"""rtik's wire schema, shared by the daemon and :mod:`rtik.wire.client` (docs/protocol.md is the reference).

Every payload is one msgpack map with a version field ``v``. Arrays travel as little-endian float32 ``bytes``
(positions ``[n, 3]``, quaternions ``[J, 4]`` XYZW, root ``[3]``), masks as ``n`` bytes (non-zero = observed).
Lengths are metres unless a frame says otherwise (``units``); times are seconds (``float``).

Messages:
    frame     source -> daemon (ZeroMQ PUSH/PUB, or OSC ``/rtik/frame``): one stream's joint positions.
    pose      daemon -> clients (ZeroMQ PUB, topic = stream name): one solved frame.
    skeleton  daemon -> clients (topic ``_skeleton``, and the ``skeleton`` command): names, parents, offsets.
    command / reply   control (ZeroMQ ROUTER), see :data:`COMMANDS`.

Decoding never trusts its input: anything malformed raises :class:`~rtik.errors.ProtocolError` naming the field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import msgpack
import numpy as np

from rtik.errors import ProtocolError

VERSION = 1
#: topic of the periodic skeleton message on the pose feed (stream names cannot start with "_")
SKELETON_TOPIC = "_skeleton"
#: length units a frame may declare
UNITS = ("m", "cm", "mm")
#: control commands the daemon understands (docs/protocol.md lists their arguments and replies)
COMMANDS = ("status", "streams", "reset", "calibrate", "record_start", "record_stop", "recordings", "skeleton", "stats")
MAX_JOINTS = 512
MAX_MESSAGE_BYTES = 1 << 20
#: largest timestamp magnitude accepted (s, ~31,700 years): any real clock, and every output format can carry it
MAX_TIMESTAMP = 1e12
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_F32 = np.dtype("<f4")


def check_stream_name(name) -> str:
    """``name`` if it is a valid stream name (1-64 of ``A-Z a-z 0-9 _ . -``, not starting with ``_ . -``)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ProtocolError(
            f"invalid stream name {name!r}: use 1-64 characters from A-Z a-z 0-9 _ . - starting with a letter or digit"
        )
    return name


@dataclass(frozen=True, eq=False)
class Frame:
    """One stream's joint positions at one instant (source -> daemon).

    Fields:
        stream: stream name (see :func:`check_stream_name`).
        seq: sequence number, increasing per stream (duplicates and older frames are dropped).
        timestamp: source (capture) time in seconds, any clock that increases per stream.
        positions: ``(n, 3)`` float32 joint positions in the stream's layout and units.
        mask: ``(n,)`` bool, True = observed; ``None`` = all observed.
        layout: joint layout name (``"rtik"`` = the model's input joints in order).
        units: ``"m"``, ``"cm"`` or ``"mm"``.
        sent: sender's wall-clock time (``time.time()``) at transmit, 0 if unknown; used to measure latency.
    """

    stream: str
    seq: int
    timestamp: float
    positions: np.ndarray
    mask: np.ndarray | None = None
    layout: str = "rtik"
    units: str = "m"
    sent: float = 0.0


@dataclass(frozen=True, eq=False)
class Pose:
    """One solved frame (daemon -> clients).

    Fields:
        stream, seq, timestamp, sent: copied from the frame that produced it.
        recv: daemon wall-clock time when the frame arrived (s).
        pub: daemon wall-clock time when the pose was published (s).
        solve_us: time the solver spent on the tick that produced it (µs).
        reset: the stream's state was reset on this frame (gap, teleport, reset command).
        root_pos: ``(3,)`` float32 translation of the skeleton's motion root, metres.
        local_quats: ``(J, 4)`` float32 local joint rotations, XYZW, in the model skeleton's joint order.
    """

    stream: str
    seq: int
    timestamp: float
    sent: float
    recv: float
    pub: float
    solve_us: float
    reset: bool
    root_pos: np.ndarray
    local_quats: np.ndarray


# ------------------------------------------------------------------------------------------------- helpers
def _unpack(data) -> dict:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"expected a bytes payload, got {type(data).__name__}")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the limit of {MAX_MESSAGE_BYTES}")
    try:
        msg = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several unrelated types (ExtraData, ValueError, FormatError, ...)
        raise ProtocolError(f"payload is not valid msgpack: {e}") from e
    if not isinstance(msg, dict):
        raise ProtocolError(f"payload must be a msgpack map, got {type(msg).__name__}")
    v = msg.get("v")
    if v != VERSION:
        raise ProtocolError(f"unsupported protocol version {v!r} (this rtik speaks version {VERSION})")
    return msg


def _field(msg: dict, key: str, types, default=...):
    if key not in msg:
        if default is ...:
            raise ProtocolError(f"missing field {key!r}")
        return default
    val = msg[key]
    if not isinstance(val, types) or isinstance(val, bool) and bool not in _as_tuple(types):
        names = "/".join(t.__name__ for t in _as_tuple(types))
        raise ProtocolError(f"field {key!r} must be {names}, got {type(val).__name__}")
    return val


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def _array(msg: dict, key: str, n: int, width: int) -> np.ndarray:
    raw = _field(msg, key, bytes)
    want = n * width * 4
    if len(raw) != want:
        raise ProtocolError(f"field {key!r} has {len(raw)} bytes, expected {want} ({n}x{width} float32)")
    arr = np.frombuffer(raw, dtype=_F32).reshape(n, width) if width > 1 else np.frombuffer(raw, dtype=_F32)
    if not math.isfinite(arr.sum(dtype=np.float64)):  # one reduction; NaN or inf anywhere poisons the sum
        raise ProtocolError(f"field {key!r} contains NaN or inf (mark missing joints in 'mask' instead)")
    return arr


def _f32_bytes(a, shape: tuple) -> bytes:
    arr = np.ascontiguousarray(a, dtype=_F32)
    if arr.shape != shape:
        raise ProtocolError(f"array has shape {arr.shape}, expected {shape}")
    return arr.tobytes()


# --------------------------------------------------------------------------------------------------- frame
def encode_frame(f: Frame) -> bytes:
    """msgpack payload of a frame."""
    pos = np.ascontiguousarray(f.positions, dtype=_F32)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ProtocolError(f"positions have shape {pos.shape}, expected (n, 3)")
    msg = {
        "v": VERSION,
        "type": "frame",
        "stream": f.stream,
        "seq": int(f.seq),
        "t": float(f.timestamp),
        "sent": float(f.sent),
        "layout": f.layout,
        "units": f.units,
        "n": pos.shape[0],
        "pos": pos.tobytes(),
    }
    if f.mask is not None:
        m = np.asarray(f.mask).reshape(-1)
        if m.shape[0] != pos.shape[0]:
            raise ProtocolError(f"mask has {m.shape[0]} entries for {pos.shape[0]} joints")
        msg["mask"] = m.astype(np.uint8).tobytes()
    return msgpack.packb(msg, use_bin_type=True)


def _check_meta(stream, seq, timestamp, units, layout) -> None:
    check_stream_name(stream)
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0 or seq >= 1 << 63:
        raise ProtocolError(f"seq must be an integer in [0, 2**63), got {seq!r}")
    if not isinstance(timestamp, (int, float)) or isinstance(timestamp, bool) or not math.isfinite(timestamp):
        raise ProtocolError(f"timestamp must be a finite number of seconds, got {timestamp!r}")
    if abs(timestamp) > MAX_TIMESTAMP:
        raise ProtocolError(f"timestamp {timestamp!r} s is beyond +-{MAX_TIMESTAMP:g} s (no clock reads that)")
    if units not in UNITS:
        raise ProtocolError(f"unknown units {units!r}; valid units: {', '.join(UNITS)}")
    if not isinstance(layout, str) or not 0 < len(layout) <= 64:
        raise ProtocolError(f"layout must be a non-empty name of at most 64 characters, got {layout!r}")


def make_frame(
    stream, seq, timestamp, positions, mask=None, layout: str = "rtik", units: str = "m", sent: float = 0.0
) -> Frame:
    """A validated :class:`Frame` (the checks :func:`decode_frame` applies to wire input)."""
    _check_meta(stream, seq, timestamp, units, layout)
    pos = np.asarray(positions, dtype=_F32)
    if pos.ndim != 2 or pos.shape[1] != 3 or not 0 < pos.shape[0] <= MAX_JOINTS:
        raise ProtocolError(f"positions have shape {pos.shape}, expected (n, 3) with 1 <= n <= {MAX_JOINTS}")
    if mask is not None:
        mask = np.asarray(mask).reshape(-1).astype(bool)
        if mask.shape[0] != pos.shape[0]:
            raise ProtocolError(f"mask has {mask.shape[0]} entries for {pos.shape[0]} joints")
    return Frame(stream, seq, float(timestamp), pos, mask, layout, units, float(sent))


def decode_frame(data) -> Frame:
    """Frame from a msgpack payload; raises :class:`ProtocolError` on anything malformed."""
    msg = _unpack(data)
    kind = msg.get("type", "frame")
    if kind != "frame":
        raise ProtocolError(f"expected a 'frame' message, got type {kind!r}")
    stream = _field(msg, "stream", str)
    n = _field(msg, "n", int)
    if not 0 < n <= MAX_JOINTS:
        raise ProtocolError(f"field 'n' = {n} outside 1..{MAX_JOINTS}")
    pos = _array(msg, "pos", n, 3)
    mask = None
    if msg.get("mask") is not None:
        raw = _field(msg, "mask", bytes)
        if len(raw) != n:
            raise ProtocolError(f"field 'mask' has {len(raw)} bytes, expected {n} (one per joint)")
        mask = np.frombuffer(raw, dtype=np.uint8) != 0
    seq, ts = _field(msg, "seq", int), _field(msg, "t", (float, int))
    layout, units = _field(msg, "layout", str, "rtik"), _field(msg, "units", str, "m")
    _check_meta(stream, seq, ts, units, layout)
    return Frame(stream, seq, float(ts), pos, mask, layout, units, float(_field(msg, "sent", (float, int), 0.0)))


# ---------------------------------------------------------------------------------------------------- pose
def encode_pose(p: Pose) -> bytes:
    """msgpack payload of a solved pose."""
    q = np.ascontiguousarray(p.local_quats, dtype=_F32)
    return msgpack.packb(
        {
            "v": VERSION,
            "type": "pose",
            "stream": p.stream,
            "seq": int(p.seq),
            "t": float(p.timestamp),
            "sent": float(p.sent),
            "recv": float(p.recv),
            "pub": float(p.pub),
            "solve_us": float(p.solve_us),
            "reset": bool(p.reset),
            "n": q.shape[0],
            "root": _f32_bytes(p.root_pos, (3,)),
            "quats": _f32_bytes(q, (q.shape[0], 4)),
        },
        use_bin_type=True,
    )


def decode_pose(data) -> Pose:
    """Pose from a msgpack payload; raises :class:`ProtocolError` on anything malformed."""
    msg = _unpack(data)
    if msg.get("type") != "pose":
        raise ProtocolError(f"expected a 'pose' message, got type {msg.get('type')!r}")
    n = _field(msg, "n", int)
    if not 0 < n <= MAX_JOINTS:
        raise ProtocolError(f"field 'n' = {n} outside 1..{MAX_JOINTS}")
    num = (float, int)
    return Pose(
        stream=_field(msg, "stream", str),
        seq=_field(msg, "seq", int),
        timestamp=float(_field(msg, "t", num)),
        sent=float(_field(msg, "sent", num, 0.0)),
        recv=float(_field(msg, "recv", num, 0.0)),
        pub=float(_field(msg, "pub", num, 0.0)),
        solve_us=float(_field(msg, "solve_us", num, 0.0)),
        reset=bool(_field(msg, "reset", bool, False)),
        root_pos=_array(msg, "root", 3, 1),
        local_quats=_array(msg, "quats", n, 4),
    )


# ------------------------------------------------------------------------------------------------ skeleton
def encode_skeleton(skeleton_dict: dict, model: str = "") -> bytes:
    """msgpack payload describing the output skeleton (``Skeleton.to_dict()``, offsets in metres)."""
    return msgpack.packb({"v": VERSION, "type": "skeleton", "model": model, "skeleton": skeleton_dict})


def decode_skeleton(data) -> dict:
    """The ``Skeleton.to_dict()`` carried by a skeleton message."""
    msg = _unpack(data)
    if msg.get("type") != "skeleton":
        raise ProtocolError(f"expected a 'skeleton' message, got type {msg.get('type')!r}")
    sk = _field(msg, "skeleton", dict)
    for key in ("names", "parents", "offsets"):
        if key not in sk:
            raise ProtocolError(f"skeleton message lacks {key!r}")
    return sk


# ------------------------------------------------------------------------------------------------- control
def encode_command(cmd: str, **args) -> bytes:
    """A control request ``{"v", "cmd", **args}``."""
    return msgpack.packb({"v": VERSION, "cmd": cmd, **args}, use_bin_type=True)


def decode_command(data) -> tuple[str, dict]:
    """``(cmd, args)`` of a control request; the command must be one of :data:`COMMANDS`."""
    msg = _unpack(data)
    cmd = _field(msg, "cmd", str)
    if cmd not in COMMANDS:
        raise ProtocolError(f"unknown command {cmd!r}; valid commands: {', '.join(COMMANDS)}")
    return cmd, {k: v for k, v in msg.items() if k not in ("v", "cmd")}


def encode_reply(ok: bool, result=None, error: str = "") -> bytes:
    """A control reply: ``{"v", "ok": True, "result"}`` or ``{"v", "ok": False, "error"}``."""
    msg = {"v": VERSION, "ok": True, "result": result} if ok else {"v": VERSION, "ok": False, "error": error}
    return msgpack.packb(msg, use_bin_type=True)


def decode_reply(data) -> dict:
    """The reply map; ``ok`` is always present."""
    msg = _unpack(data)
    if not isinstance(msg.get("ok"), bool):
        raise ProtocolError("reply lacks a boolean 'ok' field")
    return msg
