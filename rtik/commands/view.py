"""``rtik view``: look at motion files in the browser, with the live view's page (docs/view.md)."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from rtik.formats.units import METRES


def _stride(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of frames, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _port(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= n < 65536:
        raise argparse.ArgumentTypeError(f"must be in 0..65535, got {n}")
    return n


def register(sub) -> None:
    p = sub.add_parser(
        "view",
        help="look at BVH or points files in the browser (a file, a folder, or an input and its output side by side)",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="a .bvh/.npz/.csv file or a folder of them; two paths: an input and its solved output "
                        "(two folders: paired by file name)")  # fmt: skip
    p.add_argument("--port", type=_port, default=7711, help="HTTP port (default 7711; 0 = any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    p.add_argument("--allow", action="append", default=[], metavar="ADDR",
                   help="an address or network allowed to look when --host is off loopback (repeatable)")  # fmt: skip
    p.add_argument("--insecure", action="store_true", help="serve off loopback to any address")
    p.add_argument("--units", choices=tuple(METRES), help="length unit of the files (default: guessed per file)")
    p.add_argument("--stride", type=_stride, default=1, help="draw every Nth frame (long takes)")
    p.add_argument("--no-browser", action="store_true", help="print the address only; do not open a browser")
    p.set_defaults(func=run)


def run(args, ready: threading.Event | None = None, stop: threading.Event | None = None) -> int:
    """Serve until Ctrl+C (or ``stop``); ``ready`` is set once the address is printed (for embedding)."""
    from rtik.errors import ConfigError, RtikError
    from rtik.serve.security import SourceFilter, is_loopback_host
    from rtik.serve.webfiles import FilesView
    from rtik.serve.webserver import WebServer

    view = FilesView(list(args.paths), args.units, args.stride)
    allow = SourceFilter(args.allow) if args.allow else None
    if not is_loopback_host(args.host) and allow is None and not args.insecure:
        raise ConfigError(f"refusing to serve files off loopback ({args.host}) without --allow ADDR or --insecure")
    server = WebServer(view, args.host, args.port, allow=allow, name="rtik-view")
    try:
        server.start()
    except OSError as e:
        raise RtikError(f"cannot serve on {args.host}:{args.port}: {e} (another port: --port N, any: --port 0)") from e
    print(f"rtik view: {server.url} ({len(view.groups)} group(s); Ctrl+C stops)", flush=True)
    if ready is not None:
        ready.set()
    if not args.no_browser:
        import webbrowser

        if not webbrowser.open(server.url):
            print("rtik view: no browser found; open the address above", file=sys.stderr)
    stop = stop or threading.Event()
    try:
        while not stop.wait(1.0):  # a timed wait lets Ctrl+C through
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
