"""Control commands of the daemon (ZeroMQ ROUTER, msgpack; docs/protocol.md lists them with their replies).

Each command runs on the I/O thread while holding the daemon's lock, so it sees the solver, the streams and the
recordings between two ticks.
"""

from __future__ import annotations

import time

import numpy as np

from rtik import __version__
from rtik.errors import InputError, ProtocolError, RtikError
from rtik.serve.recorder import RecordError
from rtik.wire import protocol
from rtik.wire.zmq import split_request


class Commands:
    """Answers control requests for a :class:`rtik.serve.daemon.Daemon`."""

    def __init__(self, daemon):
        self.d = daemon

    def handle(self, sock, parts: list[bytes]) -> None:
        """Answer one request received on the ROUTER ``sock``."""
        try:
            envelope, payload = split_request(parts)
        except RtikError:
            self.d.stats.inc("errors", kind="protocol")
            return
        try:
            cmd, args = protocol.decode_command(payload)
            with self.d.lock:
                result = getattr(self, f"cmd_{cmd}")(**args)
            reply = protocol.encode_reply(True, result)
        except TypeError as e:
            reply = protocol.encode_reply(False, error=f"bad arguments: {e}")
        except ProtocolError as e:  # not a request at all: answered, and counted like malformed frames
            self.d.stats.inc("errors", kind="protocol")
            reply = protocol.encode_reply(False, error=str(e))
        except RtikError as e:
            reply = protocol.encode_reply(False, error=str(e))
        sock.send_multipart([*envelope, reply])

    def stream(self, stream):
        if stream not in self.d.streams:
            have = ", ".join(sorted(self.d.streams)) or "none"
            raise InputError(f"no open stream {stream!r}; open streams: {have}")
        return self.d.streams[stream]

    def cmd_status(self) -> dict:
        s = self.d.stats
        lat = s.hists["latency_seconds"]
        return {
            "version": __version__,
            "model": self.d.model_name,
            "backend": self.d.cfg.model.backend,
            "uptime_s": time.time() - s.started,
            "streams": len(self.d.streams),
            "recordings": self.d.n_recordings(),
            "frames_in": s.total("frames_in"),
            "frames_out": s.total("frames_out"),
            "dropped": s.total("dropped"),
            "errors": s.total("errors"),
            "latency_p50_ms": lat.quantile(0.5) * 1e3,
            "latency_p99_ms": lat.quantile(0.99) * 1e3,
            "endpoints": self.d.endpoints(),
        }

    def cmd_streams(self) -> list:
        with self.d.slots.cond:
            counts = {n: dict(s.counts) for n, s in self.d.slots.slots.items()}
        return [
            {
                "stream": n,
                "layout": st.layout,
                "units": st.units,
                "opened": st.opened,
                "last_seq": st.last_seq,
                "latency_ms": st.last_latency_us / 1e3,
                "recording": str(st.recording.path) if st.recording else None,
                **{f"frames_{k}" if k in ("in", "out") else k: v for k, v in counts.get(n, {}).items()},
                **self._solver_extra(n),
            }  # fmt: skip
            for n, st in sorted(self.d.streams.items())
        ]

    def _solver_extra(self, name: str) -> dict:
        """What the solver reports of a stream beyond the daemon's counters (a sharded solver: its shard,
        ``gap_frames``, ``reseeds``, ``moves``; rtik.serve.ray_shards)."""
        try:
            return dict(self.d.solver.stream(name).extra)
        except (RtikError, AttributeError):
            return {}

    def cmd_stats(self) -> dict:
        return self.d.stats.snapshot()

    def cmd_reset(self, stream) -> dict:
        self.stream(stream)
        self.d.solver.reset(stream)
        self.d.slots.forget_seq(stream)
        return {"stream": stream, "reset": True}

    def cmd_calibrate(self, stream) -> dict:
        self.stream(stream)
        lengths = np.asarray(self.d.solver.calibrate(stream), dtype=float)
        names = self.d.skeleton.names
        return {
            "stream": stream,
            "bone_lengths": {n: (float(v) if np.isfinite(v) else None) for n, v in zip(names, lengths, strict=True)},
        }

    def cmd_record_start(self, stream, name=None, rig=None) -> dict:
        if rig is not None and not isinstance(rig, str):
            raise InputError(f"rig must be a rig name, got {rig!r}")
        rec = self.d.start_recording(self.stream(stream), name, rig)
        return {"stream": stream, "path": str(rec.path), "rig": rig if rig is not None else self.d.cfg.recording.rig}

    def cmd_record_stop(self, stream) -> dict:
        info = self.d.stop_recording(self.stream(stream))
        if info is None:
            raise RecordError(f"stream {stream!r} is not recording")
        return {"stream": stream, **info}

    def cmd_recordings(self) -> list:
        active = {str(s.recording.path): s for s in self.d.streams.values() if s.recording is not None}
        out = []
        if self.d.record_dir.is_dir():
            for p in sorted(self.d.record_dir.glob("*.bvh")):
                key = str(p.resolve())
                st = active.get(key)
                out.append({
                    "name": p.name, "bytes": p.stat().st_size, "modified": p.stat().st_mtime,
                    "active": st is not None, "stream": st.name if st else None,
                    "frames": st.recording.frames if st else None,
                })  # fmt: skip
        return out

    def cmd_skeleton(self) -> dict:
        return {"model": self.d.model_name, "units": "m", "skeleton": self.d.skeleton.to_dict()}
