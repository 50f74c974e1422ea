"""The rtik daemon: frames in (ZeroMQ, OSC), solved poses out (ZeroMQ, OSC, VMC, BVH recordings), control.

Threads (see docs/daemon.md):
    I/O      a ``zmq.Poller`` over the ingest sockets (PULL bind, SUB connect) and the control ROUTER
    OSC      a UDP socket; datagrams parsed with python-osc (both: :mod:`rtik.serve.receivers`)
    solver   waits on a condition until a stream has a new frame, then pushes the oldest waiting frame of every
             stream and runs one batched ``solver.tick()``, publishes, records
    main     lifecycle: readiness and watchdog pings to systemd, signals, shutdown

A frame's way: receive -> decode + validate -> the stream's queue (in order; when full the oldest is dropped;
duplicates and older sequence numbers are dropped and counted; :mod:`rtik.serve.ingest`) -> tick -> publish + record.
Solver calls, recordings and control commands (:mod:`rtik.serve.control`) hold one lock, so they never interleave.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from rtik.errors import InputError, RtikError
from rtik.serve.config import Config, solver_options
from rtik.serve.control import Commands
from rtik.serve.ingest import Slots
from rtik.serve.outputs import Outputs, make_pose
from rtik.serve.receivers import Receivers
from rtik.serve.recorder import RecordError, Recording, resolve
from rtik.serve.security import Guard
from rtik.serve.stats import Stats, serve_metrics
from rtik.wire import osc, protocol
from rtik.wire.zmq import bind, connect

log = logging.getLogger("rtik.daemon")


@dataclass
class _Stream:
    """What the solver thread knows of an open stream."""

    name: str
    layout: str
    units: str
    opened: float = field(default_factory=time.time)
    last_seq: int = -1
    last_latency_us: float = 0.0
    recording: Recording | None = None
    input_errors: int = 0


class Daemon:
    """The running daemon. ``start()`` binds everything and starts the threads; ``stop()`` ends them and
    finalises recordings. ``solver`` is an :class:`rtik.solve.solver.Solver` (built from the config if None).

    A program that runs a daemon itself should also do what ``rtik serve`` does to its process before
    ``start()``: a 1 ms interpreter switch interval and :func:`rtik.commands.serve.freeze_loaded`."""

    def __init__(self, cfg: Config, solver=None):
        self.cfg = cfg
        self._ray_owned = solver is None and cfg.ray.enabled  # shards on a Ray cluster, stopped by stop()
        if self._ray_owned:
            from rtik.serve.ray_shards import RaySolver

            solver = RaySolver.from_config(cfg)
        if solver is None:
            from rtik.solve.solver import Solver

            solver = Solver.from_path(
                cfg.model.path or None, backend=cfg.model.backend, options=solver_options(cfg.model)
            )
        self.solver = solver
        self.stats = Stats()
        self.slots = Slots(
            cfg.streams.max_streams, self.stats, cfg.limits.max_rate, cfg.streams.queue, cfg.streams.max_wait
        )
        self.lock = threading.RLock()  # solver, streams and recordings
        # clear while the solver thread ticks: the receiving threads wait for it (Receivers.pause_for_tick)
        self.not_solving = threading.Event()
        self.not_solving.set()
        self.streams: dict[str, _Stream] = {}
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.heartbeat = time.monotonic()
        self.skeleton = solver.skeleton
        pack = getattr(solver, "pack", None)
        self.model_name = str(getattr(pack, "name", "")) if pack is not None else ""
        self._skeleton_msg = protocol.encode_skeleton(self.skeleton.to_dict(), self.model_name)
        self._last_skeleton = 0.0
        self._last_idle_check = time.monotonic()
        self._log_times: dict[tuple, float] = {}
        self.record_dir = Path(cfg.recording.folder)
        self.rigs = self._load_rigs(cfg, solver)  # name -> (skeleton, unit, convert) for recordings in a rig
        self.ctx = zmq.Context()
        self._socks: list = []
        self.outputs = Outputs(cfg, self.skeleton)
        self.metrics = None
        self.web = None  # the live view (rtik.serve.web.LiveView), set by start() when [web] is enabled
        self.guard: Guard | None = None  # access rules and limits (rtik.serve.security), set by start()
        self.commands = Commands(self)
        self.receivers = Receivers(self.slots, self.stats, self.not_solving, self.stop_event, self._error,
                                   self.commands.handle)  # fmt: skip

    # ----------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        cfg = self.cfg
        try:
            self.guard = Guard(cfg, self.ctx)  # refuses off-loopback binds without keys or `insecure`
            opts = self.guard.server_options()  # message size limit (+ CurveZMQ server keys)
            ingest = self._socks = []  # every socket is listed as soon as it exists, so a failed start closes it
            if cfg.zmq_in.enabled:
                if cfg.zmq_in.bind:
                    ingest.append(bind(self.ctx, zmq.PULL, cfg.zmq_in.bind, cfg.zmq_in.hwm, opts))
                if cfg.zmq_in.connect:
                    ingest.append(connect(self.ctx, zmq.SUB, cfg.zmq_in.connect, cfg.zmq_in.hwm,
                                          options=self.guard.connect_options()))  # fmt: skip
            control = bind(self.ctx, zmq.ROUTER, cfg.control.bind, options=opts) if cfg.control.enabled else None
            self._socks = [*ingest, *([control] if control else [])]
            self.outputs.open(self.ctx, getattr(getattr(self.solver, "pack", None), "prior_local", None), opts)
            osc_sock = osc.udp_receiver(cfg.osc_in.host, cfg.osc_in.port) if cfg.osc_in.enabled else None
            if osc_sock is not None:
                self._socks.append(osc_sock)
            if cfg.metrics.enabled:
                self.metrics = serve_metrics(self.stats, cfg.metrics.host, cfg.metrics.port, self.guard.metrics_allow)
            if cfg.web.enabled:
                from rtik.serve.web import LiveView

                self.web = LiveView(self)
                self.web.start()
        except OSError as e:
            self.close()
            raise RtikError(f"cannot start: {e}") from e
        except RtikError:
            self.close()
            raise
        self._spawn("rtik-io", self.receivers.zmq_loop, ingest, control)
        if osc_sock is not None:
            self._spawn("rtik-osc", self.receivers.osc_loop, osc_sock, self.guard)
        self._spawn("rtik-solver", self._solver_loop)
        self._spawn("rtik-recorder", self._recorder_loop)
        log.info("serving %s", self.endpoints())

    def _spawn(self, name, target, *args) -> None:
        t = threading.Thread(target=self._guarded, args=(name, target, *args), name=name, daemon=True)
        t.start()
        self.threads.append(t)

    def _guarded(self, name, target, *args) -> None:
        try:
            target(*args)
        except Exception:  # a dying thread must not leave a half-alive daemon
            log.exception("thread %s failed; shutting down", name)
            self.stats.inc("errors", kind="thread")
            self.stop_event.set()

    def endpoints(self) -> dict:
        c = self.cfg
        return {
            "ingest_zmq": c.zmq_in.bind if c.zmq_in.enabled else None,
            "ingest_zmq_connect": list(c.zmq_in.connect) if c.zmq_in.enabled else [],
            "ingest_osc": f"udp://{c.osc_in.host}:{c.osc_in.port}" if c.osc_in.enabled else None,
            "feed": c.zmq_out.bind if c.zmq_out.enabled else None,
            "osc_out": f"udp://{c.osc_out.host}:{c.osc_out.port}" if c.osc_out.enabled else None,
            "vmc": f"udp://{c.vmc.host}:{c.vmc.port}" if c.vmc.enabled else None,
            "control": c.control.bind if c.control.enabled else None,
            "metrics": f"http://{c.metrics.host}:{c.metrics.port}/metrics" if c.metrics.enabled else None,
            "web": self.web.url if self.web is not None else None,
        }

    def healthy(self) -> bool:
        """True while every thread runs and the solver thread looped recently (used for watchdog pings)."""
        return all(t.is_alive() for t in self.threads) and time.monotonic() - self.heartbeat < 5.0

    def stop(self) -> None:
        """Stop the threads, finalise recordings, close sockets. Idempotent."""
        self.stop_event.set()
        self.slots.wake()
        for t in self.threads:
            t.join(timeout=5.0)
        with self.lock:
            for st in self.streams.values():
                self.stop_recording(st)
            if self._ray_owned:
                self.solver.close()
        self.close()

    def close(self) -> None:
        if self.web is not None:
            self.web.stop()
            self.web = None
        if self.guard is not None:
            self.guard.stop()  # the authenticator's socket must close before the context terminates
        for s in self._socks:
            try:
                s.close(0) if isinstance(s, zmq.Socket) else s.close()
            except (OSError, zmq.ZMQError):
                pass
        self._socks = []
        self.outputs.close()
        if self.metrics is not None:
            self.metrics.shutdown()
            self.metrics.server_close()
            self.metrics = None
        self.ctx.term()

    # ------------------------------------------------------------------------------------------- errors
    def _error(self, kind: str, stream: str | None, e: Exception) -> None:
        """Count an error and log it, at most once a second per (kind, stream)."""
        self.stats.inc("errors", kind=kind, **({"stream": stream} if stream else {}))
        if stream:
            self.slots.count(stream, "errors")
        key, now = (kind, stream), time.monotonic()
        if now - self._log_times.get(key, 0.0) >= 1.0:
            self._log_times[key] = now
            log.warning("%s error%s: %s", kind, f" on stream {stream!r}" if stream else "", e)

    # -------------------------------------------------------------------------------------------- solving
    def _solver_loop(self) -> None:
        while not self.stop_event.is_set():
            batch = self.slots.take(0.1)
            self.heartbeat = time.monotonic()
            if batch:
                self.not_solving.clear()
                try:
                    with self.lock:
                        self._tick(batch)
                finally:
                    self.not_solving.set()
            self._housekeeping()

    def _tick(self, batch) -> None:
        frames = {}
        for f, recv, restart in batch:
            st = self._ensure_stream(f, restart)
            if st is None:
                continue
            try:
                self.solver.push(f.stream, f.positions, f.timestamp, mask=f.mask)
            except InputError as e:
                st.input_errors += 1
                self._error("input", f.stream, e)
                continue
            frames[f.stream] = (f, recv)
        if not frames:
            return
        t0 = time.perf_counter()
        try:
            results = self.solver.tick()
        except RtikError as e:
            self._error("solver", None, e)
            return
        self.stats.observe("solve_seconds", time.perf_counter() - t0)
        self.stats.inc("ticks")
        self._late_errors()
        self._drop_non_finite(results)
        try:
            self._publish(results, frames)
        except Exception as e:  # any failing output (an encoder refusing a value, ...) must not stop the solver thread
            self._error("publish", None, e)

    def _late_errors(self) -> None:
        """Frames refused after ``push`` returned: a sharded solver (rtik.serve.ray_shards) checks them on its
        shard and reports them with the tick."""
        take = getattr(self.solver, "take_errors", None)
        for name, e in take() if take is not None else ():
            st = self.streams.get(name)
            if st is not None:
                st.input_errors += 1
            self._error("input", name, e)

    def _drop_non_finite(self, results: dict) -> None:
        """A result with NaN or inf (e.g. a stream whose first frames put every joint on one point: no body size)
        is never published or recorded: counted as a solver error, and the stream's solver state is started over,
        calibration included, so the next good frame solves cleanly; its recording goes on."""
        for name in [n for n, r in results.items() if not (np.isfinite(r.local_quats).all()
                                                           and np.isfinite(r.root_pos).all())]:  # fmt: skip
            del results[name]
            self._error("solver", name, RtikError(f"stream {name!r}: non-finite result; stream state started over"))
            st = self.streams.get(name)
            try:
                self.solver.close_stream(name)
                kw = {"fps": self.cfg.streams.fps} if self.cfg.streams.fps > 0 else {}
                if st is not None:
                    self.solver.open_stream(name, layout=st.layout, units=st.units, **kw)
            except RtikError as e:
                self._error("solver", name, e)
                self._close_stream(name, forget=False)

    def _ensure_stream(self, f: protocol.Frame, restart: bool) -> _Stream | None:
        st = self.streams.get(f.stream)
        if st is not None and (restart or (st.layout, st.units) != (f.layout, f.units)):
            log.info("stream %r restarted (sequence or layout changed): reopening", f.stream)
            self._close_stream(f.stream, forget=False)
            st = None
        if st is not None:
            return st
        kw = {"fps": self.cfg.streams.fps} if self.cfg.streams.fps > 0 else {}
        try:
            self.solver.open_stream(f.stream, layout=f.layout, units=f.units, **kw)
        except RtikError as e:
            self._error("input", f.stream, e)
            return None
        st = self.streams[f.stream] = _Stream(f.stream, f.layout, f.units)
        self.stats.set("streams", len(self.streams))
        log.info("stream %r opened (layout %s, units %s)", f.stream, f.layout, f.units)
        self.outputs.stream_opened(f.stream)
        want = self.cfg.recording.streams
        if "*" in want or f.stream in want:
            try:
                self.start_recording(st, None)
            except RtikError as e:
                self._error("record", f.stream, e)
        return st

    def _publish(self, results: dict, frames: dict) -> None:
        """Send a tick's poses (:mod:`rtik.serve.outputs`), then count, measure and record them."""
        pub = time.time()
        poses = [make_pose(res, *frames.get(name, (None, 0.0)), pub) for name, res in results.items()]
        self.outputs.send(poses, results)
        for p in poses:
            try:
                self._account(p)
            except (RtikError, OSError) as e:
                self._error("publish", p.stream, e)
        if self.web is not None:
            self.web.offer(poses, results, frames)  # the latest pose per stream, kept for the browsers: no I/O

    def _account(self, p: protocol.Pose) -> None:
        """Counters, latency, and the stream's recording."""
        self.stats.inc("frames_out", stream=p.stream)
        self.slots.count(p.stream, "out")
        latency = time.time() - p.recv if p.recv else 0.0
        if p.recv:
            self.stats.observe("latency_seconds", latency)
        st = self.streams.get(p.stream)
        if st is not None:
            st.last_seq = p.seq
            st.last_latency_us = latency * 1e6
            if st.recording is not None and not st.recording.write(p.local_quats, p.root_pos, p.timestamp):
                self._record_failed(st, st.recording)

    def _recorder_loop(self) -> None:
        """Write queued recording frames to disk (off the solver thread), at least every flush interval."""
        period = min(self.cfg.recording.flush_interval, 1.0) / 2
        while not self.stop_event.wait(period):
            with self.lock:
                recs = [(st, st.recording) for st in self.streams.values() if st.recording is not None]
            for st, rec in recs:
                if not rec.flush():
                    self._record_failed(st, rec)

    def _record_failed(self, st: _Stream, rec: Recording) -> None:
        """A recording whose write failed (full disk, ...): counted and logged once, the stream goes on."""
        with self.lock:
            if st.recording is not rec:
                return  # already handled by the other thread
            st.recording = None
            self.stats.set("recordings", self.n_recordings())
        self._error("record", st.name, RecordError(rec.error or "recording stopped"))
        log.error("recording of stream %r stopped: %s", st.name, rec.error)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        iv = self.cfg.zmq_out.skeleton_interval
        if iv > 0 and now - self._last_skeleton >= iv:
            self._last_skeleton = now
            self.outputs.publish_skeleton(self._skeleton_msg)
        timeout = self.cfg.streams.idle_timeout
        if timeout > 0 and now - self._last_idle_check >= 1.0:
            self._last_idle_check = now
            for name in self.slots.idle(timeout):
                with self.lock:
                    log.info("stream %r idle for %g s: closing", name, timeout)
                    self._close_stream(name)

    def _close_stream(self, name: str, forget: bool = True) -> None:
        st = self.streams.pop(name, None)
        if st is not None:
            self.stop_recording(st)
            try:
                self.solver.close_stream(name)
            except RtikError as e:
                self._error("solver", name, e)
        if forget:
            self.slots.remove(name)
            self.outputs.stream_closed(name)
            self.stats.fold_stream(name)  # its counters join "_closed": names that come and go stay bounded
            for key in [k for k in self._log_times if k[1] == name]:
                del self._log_times[key]
        self.stats.set("streams", len(self.streams))

    # ----------------------------------------------------------------------------------------- recording
    def _load_rigs(self, cfg: Config, solver) -> dict:
        """The rigs of ``[recording] rigs``, read and mapped once at start: a file that cannot be read or mapped
        stops the start with its reason."""
        from rtik.errors import ConfigError
        from rtik.serve.recorder import rig_writer

        prior = getattr(getattr(solver, "pack", None), "prior_local", None)
        rigs = {}
        for name, path in cfg.recording.rigs.items():
            try:
                rigs[name] = rig_writer(self.skeleton, path, prior)
            except (RtikError, OSError) as e:
                raise ConfigError(f"[recording] rigs: {name} = {path!r}: {e}") from e
        return rigs

    def start_recording(self, st: _Stream, name: str | None, rig: str | None = None) -> Recording:
        """Record ``st`` to BVH ``name`` (default: STREAM-TIME) in the model's skeleton, or in the rig ``rig``
        (a name of ``[recording] rigs``; default ``[recording] rig``)."""
        if st.recording is not None:
            raise RecordError(f"stream {st.name!r} is already recording to {st.recording.path}")
        rig = self.cfg.recording.rig if rig is None else rig
        if rig and rig not in self.rigs:
            raise RecordError(f"no rig {rig!r}; rigs: {', '.join(self.rigs) or 'none (see [recording] rigs)'}")
        skeleton, units, convert = self.rigs[rig] if rig else (self.skeleton, self.cfg.recording.units, None)
        if name is None:
            name = f"{st.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.record_dir.mkdir(parents=True, exist_ok=True)
        fps = self.cfg.streams.fps
        st.recording = Recording(
            resolve(self.record_dir, name), skeleton, units,
            1.0 / fps if fps > 0 else None, self.cfg.recording.flush_interval, auto_flush=False, convert=convert,
        )  # fmt: skip
        self.stats.set("recordings", self.n_recordings())
        log.info("recording stream %r to %s", st.name, st.recording.path)
        return st.recording

    def stop_recording(self, st: _Stream) -> dict | None:
        rec, st.recording = st.recording, None
        if rec is None:
            return None
        if not rec.close():
            self._error("record", st.name, RecordError(rec.error or "close failed"))
        self.stats.set("recordings", self.n_recordings())
        log.info("recording of stream %r finished: %d frames in %s", st.name, rec.frames, rec.path)
        return rec.info()

    def n_recordings(self) -> int:
        return sum(1 for s in self.streams.values() if s.recording is not None)
