"""Soak test of the daemon: many streams for a long time; drops, latency per minute and memory growth.

Starts `python -m rtik serve` in a subprocess (loopback, ephemeral ports, every output on), sends ``--streams``
streams at ``--rate`` Hz from a sender *process* for ``--minutes``, and receives every pose in this process:

- drops: sequence numbers that never came back (per stream, from the PUB feed), sends the sender's socket
  refused, and the daemon's own ``dropped`` counters by reason (``superseded`` = the solver did not keep up);
- latency: sender ``time.time()`` at transmit to arrival here, p50/p99/max per minute, and the p99 inside the
  daemon (frame received to pose published);
- memory: the daemon's resident set size (``/proc/PID/status`` VmRSS) every 10 s; growth = last sample minus the
  sample taken after the first minute (warm-up: allocator pools, solver buffers, histograms), and from the start.

    python benchmarks/soak.py                        # 10 minutes, 16 streams x 120 Hz
    python benchmarks/soak.py --minutes 1 --json soak.json
    nice -n 10 nohup python benchmarks/soak.py > soak.log 2>&1 &

Targets (docs/reliability.md): zero drops, RSS growth < 10 MB.
The model: ``--model PACK``, else the shipped default model, else the test pack of ``tests/steppack.py``
(random weights, built into ``cache/`` from a sample clip).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daemonrig import counters, load_note, model_path, rss_mb, sample_clip, start_daemon  # noqa: E402,F401

from rtik.commands.send import load_positions  # noqa: E402
from rtik.wire.client import Listener, Sender  # noqa: E402


def sender(endpoint: str, clip: str, streams: int, rate: float, seconds: float, prefix: str, go, result) -> None:
    """Sender process: each period one frame per stream, timestamps on the period grid, sequence 1, 2, ..."""
    pos, _, _ = load_positions(clip)
    txs = [Sender(f"{prefix}{k}", endpoint) for k in range(streams)]
    go.wait()
    period, n = 1.0 / rate, int(seconds * rate)
    t0, wall0 = time.perf_counter(), time.time()
    late = 0
    for i in range(n):
        delay = t0 + i * period - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif delay < -period:
            late += 1
        for k, tx in enumerate(txs):
            tx.send(pos[(i + 7 * k) % len(pos)], timestamp=wall0 + i * period, seq=i + 1)
    result.put({"sent": n, "refused": sum(tx.dropped for tx in txs), "late_periods": late})
    for tx in txs:
        tx.close()
    zmq.Context.instance().term()  # waits for queued frames to leave: a child process ends with os._exit


def soak(ep: dict, pid: int, clip: Path, streams: int, rate: float, minutes: float, prefix: str = "soak") -> dict:
    seconds = minutes * 60.0
    names = [f"{prefix}{k}" for k in range(streams)]
    go, result = mp.Event(), mp.Queue()
    rx = Listener(ep["out"], names)
    proc = mp.Process(target=sender, args=(ep["in"], str(clip), streams, rate, seconds, prefix, go, result))
    proc.start()
    time.sleep(1.0)  # subscriptions and connections settle
    rss = [(0.0, rss_mb(pid))]
    go.set()
    t0 = time.monotonic()
    per_min: dict[int, list[float]] = {}
    inner: dict[int, list[float]] = {}  # inside the daemon: receive to publish
    seen = {n: np.zeros(int(seconds * rate) + 2, dtype=bool) for n in names}
    next_rss, next_print = 10.0, 60.0
    while True:
        p = rx.recv(timeout=0.5)
        now, el = time.time(), time.monotonic() - t0
        if p is not None:
            per_min.setdefault(int(el // 60), []).append((now - p.sent) * 1e3)
            inner.setdefault(int(el // 60), []).append((p.pub - p.recv) * 1e3)
            s = seen.get(p.stream)
            if s is not None and 0 <= p.seq < len(s):
                s[p.seq] = True
        if el >= next_rss:
            rss.append((el, rss_mb(pid)))
            next_rss += 10.0
        if el >= next_print:
            m = per_min.get(int(el // 60) - 1, [])
            q = np.percentile(m, [50, 99]) if m else (float("nan"),) * 2
            print(f"  minute {int(el // 60)}: {len(m)} poses, p50 {q[0]:.2f} ms p99 {q[1]:.2f} ms,"
                  f" daemon RSS {rss[-1][1]:.1f} MB", flush=True)  # fmt: skip
            next_print += 60.0
        if p is None and not proc.is_alive():
            break
        if el > seconds + 10.0:
            break
    proc.join()
    sent = result.get(timeout=5)
    rss.append((time.monotonic() - t0, rss_mb(pid)))  # still subscribed: queued poses count
    rx.close()
    time.sleep(1.0)
    rss.append((time.monotonic() - t0, rss_mb(pid)))  # the subscriber gone: its queue freed
    n = sent["sent"]
    received = {name: int(seen[name][1 : n + 1].sum()) for name in names}
    warm = next((r for t, r in rss if t >= 60.0), rss[0][1])
    minutes_out = []
    for m in sorted(per_min):
        a, b = np.asarray(per_min[m]), np.asarray(inner[m])
        minutes_out.append({"minute": m, "poses": int(a.size), "p50_ms": float(np.percentile(a, 50)),
                            "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max()),
                            "daemon_p99_ms": float(np.percentile(b, 99))})  # fmt: skip
    return {
        "streams": streams, "rate_hz": rate, "minutes": minutes, "frames_sent": n * streams,
        "sender_refused": sent["refused"], "sender_late_periods": sent["late_periods"],
        "poses_received": sum(received.values()), "missing": n * streams - sum(received.values()),
        "daemon_dropped": counters(ep, "dropped", prefix), "daemon_errors": counters(ep, "errors"),
        "per_minute": minutes_out,
        "rss_start_mb": rss[0][1], "rss_after_warmup_mb": warm, "rss_end_mb": rss[-1][1],
        "rss_growth_mb": rss[-1][1] - warm, "rss_growth_from_start_mb": rss[-1][1] - rss[0][1],
        "rss_peak_mb": max(r for _, r in rss), "rss_subscribed_end_mb": rss[-2][1],
        "rss_samples": [(round(t, 1), round(r, 2)) for t, r in rss],
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the soak (default: %(default)s)")
    ap.add_argument("--streams", type=int, default=16, help="streams (default: %(default)s)")
    ap.add_argument("--rate", type=float, default=120.0, help="frames per second per stream (default: %(default)s)")
    ap.add_argument("--model", help="model pack folder (default: shipped default model, else the test pack)")
    ap.add_argument("--hwm", type=int, default=1000, help="daemon ingest and feed queues (default: %(default)s)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = ap.parse_args()
    clip = sample_clip()
    model = model_path(args.model)
    print(f"soak: {args.streams} streams x {args.rate:g} Hz for {args.minutes:g} min, model {model}, "
          f"{os.cpu_count()} CPUs, {load_note()} at start", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        proc, ep = start_daemon(model, Path(tmp), hwm=args.hwm)
        try:
            r = soak(ep, proc.pid, clip, args.streams, args.rate, args.minutes)
        finally:
            proc.terminate()
            r_exit = proc.wait(30)
    r.update(model=model, cpu_count=os.cpu_count(), load_at_end=load_note(), daemon_exit=r_exit)
    for m in r["per_minute"]:
        print(f"minute {m['minute']:2d}: {m['poses']:7d} poses  p50 {m['p50_ms']:7.2f} ms  p99 {m['p99_ms']:7.2f} ms"
              f"  max {m['max_ms']:8.2f} ms  (in the daemon: p99 {m['daemon_p99_ms']:6.2f} ms)")  # fmt: skip
    print(
        f"sent {r['frames_sent']} frames, received {r['poses_received']} poses, missing {r['missing']}, "
        f"refused by the sender's socket {r['sender_refused']}, sender periods late {r['sender_late_periods']}"
    )
    print(f"daemon dropped {r['daemon_dropped'] or 0}, errors {r['daemon_errors'] or 0}")
    print(
        f"daemon RSS: start {r['rss_start_mb']:.1f} MB, after 1 min {r['rss_after_warmup_mb']:.1f} MB, "
        f"peak {r['rss_peak_mb']:.1f} MB, end {r['rss_subscribed_end_mb']:.1f} MB subscribed / "
        f"{r['rss_end_mb']:.1f} MB after the listener left: growth {r['rss_growth_mb']:+.2f} MB after warm-up "
        f"({r['rss_growth_from_start_mb']:+.2f} MB from start); {r['load_at_end']} at end; exit {r_exit}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
