"""The daemon's receiving threads: ZeroMQ (ingest sockets and the control ROUTER) and OSC, each message decoded,
validated and put in its stream's queue (:class:`rtik.serve.ingest.Slots`), or counted as what it is.

While a tick runs the receivers wait for it (:meth:`Receivers.pause_for_tick`), so the tick has the interpreter to
itself; after each wait a receiver handles :data:`RECV_AFTER_TICK` messages before it waits again, so ticks back
to back (a solver catching up) still let every socket drain into the queues, where the newest frames win. A
receiver draining a burst wakes the solver once for it (and within :attr:`Slots.WAKE_AFTER_S` of its first frame).
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable

import zmq

from rtik.errors import ProtocolError
from rtik.serve.ingest import Slots
from rtik.serve.stats import Stats
from rtik.wire import osc, protocol

#: the longest a receiving thread waits for a tick in progress before it goes on anyway (s)
TICK_WAIT_S = 0.05
#: after waiting for a tick, a receiving thread handles this many messages before it waits for another one
RECV_AFTER_TICK = 32
#: messages (datagrams) a receiver takes from one socket before the others get their turn
BURST = 256


class Receivers:
    """The receiving loops of a daemon. ``not_solving`` is clear while a tick runs; ``error(kind, stream, e)``
    counts and logs an error; ``control(sock, parts)`` answers a control message."""

    def __init__(self, slots: Slots, stats: Stats, not_solving: threading.Event, stop: threading.Event,
                 error: Callable, control: Callable):  # fmt: skip
        self.slots, self.stats, self.not_solving, self.stop = slots, stats, not_solving, stop
        self.error, self.control = error, control

    def zmq_loop(self, ingest: list, control) -> None:
        """Poll the ingest sockets and the control socket (or None) until stopped."""
        poller = zmq.Poller()
        for s in ingest + ([control] if control is not None else []):
            poller.register(s, zmq.POLLIN)
        free = 0
        while not self.stop.is_set():
            for sock, _ in poller.poll(100):
                got = False
                for _ in range(BURST):
                    free = self.pause_for_tick(free)
                    try:
                        parts = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if sock is control:
                        self.control(sock, parts)
                    else:
                        got = self._frame(parts[-1], "zmq") or got
                if got:
                    self.slots.wake()  # once per burst: one tick solves every stream that arrived together

    def osc_loop(self, sock, guard) -> None:
        """Read datagrams from ``sock`` (a UDP socket with a timeout) until stopped; ``guard`` (a
        :class:`rtik.serve.security.Guard`) says which sources may send and how large a datagram may be."""
        free = 0
        while not self.stop.is_set():
            try:
                dgrams = [sock.recvfrom(65536)]
                while len(dgrams) < BURST and select.select([sock], [], [], 0)[0]:  # drain a burst
                    dgrams.append(sock.recvfrom(65536))
            except TimeoutError:
                continue
            except OSError:
                if self.stop.is_set():
                    return
                raise
            recv, got = time.time(), False
            for dgram, source in dgrams:
                free = self.pause_for_tick(free)
                allowed = guard.osc_allows(source)
                if not allowed or len(dgram) > guard.max_bytes:  # counted, never parsed
                    self.stats.inc("dropped", transport="osc", reason="too_large" if allowed else "not_allowed")
                    continue
                try:
                    messages = osc.parse_datagram(dgram)
                except ProtocolError as e:
                    self.error("protocol", None, e)
                    continue
                for address, args in messages:
                    if address != osc.FRAME_ADDRESS:
                        self.stats.inc("ignored", transport="osc")
                        continue
                    try:
                        got = self.slots.put(osc.frame_from_args(args), recv, "osc", notify=False) or got
                    except ProtocolError as e:
                        self.error("protocol", None, e)
            if got:
                self.slots.wake()

    def pause_for_tick(self, free: int) -> int:
        """Called before each message with what is left of this thread's allowance; the new allowance. Waits for a
        tick in progress (at most :data:`TICK_WAIT_S`) unless the allowance lasts."""
        if free > 0:
            return free - 1
        if self.not_solving.is_set():
            return 0
        self.not_solving.wait(TICK_WAIT_S)
        return RECV_AFTER_TICK

    def _frame(self, payload: bytes, transport: str) -> bool:
        recv = time.time()
        try:
            f = protocol.decode_frame(payload)
        except ProtocolError as e:
            self.error("protocol", None, e)
            return False
        return self.slots.put(f, recv, transport, notify=False)
