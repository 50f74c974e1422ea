"""The live view under load: the daemon's latency and memory with and without browsers watching.

Starts `python -m rtik serve` (loopback, ephemeral ports, every output on, [web] at ``--web-rate`` Hz), sends
``--streams`` streams at ``--rate`` Hz from a sender process, and receives every pose on the ZeroMQ feed in this
process, in two phases of ``--seconds`` each after a warm-up:

1. **without** viewers;
2. **with** ``--tabs`` viewers connected the whole phase, in a separate process: ``--clients ws`` (default) real
   WebSocket clients on raw sockets that read and decode every message as a page does (the daemon's side of a tab
   without the rendering, which on a 2-core machine would take the CPU from everything else), or ``--clients
   chromium``: that many tabs of headless Chromium (Playwright, Debian's /usr/bin/chromium) drawing the view.

Per phase: latency inside the daemon (frame received to pose published, from each pose's own timestamps) p50/p99
/max, end to end (sender to this process), poses missing, the daemon's dropped counters, its resident set size
(VmRSS) at the end, and for the viewers the messages and megabytes each received per second and how many were
dropped by the daemon.

    python benchmarks/web_load.py                            # 16 x 120 Hz, 20 WebSocket viewers, 2 x 120 s
    python benchmarks/web_load.py --seconds 60 --clients chromium --tabs 4 --json web.json

The model: ``--model PACK``, else the shipped default model, else the test pack (tests/steppack.py).
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing as mp
import os
import selectors
import socket
import struct
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daemonrig import counters, free_port, load_note, model_path, rss_mb, sample_clip, start_daemon  # noqa: E402
from soak import sender  # noqa: E402

from rtik.wire.client import Listener  # noqa: E402

CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
]  # fmt: skip


# ------------------------------------------------------------------------------------------------- viewers
def ws_viewers(port: int, n: int, seconds: float, go, result) -> None:
    """``n`` WebSocket clients in one process (selectors): each reads every frame and decodes each binary message's
    JSON header, as the page does, for ``seconds``."""
    sel = selectors.DefaultSelector()
    stats = []
    for k in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())  # fmt: skip
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        head, buf = buf.split(b"\r\n\r\n", 1)
        assert b" 101 " in head.split(b"\r\n")[0], head
        s.setblocking(False)
        st = {"k": k, "buf": buf, "poses": 0, "text": 0, "bytes": 0, "closed": False}
        stats.append(st)
        sel.register(s, selectors.EVENT_READ, st)
    go.wait()
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for key, _ in sel.select(timeout=0.2):
            st = key.data
            try:
                chunk = key.fileobj.recv(1 << 20)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                st["closed"] = True
                sel.unregister(key.fileobj)
                continue
            st["bytes"] += len(chunk)
            st["buf"] += chunk
            while True:  # whole frames: (opcode, payload)
                b = st["buf"]
                if len(b) < 2:
                    break
                n, off = b[1] & 0x7F, 2
                if n == 126:
                    if len(b) < 4:
                        break
                    (n,), off = struct.unpack(">H", b[2:4]), 4
                elif n == 127:
                    if len(b) < 10:
                        break
                    (n,), off = struct.unpack(">Q", b[2:10]), 10
                if len(b) < off + n:
                    break
                op, payload, st["buf"] = b[0] & 0x0F, b[off : off + n], b[off + n :]
                if op == 2:
                    (h,) = struct.unpack("<I", payload[:4])
                    json.loads(payload[4 : 4 + h])
                    st["poses"] += 1
                elif op == 1:
                    json.loads(payload)
                    st["text"] += 1
    took = time.monotonic() - t0
    result.put([{"poses_per_s": s["poses"] / took, "mb_per_s": s["bytes"] / took / 1e6, "closed": s["closed"]}
                for s in stats])  # fmt: skip


def chromium_viewers(url: str, n: int, seconds: float, go, result) -> None:
    """``n`` tabs of headless Chromium on the live view for ``seconds``; frames each drew per second."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
        pages = [b.new_page(viewport={"width": 1280, "height": 720}) for _ in range(n)]
        for page in pages:
            page.goto(url)
        go.wait()
        f0 = [page.evaluate("rtikView.frames") for page in pages]
        t0 = time.monotonic()
        time.sleep(seconds)
        took = time.monotonic() - t0
        f1 = [page.evaluate("rtikView.frames") for page in pages]
        result.put([{"poses_per_s": (b1 - a) / took, "mb_per_s": float("nan"), "closed": False}
                    for a, b1 in zip(f0, f1, strict=True)])  # fmt: skip
        b.close()


# --------------------------------------------------------------------------------------------------- phase
def cpu_seconds(pid: int, port: int) -> tuple[float, float]:
    """``(daemon process, its rtik-web thread)`` CPU seconds so far (Linux ``/proc``; the thread's from
    ``/api/web``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/web", timeout=10) as r:
        web = json.loads(r.read())["cpu_s"]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), web


def phase(ep, pid, clip, streams, rate, seconds, prefix, viewers=None, port=None) -> dict:
    """Send for ``seconds`` and receive every pose; ``viewers``: ``(target, args)`` of the viewers' process."""
    names = [f"{prefix}{k}" for k in range(streams)]
    go, result, vres = mp.Event(), mp.Queue(), mp.Queue()
    rx = Listener(ep["out"], names)
    proc = mp.Process(target=sender, args=(ep["in"], str(clip), streams, rate, seconds, prefix, go, result))
    proc.start()
    vproc = None
    if viewers is not None:
        vproc = mp.Process(target=viewers[0], args=(*viewers[1], seconds, go, vres))
        vproc.start()
        time.sleep(5.0 if viewers[0] is chromium_viewers else 1.0)
    time.sleep(1.0)
    before = counters(ep, "dropped", prefix)
    cpu0 = cpu_seconds(pid, port)
    go.set()
    t0 = time.monotonic()
    inner, e2e, rss = [], [], []
    seen = {n: np.zeros(int(seconds * rate) + 2, dtype=bool) for n in names}
    next_rss = 0.0
    while True:
        p = rx.recv(timeout=0.5)
        el = time.monotonic() - t0
        if p is not None:
            inner.append((p.pub - p.recv) * 1e3)
            e2e.append((time.time() - p.sent) * 1e3)
            s = seen.get(p.stream)
            if s is not None and 0 <= p.seq < len(s):
                s[p.seq] = True
        if el >= next_rss:
            rss.append(rss_mb(pid))
            next_rss += 5.0
        if (p is None and not proc.is_alive()) or el > seconds + 10.0:
            break
    took = time.monotonic() - t0
    cpu1 = cpu_seconds(pid, port)
    proc.join()
    sent = result.get(timeout=5)
    views = vres.get(timeout=60) if vproc is not None else []
    if vproc is not None:
        vproc.join(30)
    rx.close()
    n = sent["sent"]
    got = sum(int(seen[name][1 : n + 1].sum()) for name in names)
    a, b = np.asarray(inner), np.asarray(e2e)
    dropped = {k: v - before.get(k, 0) for k, v in counters(ep, "dropped", prefix).items() if v - before.get(k, 0)}
    return {
        "poses": int(a.size), "missing": n * streams - got, "daemon_dropped": dropped,
        "daemon_p50_ms": float(np.percentile(a, 50)), "daemon_p99_ms": float(np.percentile(a, 99)),
        "daemon_max_ms": float(a.max()), "e2e_p50_ms": float(np.percentile(b, 50)),
        "e2e_p99_ms": float(np.percentile(b, 99)), "rss_end_mb": rss[-1], "rss_max_mb": max(rss),
        "daemon_cpu_pct": 100 * (cpu1[0] - cpu0[0]) / took, "web_thread_cpu_pct": 100 * (cpu1[1] - cpu0[1]) / took,
        "viewers": len(views),
        "viewer_updates_per_s": float(np.mean([v["poses_per_s"] for v in views])) if views else None,
        "viewer_mb_per_s": float(np.mean([v["mb_per_s"] for v in views])) if views else None,
        "viewers_closed": sum(v["closed"] for v in views),
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--rate", type=float, default=120.0, help="frames per second per stream")
    ap.add_argument("--tabs", type=int, default=20, help="viewers connected in the second phase")
    ap.add_argument("--clients", choices=("ws", "chromium"), default="ws", help="what a viewer is (see above)")
    ap.add_argument("--web-rate", type=float, default=30.0, help="[web] rate: updates per second to each viewer")
    ap.add_argument("--seconds", type=float, default=120.0, help="length of each phase")
    ap.add_argument("--warmup", type=float, default=15.0, help="seconds of traffic before the first phase")
    ap.add_argument("--model", help="model pack (default: the shipped model)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    model, clip = model_path(args.model), sample_clip()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        extra = f"[web]\nport = {port}\nrate = {args.web_rate}\nmax_clients = {max(32, args.tabs + 4)}\n"
        proc, ep = start_daemon(model, Path(tmp), extra=extra)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/web", timeout=10) as r:
                json.loads(r.read())
            print(f"daemon pid {proc.pid}, live view on :{port}; {load_note()}", flush=True)
            phase(ep, proc.pid, clip, args.streams, args.rate, args.warmup, "warm", port=port)
            time.sleep(2.0)
            out = {"streams": args.streams, "rate_hz": args.rate, "web_rate_hz": args.web_rate,
                   "clients": args.clients, "tabs": args.tabs, "seconds": args.seconds}  # fmt: skip
            out["without"] = phase(ep, proc.pid, clip, args.streams, args.rate, args.seconds, "bare", port=port)
            print("without viewers:", json.dumps(out["without"]), flush=True)
            time.sleep(2.0)
            target = (ws_viewers, (port, args.tabs)) if args.clients == "ws" else (
                chromium_viewers, (f"http://127.0.0.1:{port}/", args.tabs))  # fmt: skip
            out["with"] = phase(ep, proc.pid, clip, args.streams, args.rate, args.seconds, "watched", target, port)
            print(f"with {args.tabs} viewers:", json.dumps(out["with"]), flush=True)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/web", timeout=10) as r:
                out["web"] = json.loads(r.read())
            out["load"] = load_note()
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"\n| {args.streams} x {args.rate:g} Hz | daemon p50 / p99 / max ms | end to end p50 / p99 ms | missing "
          f"| daemon RSS MB | daemon CPU (web thread) | per viewer |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for key, title in (("without", "no viewers"), ("with", f"{args.tabs} {args.clients} viewers")):
        r = out[key]
        per = (f"{r['viewer_updates_per_s']:.1f} updates/s, {r['viewer_mb_per_s']:.2f} MB/s, "
               f"{r['viewers_closed']} dropped") if r["viewers"] else ""  # fmt: skip
        print(
            f"| {title} | {r['daemon_p50_ms']:.2f} / {r['daemon_p99_ms']:.2f} / {r['daemon_max_ms']:.1f} | "
            f"{r['e2e_p50_ms']:.2f} / {r['e2e_p99_ms']:.2f} | {r['missing']} | {r['rss_end_mb']:.1f} | "
            f"{r['daemon_cpu_pct']:.0f} % ({r['web_thread_cpu_pct']:.1f} %) | {per} |"
        )
    print(f"web: {out['web']}; {out['load']}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
