"""The daemon's live view in a browser (docs/view.md): every stream's solved skeleton beside its input points,
per-stream health, recording, served over HTTP and a WebSocket by :class:`~rtik.serve.webserver.WebServer`.

The solver thread only hands each tick's poses to :meth:`LiveView.offer`: a dictionary store and a deque append
per stream, no lock, no I/O. Everything else runs on the web thread: every ``1 / [web] rate`` seconds the latest
pose of every stream that moved is encoded once (one binary message, float32) and queued for every browser; a
browser that does not keep up is dropped by the server. Twice a second the per-stream figures are gathered through
the control commands (:class:`rtik.serve.control.Commands`), under the daemon's lock like any ``rtik ctl``; the
page starts and stops recordings through the same commands.

Binary message (little-endian): ``u32 n``, ``n`` bytes of JSON ``{"t": "poses", "time", "streams": [{"name",
"seq", "j", "i", "reset", "noise_mm"}]}``, zero padding to a multiple of 4, then per stream ``j * 3`` float32
solved joint positions and ``i * 3`` float32 input positions, metres, NaN where a joint is missing.
"""

from __future__ import annotations

import json
import logging
import math
import struct
import time
from collections import deque
from pathlib import Path

import numpy as np

from rtik.errors import ConfigError, ProtocolError, RtikError
from rtik.formats.units import METRES
from rtik.serve.security import SourceFilter, is_loopback_host
from rtik.serve.webserver import Client, Handler, Response, WebServer
from rtik.wire import protocol

log = logging.getLogger("rtik.web")

STATIC = Path(__file__).resolve().parent / "web"  # the page, its modules and vendored three.js
LATENCY_WINDOW = 600  # latencies kept per stream for p50/p99 (5 s at 120 Hz)
STATS_PERIOD = 0.5  # s between per-stream figures
RECORDINGS_PERIOD = 2.0  # s between listings of the recordings folder
SETTLED_MM = 1.0  # calibration is "settled" when no bone length moved more than this over STATS_PERIOD
COMMAND_TIMEOUT = 2.0  # s a browser's command may wait for the daemon's lock
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".txt": "text/plain; charset=utf-8", ".png": "image/png"}  # fmt: skip


def jsonable(x):
    """``x`` with every non-finite float replaced by None (JSON has no inf or NaN) and numpy scalars as Python's."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def static_files() -> dict[str, tuple[bytes, str]]:
    """Every file of the page, read once: ``{url path: (bytes, content type)}``; ``/`` is ``index.html``."""
    out = {}
    for p in sorted(STATIC.rglob("*")):
        if p.is_file() and p.suffix in _TYPES:
            out["/" + p.relative_to(STATIC).as_posix()] = (p.read_bytes(), _TYPES[p.suffix])
    out["/"] = out["/index.html"]
    return out


def skeleton_message(skeleton, mode: str, **extra) -> dict:
    """The ``hello`` a page gets first: joint names and the bones to draw (child, parent), leaving out the joints
    above the motion root (a static dummy root would draw a line to the origin)."""
    parents = [int(p) for p in skeleton.parents]
    root = skeleton.motion_root()
    above, j = set(), parents[root]
    while j >= 0:
        above.add(j)
        j = parents[j]
    bones = [[c, p] for c, p in enumerate(parents) if p >= 0 and p not in above]
    joints = [j for j in range(len(parents)) if j not in above]
    return {"t": "hello", "mode": mode, "names": list(skeleton.names), "parents": parents, "bones": bones,
            "joints": joints, **extra}  # fmt: skip


def pack_poses(header: dict, arrays: list[np.ndarray]) -> bytes:
    """One binary message: the JSON header, padding, then every array as float32 (see the module docstring)."""
    head = json.dumps(jsonable(header), separators=(",", ":")).encode("utf-8")
    pad = -(4 + len(head)) % 4
    body = b"".join(np.ascontiguousarray(a, dtype="<f4").tobytes() for a in arrays)
    return struct.pack("<I", len(head)) + head + b" " * pad + body


class LiveView(Handler):
    """The live view of a :class:`rtik.serve.daemon.Daemon`: ``start()`` binds ``[web]``, ``offer()`` takes each
    tick's poses (solver thread), ``stop()`` closes every browser."""

    def __init__(self, daemon):
        self.d = daemon
        self.cfg = daemon.cfg.web
        self.server: WebServer | None = None
        self.latest: dict[str, tuple] = {}  # stream -> (SolveResult, Frame | None), written by the solver thread
        self.latency: dict[str, deque] = {}  # stream -> receive-to-publish latencies (s)
        self.resets: dict[str, int] = {}
        self._sent_seq: dict[str, int] = {}
        self._lengths: dict[str, np.ndarray] = {}  # calibrated bone lengths at the last figures
        self._rate: dict[str, tuple[float, int]] = {}  # stream -> (time, frames out) at the last figures
        self._figures: dict = {}
        self._recordings: list = []
        self._files = static_files()
        sk = daemon.skeleton
        self._bones = np.array([b for b in skeleton_message(sk, "live")["bones"]], dtype=np.int64).reshape(-1, 2)
        rest = np.linalg.norm(sk.offsets[self._bones[:, 0]], axis=-1)
        self._rest_total = float(rest.sum()) or 1.0

    # ------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Bind the view. ConfigError when ``[web] host`` is off loopback without ``[web] allow`` or
        ``insecure``; a port that cannot be bound is logged and the daemon serves on without the view."""
        cfg, sec = self.cfg, self.d.cfg.security
        allow = SourceFilter(cfg.allow) if cfg.allow else None
        if not is_loopback_host(cfg.host):
            if allow is None and not sec.insecure:
                raise ConfigError(
                    f"refusing the live view off loopback without an allow-list: [web] host = {cfg.host!r}. List "
                    '[web] allow (e.g. ["10.0.0.7", "10.0.0.0/24"]) or use `rtik serve --insecure`; anyone it '
                    "admits can start and stop recordings"
                )
            if allow is None:
                log.warning("INSECURE: the live view on %s:%d admits any address ([web] allow is empty)",
                            cfg.host, cfg.port)  # fmt: skip
        server = WebServer(self, cfg.host, cfg.port, cfg.max_clients, cfg.max_buffer, allow)
        try:
            server.start()
        except OSError as e:
            self.d.stats.inc("errors", kind="web")
            log.error("live view not started: cannot bind %s:%d: %s; the daemon serves on without it",
                      cfg.host, cfg.port, e)  # fmt: skip
            return
        self.server = server
        server.call(server.every, 1.0 / cfg.rate, self._push)
        server.call(server.every, STATS_PERIOD, self._refresh)
        server.call(server.every, RECORDINGS_PERIOD, self._list_recordings)
        log.info("live view on %s", server.url)

    @property
    def url(self) -> str | None:
        return self.server.url if self.server is not None else None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    # ------------------------------------------------------------------------------------ solver thread
    def offer(self, poses, results: dict, frames: dict) -> None:
        """Keep the latest pose of every stream of a tick (solver thread: no lock, no I/O, no allocation beyond
        a tuple per stream)."""
        now = time.time()
        for p in poses:
            res = results.get(p.stream)
            if res is None:
                continue
            self.latest[p.stream] = (res, frames.get(p.stream, (None,))[0])
            q = self.latency.get(p.stream)
            if q is None:
                q = self.latency[p.stream] = deque(maxlen=LATENCY_WINDOW)
            if p.recv:
                q.append(now - p.recv)
            if res.reset:
                self.resets[p.stream] = self.resets.get(p.stream, 0) + 1

    # --------------------------------------------------------------------------------------- web thread
    def _push(self) -> None:
        """Send the latest pose of every stream that moved since the last push (decimation)."""
        if self.server is None or not self.server.clients:
            return
        open_streams = self._figures.get("open")
        header, arrays = [], []
        for name, (res, frame) in sorted(self.latest.copy().items()):
            if open_streams is not None and name not in open_streams:
                continue
            if self._sent_seq.get(name) == res.seq:
                continue
            self._sent_seq[name] = res.seq
            inputs = np.zeros((0, 3), np.float32)
            if frame is not None:
                inputs = np.asarray(frame.positions, np.float32) * METRES.get(frame.units, 1.0)
                if frame.mask is not None:
                    inputs = np.where(np.asarray(frame.mask, bool)[:, None], inputs, np.nan)
            header.append({"name": name, "seq": int(frame.seq if frame is not None else res.seq),
                           "j": len(res.positions), "i": len(inputs), "reset": bool(res.reset),
                           "noise_mm": float(res.noise) * 1e3})  # fmt: skip
            arrays += [res.positions, inputs]
        if header:
            self.server.broadcast(pack_poses({"t": "poses", "time": time.time(), "streams": header}, arrays))

    def _refresh(self) -> None:
        """Per-stream figures (twice a second): through the control commands under the daemon's lock, plus what
        the view measures itself (rate, latency percentiles, resets, calibration)."""
        server = self.server
        watched = server is not None and bool(server.clients)
        if not self.d.lock.acquire(timeout=COMMAND_TIMEOUT):
            return
        try:
            open_now = set(self.d.streams)
            if watched:
                status = self.d.commands.cmd_status()
                streams = self.d.commands.cmd_streams()
                rejected = {n: st.input_errors for n, st in self.d.streams.items()}
        finally:
            self.d.lock.release()
        for gone in set(self.latest) - open_now:  # closed streams are forgotten, watched or not
            for table in (self.latest, self.latency, self.resets, self._sent_seq, self._lengths, self._rate):
                table.pop(gone, None)
        if not watched:
            self._figures = {}
            return
        now = time.monotonic()
        for s in streams:
            self._stream_figures(s, now, rejected.get(s["stream"], 0))
        status["web"] = {"url": self.url, "clients": len(server.clients), "dropped": dict(server.dropped),
                         "rate": self.cfg.rate}  # fmt: skip
        self._figures = {"t": "stats", "status": status, "streams": streams, "open": open_now}
        server.broadcast(json.dumps(jsonable({**self._figures, "open": None})))

    def _stream_figures(self, s: dict, now: float, rejected: int) -> None:
        name = s["stream"]
        t0, n0 = self._rate.get(name, (now, s.get("frames_out", 0)))
        out = s.get("frames_out", 0)
        s["rate_hz"] = (out - n0) / (now - t0) if now > t0 else None
        self._rate[name] = (now, out)
        lat = np.fromiter(self.latency.get(name, ()), float)
        s["latency_p50_ms"] = float(np.percentile(lat, 50)) * 1e3 if lat.size else None
        s["latency_p99_ms"] = float(np.percentile(lat, 99)) * 1e3 if lat.size else None
        s["resets"] = self.resets.get(name, 0)
        s["rejected"] = rejected
        res, frame = self.latest.get(name, (None, None))
        s["noise_mm"] = float(res.noise) * 1e3 if res is not None else None
        s["missing"] = int((~np.asarray(frame.mask, bool)).sum()) if frame is not None and frame.mask is not None else 0
        s["calibration"] = None
        if res is not None:
            b = self._bones
            lengths = np.linalg.norm(res.positions[b[:, 0]] - res.positions[b[:, 1]], axis=-1)
            prev = self._lengths.get(name)
            self._lengths[name] = lengths
            moved = float(np.abs(lengths - prev).max()) * 1e3 if prev is not None else math.inf
            s["calibration"] = {"state": "settled" if moved < SETTLED_MM else "measuring",
                                "scale": float(lengths.sum()) / self._rest_total}  # fmt: skip

    def _list_recordings(self) -> None:
        if self.server is None or not self.server.clients:
            return
        if self.d.lock.acquire(timeout=COMMAND_TIMEOUT):
            try:
                self._recordings = self.d.commands.cmd_recordings()
            finally:
                self.d.lock.release()
            self.server.broadcast(json.dumps(jsonable({"t": "recordings", "list": self._recordings})))

    # --------------------------------------------------------------------------------------------- Handler
    def get(self, path: str, query: str) -> Response | None:
        if path in self._files:
            body, kind = self._files[path]
            return Response(200, body, kind)
        if path == "/api/info":
            info = {"mode": "live", "model": self.d.model_name, "endpoints": self.d.endpoints()}
            return Response(200, json.dumps(jsonable(info)).encode(), "application/json")
        if path == "/api/web":
            s = self.server  # cpu_s: CPU seconds of this thread, the web thread: what the view has cost
            doc = {"clients": len(s.clients), "dropped": s.dropped, "requests": s.requests, "cpu_s": time.thread_time()}
            return Response(200, json.dumps(doc).encode(), "application/json")
        if path.startswith("/recordings/"):
            return self._download(path.removeprefix("/recordings/"))
        return None

    def _download(self, name: str) -> Response | None:
        """A recording by its name in the recordings listing (the only names served: nothing else is reachable)."""
        if not self.d.lock.acquire(timeout=COMMAND_TIMEOUT):
            return Response(503, b"the daemon is busy; try again\n")
        try:
            names = {r["name"] for r in self.d.commands.cmd_recordings()}
        finally:
            self.d.lock.release()
        if name not in names:
            return None
        return Response(200, content_type="application/octet-stream", path=self.d.record_dir / name)

    def connected(self, client: Client) -> None:
        sk = self.d.skeleton
        client.send(json.dumps(skeleton_message(sk, "live", model=self.d.model_name, rate=self.cfg.rate)))
        if self._figures:
            client.send(json.dumps(jsonable({**self._figures, "open": None})))
        client.send(json.dumps(jsonable({"t": "recordings", "list": self._recordings})))
        self._sent_seq.clear()  # the newcomer gets every stream's pose at the next push

    def message(self, client: Client, text: str) -> None:
        """A command from the page: ``{"id", "cmd", ...arguments}``, one of the control commands
        (:data:`rtik.wire.protocol.COMMANDS`), run by the same handler as ``rtik ctl``; the reply is ``{"t":
        "reply", "id", "ok", "result" | "error"}``."""
        reply: dict = {"t": "reply", "id": None, "ok": False}
        try:
            msg = json.loads(text)
            if not isinstance(msg, dict):
                raise ProtocolError("a command is a JSON object")
            reply["id"] = msg.get("id") if isinstance(msg.get("id"), int | str) else None
            cmd = msg.get("cmd")
            if cmd not in protocol.COMMANDS:
                raise ProtocolError(f"unknown command {cmd!r}; valid commands: {', '.join(protocol.COMMANDS)}")
            args = {k: v for k, v in msg.items() if k not in ("id", "cmd")}
            if not self.d.lock.acquire(timeout=COMMAND_TIMEOUT):
                raise RtikError("the daemon is busy; try again")
            try:
                reply["result"] = getattr(self.d.commands, f"cmd_{cmd}")(**args)
            finally:
                self.d.lock.release()
            reply["ok"] = True
        except json.JSONDecodeError as e:
            reply["error"] = f"not JSON: {e}"
        except TypeError as e:
            reply["error"] = f"bad arguments: {e}"
        except RtikError as e:
            reply["error"] = str(e)
        client.send(json.dumps(jsonable(reply)))
        if reply["ok"] and cmd in ("record_start", "record_stop"):
            self._list_recordings()
            self._refresh()
