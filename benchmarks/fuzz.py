"""Hostile traffic at a running daemon while a good stream flows: the good stream must lose nothing.

Starts `python -m rtik serve` in a subprocess (loopback, ephemeral ports), sends one good stream at ``--rate`` Hz
from a sender process, receives its poses in a listener process, and meanwhile fires ``--count`` malformed
messages from this process: random bytes, mutated valid frames, valid msgpack of the wrong shape, frames with
NaN, hostile sizes and counts, over ZeroMQ (ingest PUSH, some at the control ROUTER) and OSC (UDP). Then it
compares the sequence numbers sent with those received on the PUB feed, and reads the daemon's counters, RSS and
exit status.

    python benchmarks/fuzz.py                       # 100,000 malformed messages (half ZeroMQ, half OSC)
    python benchmarks/fuzz.py --count 20000 --json fuzz.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak import counters, load_note, model_path, rss_mb, sample_clip, start_daemon  # noqa: E402

from rtik import protocol  # noqa: E402
from rtik.client import Listener, Sender  # noqa: E402
from rtik.commands.send import load_positions  # noqa: E402
from rtik.transports import osc  # noqa: E402


def good_sender(endpoint, clip, rate, seconds, go, out) -> None:
    pos, _, _ = load_positions(clip)
    with Sender("good", endpoint) as tx:
        go.wait()
        n, t0 = int(rate * seconds), time.perf_counter()
        for i in range(n):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            tx.send(pos[i % len(pos)], timestamp=i / rate, seq=i + 1)
        out.put({"sent": n, "refused": tx.dropped})


def good_listener(endpoint, ready, seconds, out) -> None:
    seqs = []
    with Listener(endpoint, ["good"]) as rx:
        ready.set()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            p = rx.recv(timeout=0.5)
            if p is not None:
                seqs.append(p.seq)
    out.put(seqs)


def malformed(rng: np.random.Generator, valid: list[bytes], k: int) -> bytes:
    """One hostile payload; ``k`` picks the family."""
    fam = k % 6
    if fam == 0:
        return rng.bytes(int(rng.integers(0, 400)))
    if fam == 1:  # a valid payload with a few bytes flipped / cut
        b = bytearray(valid[k % len(valid)])
        for _ in range(int(rng.integers(1, 6))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        return bytes(b[: int(rng.integers(1, len(b) + 1))])
    if fam == 2:  # well-formed msgpack, wrong schema
        junk = [{"v": 1, "stream": "x", "seq": -1, "t": 0.0, "n": 21, "pos": b"\0" * 252},
                {"v": 2}, {"v": 1, "n": 1 << 40}, [1, 2, 3], {"v": 1, "stream": "../../etc", "seq": 1, "t": 1.0,
                 "n": 1, "pos": b"\0" * 12}, {"v": 1, "stream": "x", "seq": 1, "t": float("nan"), "n": 1,
                 "pos": b"\0" * 12}, {"v": 1, "stream": "y" * 100, "seq": 1, "t": 0, "n": 1, "pos": b""}]  # fmt: skip
        return msgpack.packb(junk[k % len(junk)])
    if fam == 3:  # NaN positions for a real stream name
        f = protocol.Frame("hostile", k, 0.0, np.full((21, 3), np.nan, np.float32))
        return protocol.encode_frame(f)
    if fam == 4:  # hostile lengths: a map or array header claiming billions of items
        return bytes([0xDF, 0xFF, 0xFF, 0xFF, 0xFF]) + rng.bytes(16)
    return b"\x91" * int(rng.integers(1, 5000)) + b"\xc0"  # deep nesting


def fire(ep: dict, count: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    pos = np.random.default_rng(1).normal(size=(21, 3))
    frame = protocol.make_frame("victim", 1, 0.0, pos)
    valid_z = [protocol.encode_frame(frame), protocol.encode_command("record_start", stream="good", name="../x")]
    valid_o = [osc.encode_frame(frame)]
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.connect(ep["in"])
    ctl = ctx.socket(zmq.DEALER)
    ctl.setsockopt(zmq.RCVHWM, 10)
    ctl.setsockopt(zmq.LINGER, 0)
    ctl.connect(ep["ctl"])
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    n_zmq = n_ctl = n_osc = 0
    t0 = time.perf_counter()
    for k in range(count):
        if k % 2 == 0:
            payload = malformed(rng, valid_z, k // 2)
            if k % 20 == 0:
                ctl.send_multipart([b"", payload])
                n_ctl += 1
            else:
                push.send(payload)  # blocking: the daemon's pace, never a silent local drop
                n_zmq += 1
        else:
            fam = (k // 2) % 3
            if fam == 0:
                dgram = rng.bytes(int(rng.integers(0, 600)))
            elif fam == 1:
                b = bytearray(valid_o[0])
                for _ in range(int(rng.integers(1, 6))):
                    b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
                dgram = bytes(b)
            else:
                dgram = osc.encode_message(osc.FRAME_ADDRESS, "sidsb", "hostile", k, 0.0, "m",
                                           rng.bytes(12 * int(rng.integers(1, 40))))  # fmt: skip
            udp.sendto(dgram, ep["osc"])
            n_osc += 1
            if k % 64 == 1:
                time.sleep(0.0005)  # let the daemon's UDP buffer drain now and then
    elapsed = time.perf_counter() - t0
    push.close(2000)
    ctl.close(0)
    udp.close()
    ctx.term()
    return {"zmq_ingest": n_zmq, "zmq_control": n_ctl, "osc": n_osc, "seconds": elapsed}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100_000, help="malformed messages (default: %(default)s)")
    ap.add_argument("--rate", type=float, default=120.0, help="good stream rate, Hz (default: %(default)s)")
    ap.add_argument("--model", help="model pack folder (default: shipped default model, else the test pack)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = ap.parse_args()
    model, clip = model_path(args.model), sample_clip()
    print(f"fuzz: {args.count} malformed messages, good stream at {args.rate:g} Hz, model {model}, "
          f"{os.cpu_count()} CPUs, {load_note()}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        proc, ep = start_daemon(model, Path(tmp), level="error")
        try:
            rss0 = rss_mb(proc.pid)
            go, ready, q_tx, q_rx = mp.Event(), mp.Event(), mp.Queue(), mp.Queue()
            budget = 60.0 + args.count / 2000.0  # generous: the good stream runs until the fuzzing is over
            rx = mp.Process(target=good_listener, args=(ep["out"], ready, budget + 5.0, q_rx))
            rx.start()
            ready.wait(30)
            time.sleep(0.5)
            # the good stream runs for a fixed time long enough to cover the fuzzing (estimated from a probe)
            probe = fire(ep, 2000, seed=99)
            seconds = probe["seconds"] / 2000 * args.count + 3.0
            tx = mp.Process(target=good_sender, args=(ep["in"], str(clip), args.rate, seconds, go, q_tx))
            tx.start()
            go.set()
            time.sleep(1.0)
            fired_box = fire(ep, args.count)
            sent = q_tx.get(timeout=seconds + 60)
            tx.join()
            rx.join()
            seqs = q_rx.get(timeout=30)
            alive = proc.poll() is None
            rss1 = rss_mb(proc.pid)
            dropped, errors = counters(ep, "dropped"), counters(ep, "errors")
            good_dropped = counters(ep, "dropped", "good")
        finally:
            proc.terminate()
            code = proc.wait(30)
    got = set(seqs)
    missing = sorted(set(range(1, sent["sent"] + 1)) - got)
    r = {
        "malformed": fired_box, "probe": probe, "good_sent": sent["sent"], "good_refused": sent["refused"],
        "good_received": len(got), "good_missing": len(missing), "good_missing_first": missing[:20],
        "good_in_order": seqs == sorted(seqs), "good_dropped_in_daemon": good_dropped,
        "daemon_alive": alive, "daemon_exit": code, "daemon_dropped": dropped, "daemon_errors": errors,
        "rss_start_mb": rss0, "rss_end_mb": rss1, "load": load_note(),
    }  # fmt: skip
    f = fired_box
    total = f["zmq_ingest"] + f["zmq_control"] + f["osc"]
    print(f"fired {total} malformed messages in {f['seconds']:.1f} s ({total / f['seconds']:.0f}/s): "
          f"{f['zmq_ingest']} ZeroMQ ingest, {f['zmq_control']} ZeroMQ control, {f['osc']} OSC")  # fmt: skip
    print(
        f"good stream: sent {r['good_sent']}, received {r['good_received']}, missing {r['good_missing']}, "
        f"in order {r['good_in_order']}, dropped in the daemon {good_dropped or 0}, refused {r['good_refused']}"
    )
    print(f"daemon: alive {alive}, exit {code}, errors {errors}, dropped {dropped}")
    print(f"daemon RSS {rss0:.1f} MB -> {rss1:.1f} MB ({rss1 - rss0:+.1f} MB); {r['load']}")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0 if alive and code == 0 and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
