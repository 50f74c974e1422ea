"""Streams sharded onto Ray actors (rtik.serve.ray_shards): the same results as one solver, sticky shards, a
killed shard re-seeded from snapshots, streams moving to new shards with their state, and Ray on loopback only.
Every test uses the session's private local cluster (the ``ray_local`` fixture) and the shipped model."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import numpy as np
import pytest
import steppack

from rtik.errors import InputError
from rtik.formats import bvh
from rtik.solve.solver import Solver

FPS = 30.0


@pytest.fixture(scope="module")
def clip():
    path = steppack.mocap_sample()
    if path is None:
        pytest.skip("mocap sample not found")
    return bvh.read(path).positions()[:, 1:] / 100.0  # (F, 21, 3) metres, the model's input joints


@pytest.fixture
def shards(ray_local):
    from rtik.serve.ray_shards import RaySolver

    made = []

    def make(**kw):
        kw = {"shards_per_node": 2, "deadline": 30.0, "poll_nodes": 0, **kw}
        made.append(RaySolver(None, **kw))
        return made[-1]

    yield make
    for rs in made:
        rs.close()


def frame(clip, i: int, k: int):
    return clip[(i + 11 * k) % len(clip)]


def drive(rs, ref, clip, names, ticks, start=0, each=None):
    """Push one frame per stream to the sharded solver and the reference, tick both; per tick the sharded
    results and the reference's. ``each(i)`` runs before tick ``i``."""
    out = []
    for i in range(start, start + ticks):
        if each is not None:
            each(i)
        for k, n in enumerate(names):
            rs.push(n, frame(clip, i, k), i / FPS)
            ref.push(n, frame(clip, i, k), i / FPS)
        out.append((rs.tick(), ref.tick()))
    return out


def assert_same(a, b):
    assert (a.seq, a.reset) == (b.seq, b.reset)
    np.testing.assert_allclose(a.local_quats, b.local_quats, atol=1e-4)
    np.testing.assert_allclose(a.positions, b.positions, atol=1e-4)
    np.testing.assert_allclose(a.root_pos, b.root_pos, atol=1e-4)


def test_results_equal_one_solver_and_streams_stay_on_their_shard(shards, clip):
    rs, ref = shards(), Solver.from_path(None)
    names = [f"p{k}" for k in range(6)]
    for n in names:
        rs.open_stream(n, fps=FPS)
        ref.open_stream(n, fps=FPS)
    home = {n: rs.shard_of(n) for n in names}
    assert sorted(set(home.values())) == [0, 1]  # both shards hold streams
    moved = []
    ticks = drive(rs, ref, clip, names, 200, each=lambda i: moved.extend(n for n in names if rs.shard_of(n) != home[n]))
    assert not moved
    for got, want in ticks:
        assert set(got) == set(want) == set(names)
        for n in names:
            assert_same(got[n], want[n])
    assert all(rs.stream(n).extra == {"shard": home[n], "gap_frames": 0, "reseeds": 0, "moves": 0} for n in names)


def test_a_killed_shard_comes_back_and_its_streams_match_again(shards, clip):
    rs, ref = shards(snapshot_every=7), Solver.from_path(None)
    names = [f"k{k}" for k in range(4)]
    for n in names:
        rs.open_stream(n, fps=FPS)
        ref.open_stream(n, fps=FPS)
    victims = [n for n in names if rs.shard_of(n) == 0]
    drive(rs, ref, clip, names, 30)
    rs.kill_shard(0)
    after = drive(rs, ref, clip, names, 40, start=30)
    missing = [sorted(set(want) - set(got)) for got, want in after]
    assert any(missing) and all(set(m) <= set(victims) for m in missing)  # only the killed shard's streams
    assert not missing[-1]  # back within the run
    for got, want in after:
        for n in got:
            assert_same(got[n], want[n])  # re-seeded from snapshot + journal: exactly where it would be
    gap = sum(len(m) for m in missing)
    assert sum(rs.stream(n).gap_frames for n in names) == gap
    assert all(rs.stream(n).reseeds >= 1 for n in victims)
    assert all(rs.stream(n).reseeds == 0 == rs.stream(n).gap_frames for n in names if n not in victims)
    assert rs.failures >= 1


def test_new_shards_take_streams_with_their_state(shards, clip):
    rs, ref = shards(shards_per_node=1), Solver.from_path(None)
    names = [f"m{k}" for k in range(4)]
    for n in names:
        rs.open_stream(n, fps=FPS)
        ref.open_stream(n, fps=FPS)
    drive(rs, ref, clip, names, 20)
    assert {rs.shard_of(n) for n in names} == {0}
    rs.shards_per_node = 2  # as when a node joins: a new shard starts and takes half of the streams
    assert rs.rebalance() == 2
    assert sorted(rs.shard_of(n) for n in names) == [0, 0, 1, 1]
    for got, want in drive(rs, ref, clip, names, 20, start=20):
        assert set(got) == set(names)
        for n in names:
            assert_same(got[n], want[n])
    assert sum(rs.stream(n).moves for n in names) == 2


def test_bad_frames_reset_and_calibrate(shards, clip):
    rs = shards()
    ref = Solver.from_path(None)
    for s in (rs, ref):
        s.open_stream("a", fps=FPS)
        s.open_stream("b", fps=FPS)
    with pytest.raises(InputError, match="unknown units"):
        rs.open_stream("c", units="furlong")
    assert "c" not in rs.streams
    for i in range(10):
        for s in (rs, ref):
            s.push("a", frame(clip, i, 0), i / FPS)
            bad = np.full((21, 3), np.nan) if i == 5 else frame(clip, i, 1)
            try:
                s.push("b", bad, i / FPS)
            except InputError:
                assert s is ref
        got, want = rs.tick(), ref.tick()
        assert set(got) == set(want)
        errors = rs.take_errors()
        assert [n for n, _ in errors] == (["b"] if i == 5 else [])
        for n in got:
            assert_same(got[n], want[n])
        if i == 6:
            rs.reset("a")
            ref.reset("a")
    np.testing.assert_allclose(rs.calibrate("a"), ref.calibrate("a"), atol=1e-9)
    rs.close_stream("b")
    assert rs.streams == ("a",)


def _listening(pids: set[int]) -> list[str]:
    """Addresses on which the processes ``pids`` listen (TCP, IPv4 and IPv6), from /proc."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # LISTEN
                hexaddr = f[1].split(":")[0]
                raw = bytes.fromhex(hexaddr)
                if len(raw) == 4:
                    addr = ipaddress.IPv4Address(raw[::-1])
                else:
                    addr = ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
                    addr = addr.ipv4_mapped or addr
                out.append(str(addr))
    return out


def _descendants(pid: int) -> set[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        out.add(p)
        todo.extend(kids.get(p, []))
    return out


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc to list listening sockets")
def test_ray_listens_on_loopback_only(shards):
    from rtik.serve import ray_cluster

    shards(shards_per_node=1)  # actors up: their worker processes listen too
    assert ray_cluster.node_address() == "127.0.0.1"
    addrs = _listening(_descendants(os.getpid()))
    assert len(addrs) >= 3  # this process's core worker, the GCS, the raylet, the actor's worker...
    assert all(ipaddress.ip_address(a).is_loopback for a in addrs), addrs


def test_daemon_serves_through_ray_shards(ray_local, clip):
    """rtik serve --ray in process: frames over ZeroMQ, poses back equal to the in-process solver's, the shard
    reported per stream by `ctl streams`, a bad frame counted as the stream's input error."""
    import time

    from loopback import free_port

    from rtik.serve import config
    from rtik.serve.daemon import Daemon
    from rtik.solve.solver import solve_sequence
    from rtik.wire.client import Control, Listener, Sender

    ep = {k: f"tcp://127.0.0.1:{free_port()}" for k in ("in", "out", "ctl")}
    cfg = config.from_dict({
        "ingest": {"zmq": {"bind": ep["in"]}, "osc": {"enabled": False}},
        "output": {"zmq": {"bind": ep["out"]}, "osc": {"enabled": False}, "vmc": {"enabled": False}},
        "control": {"bind": ep["ctl"]}, "streams": {"fps": FPS}, "web": {"enabled": False},
        "ray": {"enabled": True, "deadline": 1.0, "poll_nodes": 0.0},
    })  # fmt: skip
    d = Daemon(cfg)
    d.start()
    try:
        X = clip[:30]
        want = solve_sequence(d.solver.pack, X, FPS, calibrate=False)
        with Listener(ep["out"], ["live"]) as rx, Sender("live", ep["in"]) as tx:
            time.sleep(0.2)
            for i in range(len(X)):
                tx.send(X[i], timestamp=i / FPS, seq=i + 1)
                pose = rx.recv(timeout=20)
                assert pose is not None and pose.seq == i + 1
                np.testing.assert_allclose(pose.local_quats, want["local_quats"][i], atol=1e-4)
            tx.send(np.zeros((21, 3)), timestamp=len(X) / FPS, seq=len(X) + 1)  # degenerate: refused on the shard
            deadline = time.monotonic() + 10
            while d.streams["live"].input_errors == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert d.streams["live"].input_errors == 1
        with Control(ep["ctl"]) as ctl:
            (row,) = ctl.request("streams")
        assert row["stream"] == "live" and row["shard"] == 0 and row["gap_frames"] == 0
    finally:
        d.stop()
    assert d.solver.shards == []  # the daemon stopped the shards it started
