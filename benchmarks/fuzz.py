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
from daemonrig import counters, load_note, model_path, rss_mb, sample_clip, start_daemon  # noqa: E402

from rtik.commands.send import load_positions  # noqa: E402
from rtik.wire import (
    osc,  # noqa: E402
    protocol,  # noqa: E402
)
from rtik.wire.client import Control, Listener, Sender  # noqa: E402


def good_sender(endpoint, clip, stream, rate, seconds, go, out) -> None:
    pos, _, _ = load_positions(clip)
    with Sender(stream, endpoint) as tx:
        go.wait()
        n, t0, late = int(rate * seconds), time.perf_counter(), 0
        for i in range(n):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif delay < -4.0 / rate:  # this frame leaves in a burst with the ones before it
                late += 1
            tx.send(pos[i % len(pos)], timestamp=i / rate, seq=i + 1)
        out.put({"sent": n, "refused": tx.dropped, "late": late})
    zmq.Context.instance().term()  # waits for queued frames to leave: a child process ends with os._exit


def good_listener(endpoint, stream, ready, done, out) -> None:
    seqs = []
    with Listener(endpoint, [stream]) as rx:
        ready.set()
        quiet_since = None
        while True:
            p = rx.recv(timeout=0.5)
            if p is not None:
                seqs.append(p.seq)
                quiet_since = None
            elif done.is_set():
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 1.0:
                    break
    out.put(seqs)


def good_stream(ep: dict, clip: Path, stream: str, rate: float, seconds: float, during=None) -> dict:
    """Run one good stream for ``seconds`` (``during()`` runs meanwhile in this process); what came back."""
    go, ready, done, q_tx, q_rx = mp.Event(), mp.Event(), mp.Event(), mp.Queue(), mp.Queue()
    rx = mp.Process(target=good_listener, args=(ep["out"], stream, ready, done, q_rx))
    rx.start()
    ready.wait(30)
    tx = mp.Process(target=good_sender, args=(ep["in"], str(clip), stream, rate, seconds, go, q_tx))
    tx.start()
    time.sleep(0.5)  # connections and the subscription settle
    go.set()
    extra = during() if during is not None else None
    sent = q_tx.get(timeout=seconds + 120)
    tx.join()
    done.set()
    seqs = q_rx.get(timeout=60)
    rx.join()
    missing = sorted(set(range(1, sent["sent"] + 1)) - set(seqs))
    return {"stream": stream, "sent": sent["sent"], "refused": sent["refused"], "late": sent["late"],
            "received": len(set(seqs)),
            "missing": len(missing), "missing_first": missing[:20], "in_order": seqs == sorted(seqs),
            "dropped_in_daemon": counters(ep, "dropped", stream), "during": extra}  # fmt: skip


def udp_rcvbuf_errors() -> int:
    """The kernel's count of UDP datagrams dropped for a full receive buffer (Linux; -1 elsewhere)."""
    try:
        lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines() if ln.startswith("Udp:")]
        return int(lines[1][lines[0].index("RcvbufErrors")])
    except (OSError, ValueError, IndexError):
        return -1


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


def fire(ep: dict, count: int, seed: int = 0, pace: float = 0.0) -> dict:
    """Send ``count`` malformed messages, at ``pace`` messages per second (0 = as fast as possible)."""
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
        if pace > 0 and k % 50 == 0 and (ahead := t0 + k / pace - time.perf_counter()) > 0:
            time.sleep(ahead)
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
    ap.add_argument("--pace", type=float, default=0.0, help="malformed messages per second (default: 0 = flood)")
    ap.add_argument("--max-streams", type=int, default=16, help="the daemon's [streams] max_streams (default: 16)")
    ap.add_argument("--model", help="model pack folder (default: shipped default model, else the test pack)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = ap.parse_args()
    model, clip = model_path(args.model), sample_clip()
    pace = f"{args.pace:g}/s" if args.pace else "as fast as possible"
    print(f"fuzz: {args.count} malformed messages ({pace}), good stream at {args.rate:g} Hz, model {model}, "
          f"{os.cpu_count()} CPUs, {load_note()}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        proc, ep = start_daemon(model, Path(tmp), level="error", max_streams=args.max_streams)
        try:
            rss0 = rss_mb(proc.pid)
            probe = fire(ep, 2000, seed=99)  # how fast this machine fires: the good stream must outlast the fuzzing
            fire_s = args.count / args.pace if args.pace > 0 else probe["seconds"] / 2000 * args.count
            seconds = max(10.0, fire_s * 1.5 + 3.0)
            base = good_stream(ep, clip, "baseline", args.rate, seconds)
            print(
                f"baseline (no fuzzing, {seconds:.0f} s): sent {base['sent']}, received {base['received']}, "
                f"missing {base['missing']}, dropped in the daemon {base['dropped_in_daemon'] or 0}, "
                f"sent late {base['late']}",
                flush=True,
            )
            before = (counters(ep, "errors"), counters(ep, "dropped"), udp_rcvbuf_errors())
            good = good_stream(ep, clip, "good", args.rate, seconds, lambda: fire(ep, args.count, pace=args.pace))
            time.sleep(1.0)
            after = (counters(ep, "errors"), counters(ep, "dropped"), udp_rcvbuf_errors())
            alive = proc.poll() is None
            rss1 = rss_mb(proc.pid)
            with Control(ep["ctl"]) as ctl:
                st = ctl.status()
        finally:
            proc.terminate()
            code = proc.wait(30)
    f = good.pop("during")
    delta = lambda a, b: {k: b.get(k, 0) - a.get(k, 0) for k in b if b.get(k, 0) != a.get(k, 0)}  # noqa: E731
    r = {
        "malformed": f, "baseline": base, "good": good, "daemon_alive": alive, "daemon_exit": code,
        "errors_during": delta(before[0], after[0]), "dropped_during": delta(before[1], after[1]),
        "kernel_udp_rcvbuf_drops": after[2] - before[2] if before[2] >= 0 else None,
        "streams_open": st["streams"], "rss_start_mb": rss0, "rss_end_mb": rss1, "load": load_note(),
    }  # fmt: skip
    total = f["zmq_ingest"] + f["zmq_control"] + f["osc"]
    print(f"fired {total} malformed messages in {f['seconds']:.1f} s ({total / f['seconds']:.0f}/s): "
          f"{f['zmq_ingest']} ZeroMQ ingest, {f['zmq_control']} ZeroMQ control, {f['osc']} OSC")  # fmt: skip
    print(
        f"good stream meanwhile: sent {good['sent']}, received {good['received']}, missing {good['missing']}, "
        f"in order {good['in_order']}, dropped in the daemon {good['dropped_in_daemon'] or 0}, "
        f"sent more than 4 periods late (in bursts) {good['late']}"
    )
    print(
        f"daemon counted meanwhile: errors {r['errors_during']}, dropped {r['dropped_during']}; "
        f"datagrams the kernel dropped (receive buffer full): {r['kernel_udp_rcvbuf_drops']}"
    )
    print(
        f"daemon: alive {alive}, exit {code}, streams open {st['streams']}; RSS {rss0:.1f} -> {rss1:.1f} MB "
        f"({rss1 - rss0:+.1f} MB); {r['load']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0 if alive and code == 0 and not good["missing"] else 1


if __name__ == "__main__":
    sys.exit(main())
