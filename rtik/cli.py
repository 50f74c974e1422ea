"""The one ``rtik`` command. Each subcommand lives in its own module under :mod:`rtik.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int`` as the handler."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from rtik import __version__
from rtik.errors import RtikError

#: subcommand modules, in the order ``rtik --help`` lists them
COMMANDS = (
    "serve", "solve", "eval", "bench", "send", "listen", "ctl", "recover", "keys", "info", "bvh_check", "video",
    "capture", "view",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtik", description="Real-time neural inverse kinematics.")
    parser.add_argument("--version", action="version", version=f"rtik {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"rtik.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"rtik.commands.{name}":
                continue  # a command that this build does not include
            raise
        mod.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RtikError as e:
        print(f"rtik {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
