"""Frame intake: one latest-frame slot per stream, shared by the receiving threads and the solver thread.

The newest frame wins (a frame not yet solved is replaced and counted as ``superseded``); a duplicate or older
sequence number is dropped and counted (``duplicate``, ``stale``); streams are opened on their first frame up to
a limit (``stream_limit``). A source whose numbering jumps back by more than :data:`RESTART_SEQ_GAP`, or after
:data:`RESTART_SILENCE_S` of silence, has restarted: its frame is taken and the stream reset.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from rtik import protocol
from rtik.security import TokenBucket
from rtik.stats import Stats

#: a source whose sequence numbers go back by more than this, or after this long a silence, has restarted
RESTART_SEQ_GAP = 1000
RESTART_SILENCE_S = 1.0


@dataclass
class _Slot:
    """One stream's latest-frame slot and bookkeeping (guarded by :class:`Slots`' lock)."""

    name: str
    frame: protocol.Frame | None = None
    recv: float = 0.0  # wall-clock receive time of ``frame``
    restart: bool = False  # the source restarted its numbering: reset the stream before this frame
    last_seq: int = -1
    last_seen: float = 0.0  # monotonic
    counts: dict = field(default_factory=lambda: {"in": 0, "out": 0, "dropped": 0, "errors": 0})
    bucket: TokenBucket | None = None  # per-stream rate limit ([limits] max_rate), None = no limit


class Slots:
    """Per-stream latest-frame slots shared by the receiving threads and the solver thread."""

    def __init__(self, max_streams: int, stats: Stats, max_rate: float = 0.0):
        self.max_streams = max_streams
        self.max_rate = max_rate  # frames per second accepted per stream (over it: dropped "rate_limit"); 0 = any
        self.stats = stats
        self.cond = threading.Condition()
        self.slots: dict[str, _Slot] = {}
        self._dirty = False

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
            if slot.frame is not None:
                slot.counts["dropped"] += 1
                self.stats.inc("dropped", stream=f.stream, reason="superseded")
            slot.frame, slot.recv, slot.last_seq, slot.last_seen = f, recv, f.seq, now
            slot.restart = slot.restart or restart
            slot.counts["in"] += 1
            self.stats.inc("frames_in", stream=f.stream, transport=transport)
            self._dirty = True
            if notify:
                self.cond.notify()
        return True

    def take(self, timeout: float) -> list[tuple[protocol.Frame, float, bool]]:
        """Wait up to ``timeout`` s for new frames; ``[(frame, recv, restart)]``, one per stream, slots emptied."""
        with self.cond:
            if not self._dirty:
                self.cond.wait(timeout)
            out = []
            for s in self.slots.values():
                if s.frame is not None:
                    out.append((s.frame, s.recv, s.restart))
                    s.frame, s.restart = None, False
            self._dirty = False
            return out

    def wake(self) -> None:
        """Wake the solver thread (after puts with ``notify=False``, and at shutdown)."""
        with self.cond:
            self.cond.notify_all()

    def forget_seq(self, name: str) -> None:
        with self.cond:
            if name in self.slots:
                self.slots[name].last_seq = -1

    def idle(self, seconds: float) -> list[str]:
        now = time.monotonic()
        with self.cond:
            return [n for n, s in self.slots.items() if s.frame is None and now - s.last_seen > seconds]

    def remove(self, name: str) -> None:
        with self.cond:
            self.slots.pop(name, None)

    def count(self, name: str, key: str) -> None:
        with self.cond:
            if name in self.slots:
                self.slots[name].counts[key] += 1
