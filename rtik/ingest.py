"""Frame intake: a short queue per stream, shared by the receiving threads and the solver thread.

Each stream holds up to ``depth`` frames not yet solved; the solver takes the oldest of every stream per tick,
so frames that arrive together (a burst from a backed-up socket, a tick that ran long) are all solved, in order.
When the queue is full the newest frame wins: the oldest waiting frame is dropped and counted as
``superseded``, so a frame waits for at most ``depth`` ticks (``depth=1``: only the latest frame is kept). A
duplicate or older sequence number is dropped and counted (``duplicate``, ``stale``); streams are opened on
their first frame up to a limit (``stream_limit``). A source whose numbering jumps back by more than
:data:`RESTART_SEQ_GAP`, or after :data:`RESTART_SILENCE_S` of silence, has restarted: its frame is taken and
the stream reset.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from rtik import protocol
from rtik.security import TokenBucket
from rtik.stats import Stats

#: a source whose sequence numbers go back by more than this, or after this long a silence, has restarted
RESTART_SEQ_GAP = 1000
RESTART_SILENCE_S = 1.0


@dataclass
class _Slot:
    """One stream's queue and bookkeeping (guarded by :class:`Slots`' lock)."""

    name: str
    # waiting frames, oldest first: (frame, wall-clock receive time, restart: the source restarted its numbering,
    # reset the stream before this frame)
    queue: deque = field(default_factory=deque)
    last_seq: int = -1
    last_seen: float = 0.0  # monotonic
    counts: dict = field(default_factory=lambda: {"in": 0, "out": 0, "dropped": 0, "errors": 0})
    bucket: TokenBucket | None = None  # per-stream rate limit ([limits] max_rate), None = no limit


class Slots:
    """Per-stream frame queues shared by the receiving threads and the solver thread; ``depth`` frames each."""

    #: a receiver draining a long burst with ``notify=False`` still wakes the solver this long (s) after the first
    #: frame it held back, so a backlog or a flood of other traffic never keeps a frame from an idle solver
    WAKE_AFTER_S = 0.0005

    def __init__(self, max_streams: int, stats: Stats, max_rate: float = 0.0, depth: int = 1):
        if depth < 1:
            raise ValueError(f"queue depth must be at least 1, got {depth}")
        self.depth = depth
        self.max_streams = max_streams
        self.max_rate = max_rate  # frames per second accepted per stream (over it: dropped "rate_limit"); 0 = any
        self.stats = stats
        self.cond = threading.Condition()
        self.slots: dict[str, _Slot] = {}
        self._dirty = False
        self._held_since = 0.0  # monotonic time of the first frame put without a wake-up since the last one

    def put(self, f: protocol.Frame, recv: float, transport: str, notify: bool = True) -> bool:
        """Offer a frame; False (and a counted drop) if it is a duplicate, older, or over the stream limit.
        ``notify=False`` defers waking the solver thread to a later :meth:`wake` (a receiver draining a burst
        wakes it once, so one tick solves the whole burst)."""
        now = time.monotonic()
        with self.cond:
            slot = self.slots.get(f.stream)
            if slot is None:
                if len(self.slots) >= self.max_streams:
                    # no stream label: names past the limit are unbounded (a flood of new names must not grow the stats)
                    self.stats.inc("dropped", reason="stream_limit")
                    return False
                slot = self.slots[f.stream] = _Slot(f.stream)
                if self.max_rate > 0:
                    slot.bucket = TokenBucket(self.max_rate)
            if slot.bucket is not None and not slot.bucket.take(now):
                slot.counts["dropped"] += 1
                self.stats.inc("dropped", stream=f.stream, reason="rate_limit")
                return False
            restart = False
            if f.seq <= slot.last_seq:
                if slot.last_seq - f.seq > RESTART_SEQ_GAP or now - slot.last_seen > RESTART_SILENCE_S:
                    restart = True
                else:
                    reason = "duplicate" if f.seq == slot.last_seq else "stale"
                    slot.counts["dropped"] += 1
                    self.stats.inc("dropped", stream=f.stream, reason=reason)
                    return False
            if len(slot.queue) >= self.depth:
                _, _, was_restart = slot.queue.popleft()
                restart = restart or was_restart  # a restart still resets the stream before the frames after it
                slot.counts["dropped"] += 1
                self.stats.inc("dropped", stream=f.stream, reason="superseded")
            slot.queue.append((f, recv, restart))
            slot.last_seq, slot.last_seen = f.seq, now
            slot.counts["in"] += 1
            self.stats.inc("frames_in", stream=f.stream, transport=transport)
            self._dirty = True
            if notify or (self._held_since and now - self._held_since > self.WAKE_AFTER_S):
                self._wake()
            elif not self._held_since:
                self._held_since = now
        return True

    def take(self, timeout: float) -> list[tuple[protocol.Frame, float, bool]]:
        """Wait up to ``timeout`` s for new frames; ``[(frame, recv, restart)]``: the oldest waiting frame of every
        stream that has one (frames left behind make the next call return at once)."""
        with self.cond:
            if not self._dirty:
                self.cond.wait(timeout)
            out = [s.queue.popleft() for s in self.slots.values() if s.queue]
            self._dirty = any(s.queue for s in self.slots.values())
            return out

    def wake(self) -> None:
        """Wake the solver thread (after puts with ``notify=False``, and at shutdown)."""
        with self.cond:
            self._wake()

    def _wake(self) -> None:
        self._held_since = 0.0
        self.cond.notify_all()

    def forget_seq(self, name: str) -> None:
        with self.cond:
            if name in self.slots:
                self.slots[name].last_seq = -1

    def idle(self, seconds: float) -> list[str]:
        now = time.monotonic()
        with self.cond:
            return [n for n, s in self.slots.items() if not s.queue and now - s.last_seen > seconds]

    def remove(self, name: str) -> None:
        with self.cond:
            self.slots.pop(name, None)

    def count(self, name: str, key: str) -> None:
        with self.cond:
            if name in self.slots:
                self.slots[name].counts[key] += 1
