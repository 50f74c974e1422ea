"""OSC over UDP: rtik's own ``/rtik/frame`` (in) and ``/rtik/pose`` (out) messages.

Encoding is a small hand-written OSC 1.0 writer (a message with blobs costs a few µs; python-osc's builder is
far slower per message); parsing uses python-osc, so anything a standard OSC library sends is understood,
bundles included (their timetags are ignored: frames are handled on arrival).

``/rtik/frame``  stream:s  seq:i|h  timestamp:d|f  units:s  positions:b  [mask:b] [layout:s] [sent:d|f]
    positions: ``n*3`` little-endian float32 (x, y, z per joint); mask: ``n`` bytes, non-zero = observed.
    The optional arguments are recognised by type, in any order after the five required ones.
``/rtik/pose``   stream:s  seq:h  timestamp:d  sent:d  recv:d  solve_us:f  reset:i  root:b  quats:b
    root: 3 little-endian float32 (metres); quats: ``J*4`` little-endian float32, local, XYZW.
"""

from __future__ import annotations

import socket
import struct

import numpy as np
from pythonosc.osc_packet import OscPacket, ParseError

from rtik.errors import ProtocolError
from rtik.wire.protocol import Frame, Pose, make_frame

FRAME_ADDRESS = "/rtik/frame"
POSE_ADDRESS = "/rtik/pose"
#: largest datagram the senders build; bundles are split to stay below a typical Ethernet MTU
MAX_DATAGRAM = 1400
_BUNDLE_HEAD = b"#bundle\x00" + struct.pack(">Q", 1)  # timetag 1 = "immediately"
_INT32 = (-(1 << 31), (1 << 31) - 1)


# ------------------------------------------------------------------------------------------------ encoding
def osc_string(s: str) -> bytes:
    """An OSC string: UTF-8, NUL-terminated, padded to a multiple of 4 bytes."""
    b = s.encode("utf-8")
    return b + b"\x00" * (4 - len(b) % 4)


def osc_blob(b: bytes) -> bytes:
    """An OSC blob: int32 size, the bytes, padding to a multiple of 4."""
    return struct.pack(">i", len(b)) + b + b"\x00" * (-len(b) % 4)


_PACKERS = {
    "i": lambda v: struct.pack(">i", v),
    "h": lambda v: struct.pack(">q", v),
    "f": lambda v: struct.pack(">f", v),
    "d": lambda v: struct.pack(">d", v),
    "s": osc_string,
    "b": osc_blob,
}


def encode_message(address: str, tags: str, *args) -> bytes:
    """One OSC message; ``tags`` holds one type letter per argument (``i h f d s b``)."""
    if len(tags) != len(args):
        raise ProtocolError(f"OSC message {address}: {len(tags)} type tags for {len(args)} arguments")
    try:
        body = b"".join(_PACKERS[t](a) for t, a in zip(tags, args, strict=True))
    except KeyError as e:
        raise ProtocolError(f"unsupported OSC type tag {e.args[0]!r}; supported: {', '.join(_PACKERS)}") from None
    except (struct.error, AttributeError, TypeError) as e:
        raise ProtocolError(f"OSC message {address}: argument does not match its type tag: {e}") from e
    return osc_string(address) + osc_string("," + tags) + body


def bundles(messages, limit: int = MAX_DATAGRAM) -> list[bytes]:
    """Pack encoded messages into as few ``#bundle`` datagrams (timetag "immediately") as fit in ``limit`` bytes
    each; a single message larger than ``limit`` goes alone in its own bundle."""
    out, cur, size = [], [], len(_BUNDLE_HEAD)
    for m in messages:
        item = struct.pack(">i", len(m)) + m
        if cur and size + len(item) > limit:
            out.append(_BUNDLE_HEAD + b"".join(cur))
            cur, size = [], len(_BUNDLE_HEAD)
        cur.append(item)
        size += len(item)
    if cur:
        out.append(_BUNDLE_HEAD + b"".join(cur))
    return out


def encode_frame(f: Frame) -> bytes:
    """``/rtik/frame`` message of a frame."""
    pos = np.ascontiguousarray(f.positions, dtype="<f4").tobytes()
    seq_tag = "i" if _INT32[0] <= f.seq <= _INT32[1] else "h"
    tags, args = "s" + seq_tag + "dsb", [f.stream, int(f.seq), float(f.timestamp), f.units, pos]
    if f.mask is not None:
        tags += "b"
        args.append(np.asarray(f.mask, dtype=np.uint8).tobytes())
    tags += "sd"
    args += [f.layout, float(f.sent)]
    return encode_message(FRAME_ADDRESS, tags, *args)


_POSE_HEAD = osc_string(POSE_ADDRESS) + osc_string(",shdddfibb")
_POSE_FIXED = struct.Struct(">qdddfi")


def encode_pose(p: Pose) -> bytes:
    """``/rtik/pose`` message of a solved pose (the fixed part packed in one go: this runs per pose)."""
    fixed = _POSE_FIXED.pack(int(p.seq), p.timestamp, p.sent, p.recv, p.solve_us, 1 if p.reset else 0)
    root = np.ascontiguousarray(p.root_pos, dtype="<f4").tobytes()
    quats = np.ascontiguousarray(p.local_quats, dtype="<f4").tobytes()
    return _POSE_HEAD + osc_string(p.stream) + fixed + osc_blob(root) + osc_blob(quats)


# ------------------------------------------------------------------------------------------------ decoding
def parse_datagram(dgram: bytes) -> list[tuple[str, list]]:
    """``[(address, args), ...]`` of every message in a datagram (a message or a bundle)."""
    try:
        return [(m.message.address, list(m.message.params)) for m in OscPacket(dgram).messages]
    except (ParseError, IndexError, ValueError, struct.error) as e:
        raise ProtocolError(f"malformed OSC datagram: {e}") from e


def frame_from_args(args: list) -> Frame:
    """Frame from the arguments of a ``/rtik/frame`` message (see the module docstring)."""
    if len(args) < 5:
        raise ProtocolError(
            f"/rtik/frame needs at least 5 arguments (stream, seq, timestamp, units, positions), got {len(args)}"
        )
    stream, seq, ts, units, blob = args[:5]
    if not isinstance(stream, str) or not isinstance(units, str):
        raise ProtocolError("/rtik/frame: stream (argument 1) and units (argument 4) must be strings")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise ProtocolError(f"/rtik/frame: seq (argument 2) must be an int, got {type(seq).__name__}")
    if not isinstance(ts, (float, int)) or isinstance(ts, bool):
        raise ProtocolError(f"/rtik/frame: timestamp (argument 3) must be a double, got {type(ts).__name__}")
    if not isinstance(blob, bytes) or len(blob) == 0 or len(blob) % 12:
        raise ProtocolError(
            "/rtik/frame: positions (argument 5) must be a blob of n*3 float32 (a multiple of 12 bytes)"
        )
    pos = np.frombuffer(blob, dtype="<f4").reshape(-1, 3)
    if not np.all(np.isfinite(pos)):
        raise ProtocolError("/rtik/frame: positions contain NaN or inf (mark missing joints in the mask instead)")
    mask, layout, sent = None, "rtik", 0.0
    for a in args[5:]:
        if isinstance(a, bytes):
            if len(a) != pos.shape[0]:
                raise ProtocolError(f"/rtik/frame: mask blob has {len(a)} bytes, expected {pos.shape[0]}")
            mask = np.frombuffer(a, dtype=np.uint8) != 0
        elif isinstance(a, str):
            layout = a
        elif isinstance(a, float):
            sent = a
        else:
            raise ProtocolError(f"/rtik/frame: unexpected optional argument of type {type(a).__name__}")
    return make_frame(stream, seq, float(ts), pos, mask, layout, units, sent)


def pose_from_args(args: list) -> Pose:
    """Pose from the arguments of a ``/rtik/pose`` message."""
    try:
        stream, seq, ts, sent, recv, solve_us, reset, root, quats = args
        return Pose(
            stream, int(seq), float(ts), float(sent), float(recv), 0.0, float(solve_us), bool(reset),
            np.frombuffer(root, dtype="<f4").reshape(3), np.frombuffer(quats, dtype="<f4").reshape(-1, 4),
        )  # fmt: skip
    except (ValueError, TypeError, OverflowError) as e:  # OverflowError: int(inf)
        raise ProtocolError(f"/rtik/pose: malformed arguments: {e}") from e


# ----------------------------------------------------------------------------------------------- transport
class UdpSender:
    """Sends datagrams to one ``(host, port)``; errors are counted, never raised (a receiver that is not
    running must not disturb the daemon)."""

    def __init__(self, host: str, port: int):
        self.address = (host, int(port))
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.errors = 0
        self.sent = 0

    def send(self, dgram: bytes) -> bool:
        try:
            self.sock.sendto(dgram, self.address)
        except OSError:
            self.errors += 1
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        self.sock.close()


def udp_receiver(host: str, port: int, timeout: float = 0.2) -> socket.socket:
    """A bound UDP socket with a receive timeout (so the reading thread can notice shutdown)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    except OSError:
        pass
    sock.bind((host, int(port)))
    sock.settimeout(timeout)
    return sock
