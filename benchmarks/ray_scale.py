"""Ray scale-out, measured: the per-tick cost of streams sharded onto Ray actors against one in-process solver
(16 and 64 streams), corpus throughput of ``rtik solve --ray`` with 1 and 2 workers, and from the measured
per-shard cost, how many performers at 120 Hz N nodes would serve (arithmetic, printed as such).

    python benchmarks/ray_scale.py [--ticks 300] [--streams 16,64] [--shards 1,2] [--workers 1,2] [--json OUT]

Needs ``pip install 'rtik[ray]'`` and the mocap sample (../shared/mocap/sample and extra/sample). Starts a
private local Ray cluster on 127.0.0.1. Numbers go to docs/scale.md with the command that made them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MOCAP = Path(os.environ.get("RTIK_MOCAP", REPO.parent / "shared" / "mocap"))
RATE = 120.0  # Hz, the live rate the capacity estimate is for
BUDGET = 0.7  # share of a tick period a shard may spend solving (the rest: transport, jitter)


def clip_positions() -> np.ndarray:
    from rtik.formats import bvh

    path = sorted((MOCAP / "sample").glob("*.bvh"))[0]
    return bvh.read(path).positions()[:, 1:] / 100.0  # (F, 21, 3) m: the model's input joints


def pct(a, q) -> float:
    return float(np.percentile(np.asarray(a), q))


def tick_costs(solver, names, X, ticks: int) -> dict:
    """Wall time of push-all + tick (ms) and, where results carry it, the solve time inside the solver."""
    wall, inner = [], []
    for i in range(ticks + 20):
        t0 = time.perf_counter()
        for k, n in enumerate(names):
            solver.push(n, X[(i + 7 * k) % len(X)], i / 30.0)
        res = solver.tick()
        dt = time.perf_counter() - t0
        if len(res) != len(names):
            raise RuntimeError(f"tick {i}: {len(res)} results for {len(names)} streams")
        if i >= 20:  # warm-up ticks are not counted
            wall.append(dt * 1e3)
            inner.append(max(r.solve_us for r in res.values()) / 1e3)
    return {"p50_ms": pct(wall, 50), "p99_ms": pct(wall, 99), "solve_p50_ms": pct(inner, 50)}


def per_tick(streams: list[int], shard_counts: list[int], ticks: int) -> dict:
    from rtik.serve.ray_shards import RaySolver
    from rtik.solve.solver import Solver

    X = clip_positions()
    out = {}
    for n in streams:
        names = [f"s{k}" for k in range(n)]
        local = Solver.from_path(None)
        for s in names:
            local.open_stream(s, fps=30.0)
        out[f"local/{n}"] = tick_costs(local, names, X, ticks)
        local.close()
        print(f"  {n:3d} streams, one process: {out[f'local/{n}']}", flush=True)
        for k in shard_counts:
            rs = RaySolver(None, shards_per_node=k, deadline=1.0, poll_nodes=0, cpus_per_shard=0.5)
            for s in names:
                rs.open_stream(s, fps=30.0)
            r = out[f"ray{k}/{n}"] = tick_costs(rs, names, X, ticks)
            r["overhead_p50_ms"] = r["p50_ms"] - r["solve_p50_ms"]
            rs.close()
            print(f"  {n:3d} streams, {k} shard(s):  {r}", flush=True)
    return out


def corpus(workers: list[int]) -> dict:
    """``rtik solve`` on the sample clips (Bandai and the other sources), serially and with --ray."""
    from rtik.cli import main
    from rtik.formats import bvh

    files = sorted((MOCAP / "sample").glob("*.bvh")) + sorted((MOCAP / "extra" / "sample").glob("*.bvh"))
    tmp = Path(tempfile.mkdtemp(prefix="rtik-ray-bench-"))
    try:
        src = tmp / "in"
        src.mkdir()
        for f in files:
            (src / f.name).symlink_to(f)
        frames = sum(bvh.read(f).num_frames for f in files)
        out = {"clips": len(files), "frames": frames}
        runs = [("serial", [])] + [(f"ray{w}", ["--ray", "--workers", str(w)]) for w in workers]
        for name, extra in runs:
            dst = tmp / name
            t0 = time.perf_counter()
            rc = main(["solve", str(src), "-o", str(dst), *extra])
            dt = time.perf_counter() - t0
            out[name] = {"seconds": dt, "frames_per_s": frames / dt, "clips_per_s": len(files) / dt, "rc": rc}
            print(f"  corpus {name}: {out[name]}", flush=True)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def capacity(results: dict, cores_per_node: list[int], nodes: list[int]) -> list[dict]:
    """Performers at RATE Hz per node count, from the measured cost of a shard's tick at 64 streams (the
    whole-tick wall time through Ray, one shard): a shard serves the streams whose tick fits BUDGET of the
    period; a node runs one shard per core. On paper: linear in nodes, no network or head-node limit."""
    key = max((k for k in results if k.startswith("ray1/")), key=lambda k: int(k.split("/")[1]))
    n = int(key.split("/")[1])
    per_stream_ms = results[key]["p50_ms"] / n
    per_shard = int((1e3 / RATE) * BUDGET / per_stream_ms)
    rows = []
    for c in cores_per_node:
        for m in nodes:
            rows.append({"cores_per_node": c, "nodes": m, "performers": per_shard * c * m})
    return [{"per_stream_ms": per_stream_ms, "per_shard": per_shard, "from": key}, *rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ticks", type=int, default=300, help="ticks measured per configuration (default 300)")
    ap.add_argument("--streams", default="16,64", help="stream counts (default 16,64)")
    ap.add_argument("--shards", default="1,2", help="shard counts on this node (default 1,2)")
    ap.add_argument("--workers", default="1,2", help="rtik solve --ray worker counts (default 1,2)")
    ap.add_argument("--skip-corpus", action="store_true", help="measure the per-tick cost only")
    ap.add_argument("--json", default=None, help="write every number as JSON")
    a = ap.parse_args()
    from rtik.serve import ray_cluster

    if not ray_cluster.available():
        sys.exit(ray_cluster.INSTALL_HINT)
    if not (MOCAP / "sample").is_dir():
        sys.exit(f"no mocap sample at {MOCAP / 'sample'}")
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    t0 = time.perf_counter()
    ray_cluster.connect(None, num_cpus=max(4, os.cpu_count() or 1))
    print(f"local Ray cluster up in {time.perf_counter() - t0:.1f} s on {ray_cluster.node_address()}")
    print("per tick (push every stream + tick), back to back:")
    res = {"per_tick": per_tick(ints(a.streams), ints(a.shards), a.ticks)}
    if not a.skip_corpus:
        print("corpus (rtik solve, sample clips):")
        res["corpus"] = corpus(ints(a.workers))
    cap = capacity(res["per_tick"], [8, 32], [1, 4, 16])
    res["capacity_on_paper"] = cap
    print(f"on paper, at {RATE:.0f} Hz with {BUDGET:.0%} of a period per shard: {cap[0]}")
    for row in cap[1:]:
        print(f"  {row['nodes']:3d} node(s) x {row['cores_per_node']:2d} cores: {row['performers']} performers")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    ray_cluster.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
