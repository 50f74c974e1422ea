"""Options several subcommands share."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


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
