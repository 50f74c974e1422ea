"""Options several subcommands share."""

from __future__ import annotations

import argparse


def int_at_least(minimum: int, unit: str = ""):
    """An argparse type: an integer of at least ``minimum`` (``unit`` names what it counts in the error)."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = minimum - 1
        if n < minimum:
            what = "a positive integer" if minimum == 1 and not unit else f"an integer of at least {minimum} {unit}"
            raise argparse.ArgumentTypeError(f"expected {what.rstrip()}, got {text!r}")
        return n

    return parse


positive_int = int_at_least(1)


def fraction(text: str) -> float:
    """An argparse type: a number within 0..1."""
    try:
        w = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= w <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not within 0..1")
    return w


def add_ray_options(parser, what: str) -> None:
    """``--ray [ADDRESS]`` and ``--workers N`` on the parser of a command that can spread its ``what`` (files,
    clips) over a Ray cluster (:mod:`rtik.serve.ray_cluster`; Ray is imported only when ``--ray`` is given)."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help=f"spread the {what} over a Ray cluster, each solved whole by one worker (pip install 'rtik[ray]'): "
        "the cluster at ADDRESS (HOST:PORT), or a private local one on 127.0.0.1 without it; the same results as "
        "without (docs/scale.md)",
    )
    parser.add_argument(
        "--workers", type=positive_int, default=None, help="with --ray: worker processes (default: the cluster's CPUs)"
    )
