"""Daemon statistics: labelled counters, latency histograms, a snapshot for the control socket and the
Prometheus text format (version 0.0.4) for the optional ``/metrics`` endpoint.

Counters are updated from several threads; one lock keeps them exact (an update costs well under a microsecond).
"""

from __future__ import annotations

import bisect
import threading
import time

#: histogram bucket upper bounds in seconds (log-spaced, 50 µs .. 1 s)
LATENCY_BUCKETS = (
    50e-6, 100e-6, 200e-6, 300e-6, 500e-6, 750e-6, 1e-3, 1.5e-3, 2e-3, 3e-3, 5e-3, 10e-3, 20e-3, 50e-3, 0.1, 1.0,
)  # fmt: skip

#: help text of every metric the daemon exports
METRICS = {
    "frames_in": ("counter", "Frames received and accepted into a stream's slot."),
    "frames_out": ("counter", "Poses published."),
    "dropped": (
        "counter",
        "Frames dropped, by reason (duplicate, stale, superseded, stream_limit, rate_limit, not_allowed, too_large).",
    ),
    "errors": ("counter", "Errors, by kind (input, protocol, record, publish, solver)."),
    "ignored": ("counter", "OSC messages with addresses other than /rtik/frame (ignored)."),
    "ticks": ("counter", "Solver ticks."),
    "streams": ("gauge", "Open streams."),
    "recordings": ("gauge", "Recordings in progress."),
    "latency_seconds": ("histogram", "Receive-to-publish latency inside the daemon."),
    "solve_seconds": ("histogram", "Solver time per tick."),
}


class Histogram:
    """Cumulative-bucket histogram of durations in seconds."""

    def __init__(self, bounds=LATENCY_BUCKETS):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # last = +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding quantile ``q`` (0..1); ``inf`` past the last bound, 0 if empty."""
        if self.count == 0:
            return 0.0
        target, acc = q * self.count, 0
        for i, c in enumerate(self.counts):
            acc += c
            if acc >= target:
                return self.bounds[i] if i < len(self.bounds) else float("inf")
        return float("inf")

    def to_dict(self) -> dict:
        return {
            "count": self.count,
            "sum": self.sum,
            "buckets": {str(b): c for b, c in zip((*self.bounds, "+Inf"), self._cumulative(), strict=True)},
            "p50": self.quantile(0.5),
            "p99": self.quantile(0.99),
        }

    def _cumulative(self) -> list[int]:
        out, acc = [], 0
        for c in self.counts:
            acc += c
            out.append(acc)
        return out


class Stats:
    """All counters of a daemon. ``inc("dropped", stream="a", reason="duplicate")``."""

    def __init__(self):
        self._lock = threading.Lock()
        self.counters: dict[tuple[str, tuple], int] = {}
        self.gauges: dict[str, float] = {}
        self.hists = {"latency_seconds": Histogram(), "solve_seconds": Histogram()}
        self.started = time.time()

    def inc(self, name: str, n: int = 1, **labels) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + n

    def set(self, name: str, value: float) -> None:
        with self._lock:
            self.gauges[name] = value

    def observe(self, name: str, seconds: float) -> None:
        with self._lock:
            self.hists[name].observe(seconds)

    def fold_stream(self, stream: str, into: str = "_closed") -> None:
        """Merge every counter labelled ``stream`` into the same counter labelled ``into``: a closed stream's
        counts stay in the totals, but names that come and go (new tracking ids, a sender cycling names) do not
        add label sets for ever."""
        with self._lock:
            for key in [k for k in self.counters if ("stream", stream) in k[1]]:
                merged = (key[0], tuple(sorted({**dict(key[1]), "stream": into}.items())))
                self.counters[merged] = self.counters.get(merged, 0) + self.counters.pop(key)

    def total(self, name: str, **labels) -> int:
        """Sum of counter ``name`` over every label set that contains ``labels``."""
        want = set(labels.items())
        with self._lock:
            return sum(v for (n, lab), v in self.counters.items() if n == name and want <= set(lab))

    def snapshot(self) -> dict:
        """JSON/msgpack-ready view: ``{"uptime_s", "counters": [{name, labels, value}], "gauges", "histograms"}``."""
        with self._lock:
            return {
                "uptime_s": time.time() - self.started,
                "counters": [
                    {"name": n, "labels": dict(lab), "value": v} for (n, lab), v in sorted(self.counters.items())
                ],
                "gauges": dict(self.gauges),
                "histograms": {k: h.to_dict() for k, h in self.hists.items()},
            }

    def prometheus(self) -> str:
        """The Prometheus text exposition format, every metric prefixed ``rtik_``."""
        lines = []
        with self._lock:
            for name, (kind, help_) in METRICS.items():
                full = f"rtik_{name}_total" if kind == "counter" else f"rtik_{name}"
                lines += [f"# HELP {full} {help_}", f"# TYPE {full} {kind}"]
                if kind == "counter":
                    for (n, lab), v in sorted(self.counters.items()):
                        if n == name:
                            lines.append(f"{full}{_labels(dict(lab))} {v}")
                elif kind == "gauge":
                    lines.append(f"{full} {self.gauges.get(name, 0)}")
                else:
                    h = self.hists[name]
                    for b, c in zip((*h.bounds, "+Inf"), h._cumulative(), strict=True):
                        lines.append(f'{full}_bucket{{le="{b}"}} {c}')
                    lines += [f"{full}_sum {h.sum}", f"{full}_count {h.count}"]
        return "\n".join(lines) + "\n"


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    esc = lambda v: str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels.items()) + "}"


def serve_metrics(stats: Stats, host: str, port: int, allow=None):
    """Start a tiny HTTP server thread answering ``GET /metrics``; returns the server (``shutdown()`` stops it).
    ``allow``: a :class:`rtik.serve.security.SourceFilter` of the clients answered (others get 403), or None."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if allow is not None and not allow.allows(self.client_address[0]):
                self.send_error(403, "this address may not read the metrics ([metrics] allow)")
                return
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404, "only /metrics is served")
                return
            body = stats.prometheus().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet: scrapes are not worth a log line
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="rtik-metrics", daemon=True).start()
    return server
