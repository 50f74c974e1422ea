"""ZeroMQ sockets of the daemon and the client: frame ingest (PULL bind, SUB connect), pose feed (PUB), control
(ROUTER). Blocking sockets driven by a ``zmq.Poller`` in a thread (``zmq.asyncio`` adds 40-90 µs a message).

Sending never blocks the hot path: PUB drops silently at its high-water mark, PUSH would block, so every send is
``NOBLOCK`` and a refused send is counted as a drop. ZeroMQ errors are translated into
:class:`~rtik.errors.TransportError` naming the endpoint.
"""

from __future__ import annotations

import zmq

from rtik.errors import TransportError


def _socket(ctx: zmq.Context, kind: int, hwm: int, options: dict | None = None) -> zmq.Socket:
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, hwm)
    s.setsockopt(zmq.RCVHWM, hwm)
    # e.g. MAXMSGSIZE, CurveZMQ keys (rtik.serve.security): set before bind/connect
    for opt, val in (options or {}).items():
        s.setsockopt(opt, val)
    return s


def bind(ctx: zmq.Context, kind: int, endpoint: str, hwm: int = 1000, options: dict | None = None) -> zmq.Socket:
    """A socket of ``kind`` bound to ``endpoint`` (e.g. ``tcp://127.0.0.1:7700``); ``options`` are socket options
    set before binding."""
    s = _socket(ctx, kind, hwm, options)
    try:
        s.bind(endpoint)
    except zmq.ZMQError as e:
        s.close(0)
        raise TransportError(f"cannot bind {endpoint}: {e.strerror}") from e
    return s


def connect(ctx: zmq.Context, kind: int, endpoints, hwm: int = 1000, subscribe=(b"",),
            options: dict | None = None) -> zmq.Socket:  # fmt: skip
    """A socket of ``kind`` connected to each of ``endpoints``; a SUB socket subscribes to ``subscribe``;
    ``options`` are socket options set before connecting."""
    s = _socket(ctx, kind, hwm, options)
    if kind == zmq.SUB:
        for topic in subscribe:
            s.setsockopt(zmq.SUBSCRIBE, topic.encode() if isinstance(topic, str) else topic)
    for ep in [endpoints] if isinstance(endpoints, str) else endpoints:
        try:
            s.connect(ep)
        except zmq.ZMQError as e:
            s.close(0)
            raise TransportError(f"cannot connect to {ep}: {e.strerror}") from e
    return s


def send_nowait(sock: zmq.Socket, parts) -> bool:
    """Send a multipart message without blocking; False if the peer queue is full (a drop to count)."""
    try:
        sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=True)
    except zmq.Again:
        return False
    return True


class PosePublisher:
    """The pose feed: multipart ``[topic, payload]`` on a PUB socket, topic = stream name."""

    def __init__(self, ctx: zmq.Context, endpoint: str, hwm: int = 1000, options: dict | None = None):
        self.endpoint = endpoint
        self.sock = bind(ctx, zmq.PUB, endpoint, hwm, options)
        self.sent = 0
        self.dropped = 0

    def publish(self, topic: str, payload: bytes) -> None:
        if send_nowait(self.sock, [topic.encode(), payload]):
            self.sent += 1
        else:
            self.dropped += 1

    def close(self) -> None:
        self.sock.close(0)


def split_request(parts: list[bytes]) -> tuple[list[bytes], bytes]:
    """``(envelope, payload)`` of a message received on a ROUTER socket, from a DEALER (``[id, payload]`` or
    ``[id, b"", payload]``) or a REQ (``[id, b"", payload]``) peer; the reply goes back as envelope + [reply]."""
    if len(parts) < 2:
        raise TransportError(f"control message with {len(parts)} frames; expected an identity and a payload")
    envelope = parts[:-1]
    return envelope, parts[-1]
