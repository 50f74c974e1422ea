"""``rtik recover``: repair BVH recordings cut short by a crash."""

from __future__ import annotations

from rtik.serve.recorder import recover


def register(sub) -> None:
    p = sub.add_parser("recover", help="repair a BVH recording cut short by a crash (fix its frame count)")
    p.add_argument("files", nargs="+", metavar="FILE", help="BVH recordings to repair in place")
    p.set_defaults(func=run)


def run(args) -> int:
    for path in args.files:
        n = recover(path)
        print(f"{path}: {n} complete frames kept")
    return 0
