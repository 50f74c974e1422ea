"""``rtik bvh-check PATH...``: parse every BVH in files, folders (recursive) and tar archives; report failures.

Prints one line per failing file (``FAIL name: message``) and then exactly ``N ok, M failed``; exits 1 if any
file failed. Progress goes to stderr every few seconds, so long runs over an archive show they are alive.
"""

from __future__ import annotations

import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

from rtik.errors import BVHError, RtikError
from rtik.formats import bvh

PROGRESS_EVERY_S = 5.0  # seconds between progress lines on stderr
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def register(sub) -> None:
    p = sub.add_parser(
        "bvh-check",
        help="parse BVH files, folders or tar archives and report the ones that fail",
        description=__doc__.split("\n\n")[0].replace("``", ""),
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="a .bvh file, a folder or a tar archive")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)


def is_archive(path: Path) -> bool:
    """True for a tar archive (any compression tarfile reads), judged by name, else by content."""
    name = path.name.lower()
    return name.endswith(_TAR_SUFFIXES) or (path.is_file() and not name.endswith(".bvh") and tarfile.is_tarfile(path))


def iter_clips(path: Path) -> Iterator[tuple[str, bvh.Motion | BVHError]]:
    """``(label, Motion or the BVHError it raised)`` for every BVH under ``path``."""
    if not path.exists():
        raise RtikError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".bvh")
        if not files:
            raise RtikError(f"{path}: no .bvh files in this folder or below")
        for f in files:
            yield from _one(f)
    elif is_archive(path):
        try:
            for name, result in bvh.iter_archive(path):
                yield f"{path}:{name}", result
        except BVHError as e:  # a damaged archive: report it as one failure and go on with the other paths
            yield str(path), e
    else:
        yield from _one(path)


def _one(path: Path):
    try:
        yield str(path), bvh.read(path)
    except BVHError as e:
        yield str(path), e


def run(args) -> int:
    ok = failed = 0
    t0 = last = time.monotonic()
    for path in args.paths:
        for label, result in iter_clips(path):
            if isinstance(result, BVHError):
                failed += 1
                print(f"FAIL {label}: {result}", flush=True)
            else:
                ok += 1
            now = time.monotonic()
            if not args.quiet and now - last >= PROGRESS_EVERY_S:
                last = now
                print(f"bvh-check: {ok + failed} files checked, {failed} failed, {now - t0:.0f} s", file=sys.stderr)
    print(f"{ok} ok, {failed} failed")
    return 1 if failed else 0
