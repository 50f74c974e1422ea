"""``rtik ctl``: send a control command to a running daemon."""

from __future__ import annotations

import argparse
import json
import time


def register(sub) -> None:
    p = sub.add_parser("ctl", help="control a running daemon: status, streams, reset, calibrate, record, ...")
    p.add_argument("--endpoint", default="tcp://127.0.0.1:7702", help="control endpoint (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the reply (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the reply as JSON")
    # --json also after the command (`rtik ctl status --json`); SUPPRESS keeps the value given before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the reply as JSON")
    cmds = p.add_subparsers(dest="ctl_command", metavar="COMMAND", required=True)
    add = lambda name, help_: cmds.add_parser(name, help=help_, parents=[common])
    add("status", "daemon status: model, streams, counters, latency")
    add("streams", "open streams with their counters")
    add("stats", "every counter and histogram")
    add("recordings", "BVH files in the recordings folder")
    add("skeleton", "the output skeleton (names, parents, offsets in metres)")
    for name, help_ in (
        ("reset", "reset a stream's solver state"),
        ("calibrate", "fix a stream's bone lengths to the running estimate"),
    ):
        c = add(name, help_)
        c.add_argument("stream", help="stream name")
    rec = add("record", "start or stop recording a stream to BVH")
    rec.add_argument("action", choices=("start", "stop"), help="start or stop")
    rec.add_argument("stream", help="stream name")
    rec.add_argument("name", nargs="?", help="file name in the recordings folder (start; default: STREAM-TIME.bvh)")
    rec.add_argument(
        "--rig", default=None, help="record in this rig of [recording] rigs (start; default: the config's)"
    )
    from rtik.serve.security import add_client_args

    add_client_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from rtik.wire.client import Control

    cmd = args.ctl_command
    kw = {}
    if cmd in ("reset", "calibrate"):
        kw = {"stream": args.stream}
    elif cmd == "record":
        cmd = f"record_{args.action}"
        kw = {"stream": args.stream, **({"name": args.name} if args.name and args.action == "start" else {})}
        if args.rig is not None and args.action == "start":
            kw["rig"] = args.rig
    from rtik.serve.security import client_keys_from_args

    with Control(args.endpoint, timeout=args.timeout, curve=client_keys_from_args(args)) as ctl:
        result = ctl.request(cmd, **kw)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        print(render(cmd, result))
    return 0


def render(cmd: str, result) -> str:
    """Human-readable text of a command's result."""
    if cmd == "streams":
        if not result:
            return "no open streams"
        return "\n".join(
            f"{s['stream']}: in {s.get('frames_in', 0)}  out {s.get('frames_out', 0)}  dropped {s.get('dropped', 0)}"
            f"  errors {s.get('errors', 0)}  latency {s.get('latency_ms', 0):.3f} ms"
            + (f"  recording {s['recording']}" if s.get("recording") else "")
            for s in result
        )
    if cmd == "recordings":
        if not result:
            return "no recordings"
        return "\n".join(
            f"{r['name']}  {r['bytes']} bytes  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r['modified']))}"
            + ("  (recording)" if r.get("active") else "")
            for r in result
        )
    if cmd == "skeleton":
        sk = result["skeleton"]
        pairs = zip(sk["names"], sk["parents"], strict=True)
        return "\n".join(f"{i:2d} {n}  parent {p}" for i, (n, p) in enumerate(pairs))
    if isinstance(result, dict):
        return "\n".join(f"{k}: {v}" for k, v in result.items() if not isinstance(v, (dict, list))) + "".join(
            f"\n{k}: {json.dumps(v, default=str)}" for k, v in result.items() if isinstance(v, (dict, list))
        )
    return json.dumps(result, default=str)
