"""Python client of the rtik daemon: send frames, receive poses, send control commands.

    from rtik.wire.client import Sender, Listener, Control
    with Sender(stream="actor1") as tx:                    # ZeroMQ PUSH to tcp://127.0.0.1:7700
        tx.send(positions)                                  # (n, 3) metres, the model's input joints in order
    with Listener() as rx:                                  # ZeroMQ SUB to tcp://127.0.0.1:7701
        pose = rx.recv(timeout=1.0)                         # rtik.wire.protocol.Pose or None
    with Control() as ctl:                                  # ZeroMQ DEALER to tcp://127.0.0.1:7702
        print(ctl.status())

Only numpy, pyzmq, msgpack (and python-osc for OSC) are needed: copy this module next to your program if rtik is
not installed there. Every send is non-blocking; a frame the daemon cannot take is counted in ``dropped``.
"""

from __future__ import annotations

import time

import zmq

from rtik.errors import ProtocolError, RtikError, TransportError
from rtik.wire import osc as osc_wire
from rtik.wire import protocol
from rtik.wire.protocol import Pose
from rtik.wire.zmq import connect, send_nowait

DEFAULT_INGEST = "tcp://127.0.0.1:7700"
DEFAULT_FEED = "tcp://127.0.0.1:7701"
DEFAULT_CONTROL = "tcp://127.0.0.1:7702"
DEFAULT_OSC = ("127.0.0.1", 7703)


def _opts(curve) -> dict | None:
    """Socket options of a CurveZMQ client (``curve``: :class:`rtik.serve.security.ClientKeys`), None without."""
    return curve.options() if curve is not None else None


class ControlError(RtikError):
    """The daemon answered a command with an error, or did not answer in time."""


class _Closing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Sender(_Closing):
    """Sends one stream's frames, over ZeroMQ (PUSH, default) or OSC (``osc=(host, port)``).

    Args:
        stream: stream name (see :func:`rtik.wire.protocol.check_stream_name`).
        endpoint: the daemon's ingest endpoint (ZeroMQ).
        layout, units: how positions are given (``units`` one of ``m``, ``cm``, ``mm``).
        osc: ``(host, port)`` to send ``/rtik/frame`` over UDP instead of ZeroMQ.
        curve: :class:`rtik.serve.security.ClientKeys` for a daemon that uses CurveZMQ (server key + own key pair).
    """

    def __init__(self, stream: str = "default", endpoint: str = DEFAULT_INGEST, layout: str = "rtik",
                 units: str = "m", osc: tuple | None = None, context: zmq.Context | None = None,
                 curve=None):  # fmt: skip
        self.stream = protocol.check_stream_name(stream)
        self.layout, self.units = layout, units
        if units not in protocol.UNITS:
            raise ProtocolError(f"unknown units {units!r}; valid units: {', '.join(protocol.UNITS)}")
        self.seq = 0
        self.sent = 0
        self.dropped = 0
        self._udp = None
        self._sock = None
        if osc is not None:
            self._udp = osc_wire.UdpSender(*osc)
        else:
            self._sock = connect(context or zmq.Context.instance(), zmq.PUSH, endpoint, options=_opts(curve))

    def send(self, positions, timestamp: float | None = None, mask=None, seq: int | None = None) -> bool:
        """Send one frame; ``timestamp`` defaults to now (``time.time()``), ``seq`` to the next number.
        Returns False if the frame was dropped (the daemon's queue is full or unreachable)."""
        now = time.time()
        self.seq = self.seq + 1 if seq is None else int(seq)
        f = protocol.make_frame(
            self.stream, self.seq, now if timestamp is None else timestamp, positions, mask, self.layout,
            self.units, now,
        )  # fmt: skip
        if self._udp is not None:
            ok = self._udp.send(osc_wire.encode_frame(f))
        else:
            ok = send_nowait(self._sock, [protocol.encode_frame(f)])
        if ok:
            self.sent += 1
        else:
            self.dropped += 1
        return ok

    def close(self, linger: float = 1.0) -> None:
        """Close; frames still queued get up to ``linger`` seconds to leave."""
        if self._sock is not None:
            self._sock.close(int(linger * 1000))
        if self._udp is not None:
            self._udp.close()


class Listener(_Closing):
    """Receives poses from the daemon's feed (ZeroMQ SUB); ``streams`` limits the topics (all by default).

    The skeleton (``protocol.SKELETON_TOPIC`` messages) is kept in :attr:`skeleton` as a dict
    (``Skeleton.to_dict()``, metres) as soon as one arrives."""

    def __init__(self, endpoint: str = DEFAULT_FEED, streams=(), context: zmq.Context | None = None, curve=None):
        topics = [protocol.SKELETON_TOPIC, *streams] if streams else [""]
        self._sock = connect(context or zmq.Context.instance(), zmq.SUB, endpoint, subscribe=topics,
                             options=_opts(curve))  # fmt: skip
        self.skeleton: dict | None = None
        self.received = 0
        self.errors = 0

    def recv(self, timeout: float | None = None) -> Pose | None:
        """The next pose, or None after ``timeout`` seconds (None = wait forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._sock.poll(None if left is None else int(left * 1000)):
                return None
            parts = self._sock.recv_multipart()
            if len(parts) != 2:
                self.errors += 1
                continue
            try:
                if parts[0] == protocol.SKELETON_TOPIC.encode():
                    self.skeleton = protocol.decode_skeleton(parts[1])
                    continue
                pose = protocol.decode_pose(parts[1])
            except ProtocolError:
                self.errors += 1
                continue
            self.received += 1
            return pose

    def __iter__(self):
        while True:
            yield self.recv()

    def close(self) -> None:
        self._sock.close(0)


class Control(_Closing):
    """Sends control commands to the daemon (ZeroMQ DEALER) and returns their results.

    Every method raises :class:`ControlError` with the daemon's message if the command failed, or if no reply
    came within ``timeout`` seconds."""

    def __init__(self, endpoint: str = DEFAULT_CONTROL, timeout: float = 5.0, context: zmq.Context | None = None,
                 curve=None):  # fmt: skip
        self.endpoint = endpoint
        self.timeout = timeout
        self._ctx = context or zmq.Context.instance()
        self._opts = _opts(curve)
        self._sock = connect(self._ctx, zmq.DEALER, endpoint, options=self._opts)

    def request(self, cmd: str, **args):
        """Send ``cmd`` with ``args``; the ``result`` of the reply."""
        ms = int(self.timeout * 1000)
        # a DEALER whose peer went away (a refused key: the handshake failed) has nowhere to queue a message and a
        # plain send would wait forever: wait for room as long as for the reply
        sent = bool(self._sock.poll(ms, zmq.POLLOUT))
        if sent:
            try:
                self._sock.send_multipart([b"", protocol.encode_command(cmd, **args)], flags=zmq.NOBLOCK)
            except zmq.Again:
                sent = False
        if not sent or not self._sock.poll(ms):
            # a DEALER that missed a reply would read it as the next answer: start over with a fresh socket
            self._sock.close(0)
            self._sock = connect(self._ctx, zmq.DEALER, self.endpoint, options=self._opts)
            raise ControlError(
                f"no reply from {self.endpoint} within {self.timeout:g} s (is `rtik serve` running, and does it "
                "accept this client's key?)"
            )
        reply = protocol.decode_reply(self._sock.recv_multipart()[-1])
        if not reply["ok"]:
            raise ControlError(f"{cmd}: {reply.get('error', 'failed')}")
        return reply.get("result")

    def status(self) -> dict:
        return self.request("status")

    def streams(self) -> list:
        return self.request("streams")

    def stats(self) -> dict:
        return self.request("stats")

    def reset(self, stream: str) -> dict:
        return self.request("reset", stream=stream)

    def calibrate(self, stream: str) -> dict:
        return self.request("calibrate", stream=stream)

    def record_start(self, stream: str, name: str | None = None, rig: str | None = None) -> dict:
        """Record ``stream`` to BVH ``name`` in the model's skeleton or in ``rig`` (one of the daemon's
        ``[recording] rigs``)."""
        extra = {**({"name": name} if name else {}), **({"rig": rig} if rig is not None else {})}
        return self.request("record_start", stream=stream, **extra)

    def record_stop(self, stream: str) -> dict:
        return self.request("record_stop", stream=stream)

    def recordings(self) -> list:
        return self.request("recordings")

    def skeleton(self) -> dict:
        return self.request("skeleton")

    def close(self) -> None:
        self._sock.close(0)


def wait_for_daemon(endpoint: str = DEFAULT_CONTROL, timeout: float = 10.0, curve=None) -> dict:
    """Poll ``status`` until the daemon answers; its status, or TransportError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    with Control(endpoint, timeout=0.25, curve=curve) as ctl:
        while True:
            try:
                return ctl.status()
            except ControlError:
                if time.monotonic() > deadline:
                    raise TransportError(f"no rtik daemon answered at {endpoint} within {timeout:g} s") from None
