"""Live streams sharded onto Ray actors: :class:`RaySolver`, the daemon's solver when ``[ray] enabled``.

Each shard is a Ray actor (:class:`Shard`) that wraps a real :class:`rtik.solve.solver.Solver` (the same pack,
backend and options) holding a subset of the streams: their recurrent state and calibration live in the actor.
:class:`RaySolver` presents the solver interface the daemon drives (``open_stream``, ``push``, ``tick``,
``reset``, ``calibrate``, ``close_stream``), so ingest, outputs, recordings and control stay in the daemon.

Per tick, every shard with frames gets ONE call: the operations queued since its last call (frames, resets,
opens, closes) then a batched tick of its streams. The tick waits at most ``deadline`` seconds for the shards;
a late shard's results are dropped (its streams' frames are counted as a gap) and its state goes on. A stream
is sticky: it stays on the shard it was opened on (the least loaded) until nodes join the cluster, when new
shards start on them and take streams between two ticks, state and all (:meth:`Solver.export_stream`).

Resilience: every ``snapshot_every`` calls a shard also returns a snapshot of all its streams; the daemon keeps
the latest and a journal of the operations sent since. A shard whose call fails (its process killed, its node
lost, an exception) is restarted by Ray (``max_restarts``) and re-seeded: its streams are reopened, their
snapshots imported and the journal replayed without output, so their state is exactly what it would have been;
only the outputs due while the shard was away are missing (counted per stream as ``gap_frames``, with
``reseeds``). A shard that cannot be restarted (its node is gone) is retired and its streams re-seeded on the
others. docs/scale.md measures all this.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from rtik.errors import InputError, RtikError
from rtik.serve.ray_cluster import connect

log = logging.getLogger("rtik.ray")


class Shard:
    """The actor: a real :class:`~rtik.solve.solver.Solver` and the streams it holds.

    :meth:`run` applies a list of operations in order and returns what they produced:
    ``("open", name, spec)``, ``("import", name, snapshot)``, ``("push", name, positions, timestamp, mask)``,
    ``("reset", name)``, ``("calibrate", name)``, ``("close", name)``, ``("export", name)`` (snapshot, then the
    stream is closed), ``("clear",)`` (close every stream) and ``("tick", keep)`` (a batched tick; ``keep``:
    return its results)."""

    def __init__(self, model: str | None, backend: str, kernels: str, smooth: bool = True):
        from rtik.solve.solver import SmoothConfig, Solver, SolverOptions

        options = SolverOptions(kernels=kernels, smooth=SmoothConfig() if smooth else None)
        self.solver = Solver.from_path(model or None, backend=backend, options=options)
        self.specs: dict[str, dict] = {}

    def where(self) -> dict:
        """The actor's process and node."""
        import os

        import ray

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}

    def run(self, ops: list, snapshot: bool = False, replay: list | None = None) -> dict:
        """Apply ``replay`` (history being rebuilt: its errors and results are dropped), then ``ops``;
        ``{"results": {stream: SolveResult} of the kept ticks, "errors": [(stream, kind, message)], "replies":
        {stream: value} (calibrate, export), "snapshots": {stream: (spec, snapshot)} of every stream when
        ``snapshot``}``."""
        if replay:
            self._apply(replay, {"results": {}, "errors": [], "replies": {}})
        out = {"results": {}, "errors": [], "replies": {}, "snapshots": None}
        self._apply(ops, out)
        if snapshot:
            out["snapshots"] = {n: (self.specs[n], self.solver.export_stream(n)) for n in self.solver.streams}
        return out

    def _apply(self, ops: list, out: dict) -> None:
        sv = self.solver
        for op in ops:
            kind, name = op[0], op[1] if len(op) > 1 else None
            try:
                if kind == "push":
                    sv.push(name, op[2], op[3], mask=op[4])
                elif kind == "tick":
                    res = sv.tick()
                    if op[1]:
                        out["results"].update(res)
                elif kind == "open":
                    sv.open_stream(name, **op[2])
                    self.specs[name] = op[2]
                elif kind == "import":
                    sv.import_stream(name, op[2])
                elif kind == "reset":
                    sv.reset(name)
                elif kind == "calibrate":
                    out["replies"][name] = sv.calibrate(name)
                elif kind in ("close", "export"):
                    if kind == "export":
                        out["replies"][name] = (self.specs[name], sv.export_stream(name))
                    if name in sv.streams:
                        sv.close_stream(name)
                    self.specs.pop(name, None)
                elif kind == "clear":
                    for n in sv.streams:
                        sv.close_stream(n)
                    self.specs.clear()
                else:
                    raise InputError(f"unknown shard operation {kind!r}")
            except RtikError as e:
                out["errors"].append((name, kind, str(e)))


@dataclass
class _ShardState:
    """The daemon's side of one shard."""

    index: int
    actor: object
    node: str
    streams: set = field(default_factory=set)
    ops: list = field(default_factory=list)  # queued for the next call
    calls: int = 0  # calls sent
    base: dict = field(default_factory=dict)  # stream -> (spec, snapshot) of the last snapshot
    base_call: int = 0  # the call that snapshot came from
    journal: list = field(default_factory=list)  # (call, ops) sent after it (replayed history included)
    replay: list = field(default_factory=list)  # history of streams it takes over, sent with its next call
    inflight: dict = field(default_factory=dict)  # ref -> _Call, in call order
    failed: bool = False  # a call failed: re-seed before the next one
    failures: int = 0  # failed calls in a row
    retired: bool = False


@dataclass
class _Call:
    """A call in flight: its number, the streams it pushed a frame for, whether it returns snapshots, whether
    its streams' frames were already counted as a gap."""

    number: int
    pushed: list
    snapshot: bool
    counted: bool = False
    reseed: bool = False  # it rebuilds the shard's streams first


@dataclass
class StreamCounters:
    """What :meth:`RaySolver.stream` reports of a stream (``extra``: shard, gap_frames, reseeds, moves)."""

    name: str
    spec: dict
    shard: int
    frames: int = 0  # results delivered
    gap_frames: int = 0  # frames whose result did not come back within the deadline (late or lost shard)
    reseeds: int = 0  # times its shard was re-seeded from a snapshot
    moves: int = 0  # times it moved to another shard (nodes joined, a shard retired)
    last_error: str = ""

    @property
    def extra(self) -> dict:
        return {"shard": self.shard, "gap_frames": self.gap_frames, "reseeds": self.reseeds, "moves": self.moves}


class RaySolver:
    """The solver interface of :class:`rtik.solve.solver.Solver` over shards on a Ray cluster (module docstring).

    Args:
        model: model pack folder (``None``: the shipped model); every shard loads it (each node needs it there).
        backend, kernels: the shards' solver backend and pre/post-processing (as ``Solver``); smooth: their
            output smoothing (``SolverOptions.smooth``) on or off.
        address: the Ray cluster (``None``: a private local one on 127.0.0.1).
        shards_per_node: shard actors started on every alive node.
        deadline: seconds a tick waits for its shards.
        snapshot_every: a shard returns snapshots of its streams every this many calls.
        cpus_per_shard: logical CPUs each shard reserves (Ray scheduling).
        max_restarts: how often Ray restarts a shard's actor.
        poll_nodes: seconds between checks for nodes that joined or left (0: never; :meth:`rebalance` by hand).
    """

    def __init__(
        self, model: str | None = None, backend: str = "onnx", kernels: str = "auto", *, address: str | None = None,
        smooth: bool = True, shards_per_node: int = 1, deadline: float = 0.010, snapshot_every: int = 60,
        cpus_per_shard: float = 1.0, max_restarts: int = 10, poll_nodes: float = 2.0,
    ):  # fmt: skip
        from rtik.models import modelpack

        if shards_per_node < 1 or snapshot_every < 1 or deadline <= 0:
            raise RtikError("shards_per_node and snapshot_every must be at least 1 and deadline positive")
        self.ray = connect(address)
        self.pack = modelpack.load(model)
        self.skeleton = self.pack.skeleton
        self._args = (model, backend, kernels, smooth)
        self.shards_per_node, self.deadline, self.snapshot_every = shards_per_node, deadline, snapshot_every
        self.cpus_per_shard, self.max_restarts = cpus_per_shard, max_restarts
        self.shards: list[_ShardState] = []
        self._streams: dict[str, StreamCounters] = {}
        self._errors: list[tuple[str, InputError]] = []
        self.failures = 0  # failed shard calls
        self.moved = 0  # streams moved between shards
        self._nodes_seen: set[str] = set()
        self._nodes_changed = threading.Event()
        self._stop = threading.Event()
        self.rebalance()
        if not self.shards:
            raise RtikError("the Ray cluster has no alive node to start shards on")
        self._poller = None
        if poll_nodes > 0:
            self._poller = threading.Thread(target=self._poll, args=(poll_nodes,), name="rtik-ray-nodes", daemon=True)
            self._poller.start()

    @classmethod
    def from_config(cls, cfg) -> RaySolver:
        """The shards of a daemon config (:class:`rtik.serve.config.Config`: ``[model]`` and ``[ray]``)."""
        r = cfg.ray
        return cls(
            cfg.model.path or None, cfg.model.backend, cfg.model.kernels, address=r.address or None,
            smooth=cfg.model.smooth, shards_per_node=r.shards_per_node, deadline=r.deadline,
            snapshot_every=r.snapshot_every, cpus_per_shard=r.cpus_per_shard, poll_nodes=r.poll_nodes,
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------- shards
    def _alive_nodes(self) -> list[str]:
        return sorted(n["NodeID"] for n in self.ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU"))

    def _poll(self, period: float) -> None:
        while not self._stop.wait(period):
            try:
                if set(self._alive_nodes()) != self._nodes_seen:
                    self._nodes_changed.set()
            except Exception as e:  # a GCS hiccup must not end the poller
                log.warning("cannot list the Ray cluster's nodes: %s", e)

    def _start_shard(self, node: str) -> _ShardState:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        remote = self.ray.remote(Shard).options(
            num_cpus=self.cpus_per_shard, max_restarts=self.max_restarts, max_task_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
        )  # fmt: skip
        st = _ShardState(len(self.shards), remote.remote(*self._args), node)
        self.shards.append(st)
        return st

    def rebalance(self) -> int:
        """Start shards where a node has fewer than ``shards_per_node`` (nodes that joined) and move streams
        onto them until the shards are even; retire the shards of nodes that left (their streams re-seeded
        elsewhere). Runs between ticks; returns the number of streams moved."""
        self._nodes_changed.clear()
        nodes = self._alive_nodes()
        self._nodes_seen = set(nodes)
        have = [s.node for s in self.shards if not s.retired]
        new = [self._start_shard(n) for n in nodes for _ in range(self.shards_per_node - have.count(n))]
        if new:  # wait for them to be up (a solver loads its model) before any stream moves there
            self.ray.get([s.actor.where.remote() for s in new])
            log.info("%d shard(s) started on %d new node(s)", len(new), len({s.node for s in new}))
        for s in self.shards:
            if not s.retired and s.node not in self._nodes_seen:
                self._retire(s)
        return self._even_out()

    def _live(self) -> list[_ShardState]:
        return [s for s in self.shards if not s.retired]

    def _even_out(self) -> int:
        moved = 0
        while True:
            live = self._live()
            src = max(live, key=lambda s: len(s.streams))
            dst = min(live, key=lambda s: len(s.streams))
            if len(src.streams) - len(dst.streams) <= 1:
                return moved
            self._move(sorted(src.streams)[-1], src, dst)
            moved += 1

    def _move(self, name: str, src: _ShardState, dst: _ShardState) -> None:
        """Move stream ``name`` from ``src`` to ``dst`` between ticks: exported from ``src`` (after any call
        still running there), imported into ``dst`` with its next call."""
        out = self._call_now(src, [("export", name)])
        spec, snap = out["replies"][name]
        src.streams.discard(name)
        dst.streams.add(name)
        self._queue(dst, ("open", name, spec), ("import", name, snap))
        c = self._streams.get(name)
        if c is not None:
            c.shard, c.moves = dst.index, c.moves + 1
        self.moved += 1

    def _retire(self, s: _ShardState) -> None:
        """Stop using shard ``s`` (its node left): its streams are re-seeded on the other shards."""
        s.retired = True
        names = sorted(s.streams)
        s.streams.clear()
        self.ray.kill(s.actor, no_restart=True)
        live = self._live()
        if not live:
            raise RtikError("no Ray shard is left")
        log.warning("shard %d retired (its node left); %d stream(s) re-seeded elsewhere", s.index, len(names))
        base = {n: v for n, v in s.base.items() if n in names}
        journal = [op for _, ops in s.journal for op in ops if op[0] == "tick" or (len(op) > 1 and op[1] in names)]
        for n in names:
            dst = min(live, key=lambda x: len(x.streams))
            dst.streams.add(n)
            c = self._streams[n]
            c.shard, c.moves, c.reseeds = dst.index, c.moves + 1, c.reseeds + 1
        for dst in live:  # each destination replays the history of the streams it takes
            mine = {n for n in names if n in dst.streams}
            if not mine:
                continue
            ops = [op for n in sorted(mine & set(base)) for op in (("open", n, base[n][0]), ("import", n, base[n][1]))]
            ops += [("tick", False) if op[0] == "tick" else op for op in journal if op[0] == "tick" or op[1] in mine]
            dst.replay.extend(ops)

    # -------------------------------------------------------------------------------------------- calls
    def _queue(self, s: _ShardState, *ops) -> None:
        s.ops.extend(ops)

    def _send(self, s: _ShardState, ops: list):
        """Send one call to shard ``s``: its history first when it must be rebuilt (its last call failed, or it
        takes over streams), then ``ops``."""
        replay, reseed = [], s.failed
        if s.failed:
            replay = self._reseed_ops(s)
            s.failed = False
        if s.replay:
            s.journal.append((s.calls, [op for op in s.replay]))  # part of its history from now on
            replay += s.replay
            s.replay = []
        s.calls += 1
        snap = s.calls % self.snapshot_every == 0
        ref = s.actor.run.remote(ops, snap, replay)
        s.journal.append((s.calls, ops))
        s.inflight[ref] = _Call(s.calls, [op[1] for op in ops if op[0] == "push"], snap, reseed=reseed)
        return ref

    def _reseed_ops(self, s: _ShardState) -> list:
        """Operations that rebuild shard ``s`` from its last snapshot and the journal since (no output)."""
        ops = [("clear",)]
        for n, (spec, snap) in sorted(s.base.items()):
            ops += [("open", n, spec), ("import", n, snap)]
        for _, jops in s.journal:
            ops += [("tick", False) if op[0] == "tick" else op for op in jops]
        return ops

    def _gap(self, call: _Call) -> None:
        """The frames of ``call`` got no output in time."""
        if not call.counted:
            call.counted = True
            for n in call.pushed:
                if n in self._streams:
                    self._streams[n].gap_frames += 1

    def _harvest(self, s: _ShardState, ready) -> dict:
        """Book the calls of ``s`` that finished, in call order (a call is taken only after every earlier one);
        ``{ref: output}`` of those that succeeded."""
        outs = {}
        for ref in list(s.inflight):
            if ref not in ready:
                break
            call = s.inflight.pop(ref)
            try:
                out = self.ray.get(ref)
            except Exception as e:  # the actor died (RayActorError) or the call raised: re-seed on the next call
                self._gap(call)
                self._failed(s, e)
                break
            outs[ref] = self._collect(s, call, out)
        return outs

    def _call_now(self, s: _ShardState, ops: list) -> dict:
        """A synchronous call (open, calibrate, export) after the calls in flight there; queued operations go
        first. Raises RtikError when the shard fails."""
        if s.inflight:
            self._harvest(s, set(self.ray.wait(list(s.inflight), num_returns=len(s.inflight), timeout=60.0)[0]))
        ops, s.ops = s.ops + ops, []
        ref = self._send(s, ops)
        self.ray.wait([ref], timeout=60.0)
        outs = self._harvest(s, {ref})
        if ref not in outs:
            if ref in s.inflight:  # no answer in 60 s
                self._failed(s, TimeoutError("no answer in 60 s"))
            raise RtikError(f"Ray shard {s.index} failed; it is restarted and re-seeded")
        return outs[ref]

    def _collect(self, s: _ShardState, call: _Call, out: dict) -> dict:
        """Book a finished call: snapshots rotate the journal; stream errors are kept for :meth:`take_errors`."""
        s.failures = 0
        if call.reseed:
            for n in s.streams:
                self._streams[n].reseeds += 1
            log.warning("shard %d re-seeded: %d stream(s) from their snapshots", s.index, len(s.streams))
        if call.snapshot and out["snapshots"] is not None:
            s.base = dict(out["snapshots"])
            s.base_call = call.number
            s.journal = [(c, ops) for c, ops in s.journal if c > call.number]
        for name, kind, msg in out["errors"]:
            c = self._streams.get(name)
            if c is not None:
                c.last_error = msg
            if name is not None and kind in ("push", "open", "import"):
                self._errors.append((name, InputError(msg)))
        return out

    def _failed(self, s: _ShardState, e: Exception) -> None:
        """A call of shard ``s`` failed: every call in flight there is lost; the next one re-seeds it."""
        self.failures += 1
        s.failures += 1
        for call in s.inflight.values():
            self._gap(call)
        s.inflight.clear()
        s.failed = True
        log.warning("Ray shard %d failed (%s): it is restarted and re-seeded", s.index, type(e).__name__)

    # ------------------------------------------------------------------------------------- the interface
    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(self._streams)

    def stream(self, name: str) -> StreamCounters:
        c = self._streams.get(name)
        if c is None:
            raise InputError(f"no stream {name!r}; open streams: {', '.join(self._streams) or 'none'}")
        return c

    def shard_of(self, name: str) -> int:
        """The index of the shard holding stream ``name``."""
        return self.stream(name).shard

    def open_stream(self, name: str, layout="rtik", units: str = "m", fps: float | None = None, joints=None):
        """Open ``name`` on the least loaded shard (the real solver there checks it: raises InputError)."""
        if name in self._streams:
            self.close_stream(name)
        s = min(self._live(), key=lambda x: len(x.streams))
        spec = {"layout": layout, "units": units, "fps": fps, "joints": joints}
        s.streams.add(name)
        self._streams[name] = StreamCounters(name, spec, s.index)
        out = self._call_now(s, [("open", name, spec)])
        if any(n == name and k == "open" for n, k, _ in out["errors"]):
            self._errors = [(n, e) for n, e in self._errors if n != name]
            s.streams.discard(name)
            del self._streams[name]
            raise InputError(next(m for n, k, m in out["errors"] if n == name and k == "open"))
        return self._streams[name]

    def close_stream(self, name: str) -> None:
        c = self.stream(name)
        s = self.shards[c.shard]
        s.streams.discard(name)
        del self._streams[name]
        self._queue(s, ("close", name))

    def push(self, name: str, positions, timestamp: float, mask=None) -> None:
        """Queue a frame for the stream's shard; a frame the shard's solver refuses comes back from the next
        :meth:`tick` through :meth:`take_errors`."""
        s = self.shards[self.stream(name).shard]
        self._queue(s, ("push", name, positions, timestamp, mask))

    def reset(self, name: str) -> None:
        self._queue(self.shards[self.stream(name).shard], ("reset", name))

    def calibrate(self, name: str):
        """Fix the stream's calibration (the running estimate so far); its bone lengths ``(J,)`` metres."""
        s = self.shards[self.stream(name).shard]
        return self._call_now(s, [("calibrate", name)])["replies"][name]

    def take_errors(self) -> list[tuple[str, InputError]]:
        """``[(stream, InputError)]`` the shards reported since the last call (frames refused, ...)."""
        out, self._errors = self._errors, []
        return out

    def tick(self) -> dict:
        """Send every shard its queued operations and a tick, wait at most ``deadline`` for them;
        ``{stream: SolveResult}`` of the shards that answered in time."""
        if self._nodes_changed.is_set():
            self.rebalance()
        ray = self.ray
        for s in self.shards:  # calls that finished after their deadline: book them (their results are dropped)
            if s.inflight:
                self._harvest(s, set(ray.wait(list(s.inflight), num_returns=len(s.inflight), timeout=0)[0]))
        refs = {}
        for s in self._live():
            if s.ops or s.failed or s.replay:
                ops, s.ops = s.ops + [("tick", True)], []
                refs[self._send(s, ops)] = s
        if not refs:
            return {}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=self.deadline)
        ready = set(ready)
        results = {}
        for ref, s in refs.items():
            outs = self._harvest(s, ready) if ref in ready else {}
            if ref in outs:
                results.update(outs[ref]["results"])
            elif ref in s.inflight:  # late: its results will be dropped
                self._gap(s.inflight[ref])
        for name in results:
            if name in self._streams:
                self._streams[name].frames += 1
        return {n: r for n, r in results.items() if n in self._streams}

    def kill_shard(self, index: int) -> None:
        """Kill shard ``index``'s actor the way a crash would (Ray restarts it): for tests and drills."""
        self.ray.kill(self.shards[index].actor, no_restart=False)

    def close(self) -> None:
        """Stop the node poller and the shards."""
        self._stop.set()
        for s in self.shards:
            if not s.retired:
                self.ray.kill(s.actor, no_restart=True)
        self.shards = []
        self._streams.clear()
