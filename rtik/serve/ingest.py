"""Frame intake: a queue per stream, shared by the receiving threads and the solver thread.

Each stream holds up to ``depth`` frames not yet solved; the solver takes the oldest of every stream per tick,
so frames that arrive together (a burst from a backed-up socket, a tick that ran long) are all solved, in order.
When the solver falls behind the newest frames win: a frame that has waited longer than ``max_wait`` seconds
is dropped, and counted as ``superseded``, once a newer frame of its stream is waiting, and when the queue is
full the oldest waiting frame makes room the same way; so a frame waits for at most ``max_wait`` (and at most
``depth`` ticks). A burst that arrives at once is not "behind": its frames are solved back to back, none lost.
``depth=1`` keeps only the latest frame. A duplicate or older sequence number is dropped and counted
(``duplicate``, ``stale``); streams are opened on their first frame up to a limit (``stream_limit``). A source
whose numbering jumps back by more than :data:`RESTART_SEQ_GAP`, or after :data:`RESTART_SILENCE_S` of silence,
has restarted: its frame is taken and the stream reset.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from rtik.serve.security import TokenBucket
from rtik.serve.stats import Stats
from rtik.wire import protocol

#: a source whose sequence numbers go back by more than this, or after this long a silence, has restarted
RESTART_SEQ_GAP = 1000
RESTART_SILENCE_S = 1.0


@dataclass
class _Slot:
    """One stream's queue and bookkeeping (guarded by :class:`Slots`' lock)."""

    name: str
    # waiting frames, oldest first: (frame, wall-clock receive time, restart: the source restarted its numbering,
    # reset the stream before this frame, monotonic receive time)
    queue: deque = field(default_factory=deque)
    last_seq: int = -1
    last_seen: float = 0.0  # monotonic
    counts: dict = field(default_factory=lambda: {"in": 0, "out": 0, "dropped": 0, "errors": 0})
    bucket: TokenBucket | None = None  # per-stream rate limit ([limits] max_rate), None = no limit


class Slots:
    """Per-stream frame queues shared by the receiving threads and the solver thread: ``depth`` frames each, none
    kept waiting longer than ``max_wait`` s behind a newer one (0: no time limit). ``clock`` is monotonic seconds."""

    #: a receiver draining a long burst with ``notify=False`` still wakes the solver this long (s) after the first
    #: frame it held back, so a backlog or a flood of other traffic never keeps a frame from an idle solver
    WAKE_AFTER_S = 0.0005

    def __init__(self, max_streams: int, stats: Stats, max_rate: float = 0.0, depth: int = 1, max_wait: float = 0.0,
                 clock=time.monotonic):  # fmt: skip
        if depth < 1:
            raise ValueError(f"queue depth must be at least 1, got {depth}")
        if max_wait < 0:
            raise ValueError(f"max_wait cannot be negative, got {max_wait}")
        self.depth = depth
        self.max_wait = max_wait
        self.clock = clock
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
        now = self.clock()
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
                restart = self._supersede(slot) or restart
            slot.queue.append((f, recv, restart, now))
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
        stream that has one, after dropping those that waited longer than ``max_wait`` behind a newer one (frames
        left behind make the next call return at once)."""
        with self.cond:
            if not self._dirty:
                self.cond.wait(timeout)
            out = []
            expired = self.clock() - self.max_wait
            for slot in self.slots.values():
                if not slot.queue:
                    continue
                while self.max_wait > 0 and len(slot.queue) > 1 and slot.queue[0][3] < expired:
                    self._supersede(slot)  # (a newer frame is left: a restart passes on to it)
                f, recv, restart, _ = slot.queue.popleft()
                out.append((f, recv, restart))
            self._dirty = any(s.queue for s in self.slots.values())
            return out

    def _supersede(self, slot: _Slot) -> bool:
        """Drop the stream's oldest waiting frame for the newer ones (lock held). A restart still resets the stream
        before the frame after it: passed on to the next waiting frame, or returned (True) when none is left."""
        _, _, was_restart, _ = slot.queue.popleft()
        slot.counts["dropped"] += 1
        self.stats.inc("dropped", stream=slot.name, reason="superseded")
        if was_restart and slot.queue:
            f, recv, _, t = slot.queue[0]
            slot.queue[0] = (f, recv, True, t)
            return False
        return was_restart

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
        now = self.clock()
        with self.cond:
            return [n for n, s in self.slots.items() if not s.queue and now - s.last_seen > seconds]

    def remove(self, name: str) -> None:
        with self.cond:
            self.slots.pop(name, None)

    def count(self, name: str, key: str) -> None:
        with self.cond:
            if name in self.slots:
                self.slots[name].counts[key] += 1
