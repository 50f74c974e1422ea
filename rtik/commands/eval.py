"""``rtik eval``: accuracy of the model and the classical baselines on held-out mocap clips.

Prints a table (methods x conditions x metrics), optionally writes JSON and a PNG of per-joint errors. The
metrics are DESIGN's "How accuracy is measured" (see :mod:`rtik.eval.metrics`); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys

from rtik.errors import InputError, ModelError
from rtik.eval import evaluation
from rtik.eval import report as evalreport
from rtik.eval.conditions import parse_conditions

UNITS = {"cm": 0.01, "mm": 0.001, "m": 1.0}


def _methods(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    bad = [n for n in names if n not in evaluation.METHODS]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"unknown method {', '.join(bad) or '(none)'}; valid methods: {', '.join(evaluation.METHODS)}"
        )
    return names


def _conditions(text: str) -> tuple[str, ...]:
    try:
        return parse_conditions(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _split(text: str) -> evaluation.Split:
    try:
        return evaluation.Split.parse(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="measure accuracy on held-out mocap clips",
        description="Accuracy of the model and the classical baselines on held-out mocap clips, under clean, "
        "noisy, occluded and outlier input: MPJPE, local/global rotation error per joint group, jerk ratio. "
        "Prints a table; --json and --png write the summary and per-joint errors. Progress goes to stderr.",
    )
    p.add_argument("--data", required=True, help="the mocap archive (.tar.xz) or a folder of BVH files")
    p.add_argument(
        "--split",
        type=_split,
        default=evaluation.Split("val"),
        help="val (take %% 10 == 0), all, or content:NAME[,NAME...] (every take and style of those motions); "
        "default val",
    )
    p.add_argument("--model", default=None, help="model pack folder (default: the shipped model)")
    p.add_argument("--backend", default="onnx", help="inference backend for the model (default onnx)")
    p.add_argument(
        "--conditions",
        type=_conditions,
        default=evaluation.CONDITIONS,
        help=f"comma-separated input conditions (default {','.join(evaluation.CONDITIONS)})",
    )
    p.add_argument(
        "--methods",
        type=_methods,
        default=None,
        help=f"comma-separated methods (default {','.join(evaluation.METHODS)}; without an installed model, "
        "the baselines only)",
    )
    p.add_argument("--limit", type=_positive, default=None, help="evaluate the first N clips of the split only")
    p.add_argument("--max-frames", type=_positive, default=None, help="use the first N frames of each clip only")
    p.add_argument("--units", choices=tuple(UNITS), default="cm", help="length unit of the BVH files (default cm)")
    p.add_argument("--seed", type=int, default=0, help="seed of the input corruptions (default 0)")
    p.add_argument("--cache", default="cache/eval", help="folder for cached training-set statistics")
    p.add_argument("--json", default=None, metavar="OUT.json", help="write the summary as JSON")
    p.add_argument("--png", default=None, metavar="OUT.png", help="plot per-joint errors (needs matplotlib)")
    p.set_defaults(func=run)


def run(args) -> int:
    from rtik.models import modelpack

    log = evaluation.stderr_log
    methods = args.methods
    pack = None
    if methods is None or "model" in methods:
        try:
            pack = modelpack.load(args.model)
        except ModelError as e:
            if methods is not None or args.model is not None:
                raise
            log(f"no model to evaluate ({e}); evaluating the baselines only")
        if methods is None:
            methods = evaluation.METHODS if pack is not None else evaluation.METHODS[1:]
    need_prior = any(m.startswith("analytic_prior") for m in methods)
    prior_from_data = need_prior and pack is None
    clips, prior = evaluation.load_clips(
        args.data,
        args.split,
        scale=UNITS[args.units],
        limit=args.limit,
        max_frames=args.max_frames,
        need_prior=prior_from_data,
        cache_dir=args.cache,
        log=log,
    )
    skel = clips[0].skeleton
    if pack is not None:
        prior = pack.prior_local[[pack.skeleton.index(n) for n in skel.names]]
    runners = {}
    for m in methods:
        runners[m] = (
            evaluation.model_method(pack, args.backend) if m == "model" else evaluation.baseline_method(m, prior)
        )
    frames = sum(len(c.local_quats) for c in clips)
    log(f"{len(clips)} clips, {frames} frames of split {args.split}; methods {', '.join(methods)}")
    results = evaluation.evaluate(clips, runners, args.conditions, args.seed, log)
    print(evalreport.table(results))
    if args.json:
        evalreport.write_json(results, args.json)
        log(f"wrote {args.json}")
    if args.png:
        if evalreport.write_png(results, skel.names, args.png):
            log(f"wrote {args.png}")
        else:
            print("rtik eval: matplotlib is not installed (pip install 'rtik[train]'); no PNG written", file=sys.stderr)
    return 0
