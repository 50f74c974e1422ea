"""``rtik serve``: run the daemon (docs/daemon.md)."""

from __future__ import annotations

import gc
import json
import logging
import signal
import sys

from rtik.serve import config as config_mod
from rtik.serve.sdnotify import Notifier, watchdog_interval


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the real-time daemon (ZeroMQ/OSC in, ZeroMQ/OSC/VMC out, control)")
    p.add_argument("--config", metavar="TOML", help="configuration file (default: built-in defaults, 127.0.0.1)")
    p.add_argument("--print-config", action="store_true", help="print the effective configuration as TOML and exit")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow binding off 127.0.0.1 without CurveZMQ keys (anyone reaching the ports can drive it)",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="solve on shards on a Ray cluster ([ray] in the config; pip install 'rtik[ray]'): the cluster at "
        "ADDRESS (HOST:PORT), or a private local one on 127.0.0.1 without it (docs/scale.md)",
    )
    p.set_defaults(func=run)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (and exc when an exception is logged)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 6), "level": record.levelname.lower(), "logger": record.name,
               "msg": record.getMessage()}  # fmt: skip
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(cfg: config_mod.LogConfig, verbose: int = 0) -> None:
    level = logging.DEBUG if verbose >= 2 else getattr(logging, cfg.level.upper())
    handler = logging.StreamHandler(sys.stderr)
    if cfg.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def freeze_loaded() -> int:
    """Freeze what is loaded now (the solver, its runtimes, numba: ~110,000 objects, alive as long as the process)
    out of the garbage collector, whose full collections otherwise walk it all, ~70 ms with the interpreter lock
    held, every few seconds under heavy traffic, stalling every thread while frames pile up in the sockets. The
    number of objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def run(args) -> int:
    import dataclasses

    cfg = config_mod.load(args.config)
    if getattr(args, "insecure", False):
        cfg = dataclasses.replace(cfg, security=dataclasses.replace(cfg.security, insecure=True))
    if getattr(args, "ray", None) is not None:
        address = args.ray or cfg.ray.address
        cfg = dataclasses.replace(cfg, ray=dataclasses.replace(cfg.ray, enabled=True, address=address))
    if args.print_config:
        sys.stdout.write(config_mod.to_toml(cfg))
        return 0
    setup_logging(cfg.log, getattr(args, "verbose", 0))
    from rtik.serve.daemon import Daemon

    # hand the interpreter lock over every 1 ms instead of 5: a frame arriving while the solver thread runs Python
    # code waits for the lock at most this long
    sys.setswitchinterval(0.001)

    notifier = Notifier()
    daemon = Daemon(cfg)
    freeze_loaded()
    daemon.start()

    def on_signal(signum, _frame):
        logging.getLogger("rtik.daemon").info("signal %d: shutting down", signum)
        daemon.stop_event.set()

    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):  # SIGBREAK: Ctrl+Break on Windows
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), on_signal)
    interval = watchdog_interval()
    notifier.ready(f"serving {daemon.model_name or 'model'}")
    try:
        while not daemon.stop_event.wait(interval or 1.0):
            if interval and daemon.healthy():
                notifier.watchdog()
    finally:
        notifier.stopping()
        daemon.stop()
        notifier.close()
    return 1 if daemon.stats.total("errors", kind="thread") else 0
