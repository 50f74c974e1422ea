"""``rtik eval``: accuracy of the model and the classical baselines on held-out mocap clips.

Prints a table (methods x conditions x metrics), optionally writes JSON and a PNG of per-joint errors. The
metrics are DESIGN's "How accuracy is measured" (see :mod:`rtik.eval.metrics`); progress goes to stderr.

Two kinds of data: a Bandai archive (``--data``; splits ``val``, ``all``, ``content:...``, solved and scored in
the Bandai rig), or the multi-source corpus that ``python -m train.corpus`` caches (``--split val`` without
``--data``, or ``--split source:NAME[,NAME]``): every source's clips solved from the joints its own rig has and
scored in the body, with and without one constant rest offset per joint (:mod:`rtik.eval.crossrig`), one row per
source and an overall one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rtik.errors import InputError, ModelError
from rtik.eval import evaluation
from rtik.eval import report as evalreport
from rtik.eval.conditions import parse_conditions
from rtik.formats.units import METRES

UNITS = METRES


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
    p.add_argument(
        "--data",
        default=None,
        help="a Bandai mocap archive (.tar.xz) or a folder of its BVH files; without it, the multi-source corpus",
    )
    p.add_argument(
        "--split",
        type=_split,
        default=evaluation.Split("val"),
        help="with --data: val (take %% 10 == 0), all, or content:NAME[,NAME...] (every take and style of those "
        "motions); without: val (every source's val part) or source:NAME[,NAME...] (every clip of those "
        "sources, for a model trained without them); default val",
    )
    p.add_argument(
        "--corpus",
        default="cache",
        metavar="DIR",
        help="folder of the corpus caches written by `python -m train.corpus` (default cache)",
    )
    p.add_argument(
        "--offsets",
        choices=("source", "clip"),
        default="source",
        help="corpus splits: fit the constant rest offset per joint over each source's clips (default) or per clip",
    )
    p.add_argument(
        "--virtual",
        choices=("missing", "chain"),
        default="missing",
        help="corpus splits: body joints a rig lacks reach the model missing (as rtik solve feeds a BVH; default) "
        "or placed on their chain (as the baselines get them)",
    )
    p.add_argument(
        "--prior",
        choices=("model", "train"),
        default=None,
        help="corpus splits: the analytic_prior baselines' mean pose: the evaluated model's (its prior_local "
        "mapped onto the body; the default with a model) or the body's mean over the split's training clips "
        "(the default without a model)",
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
    p.add_argument(
        "--limit",
        type=_positive,
        default=None,
        help="evaluate the first N clips of the split only (corpus: N clips per source, drawn with --seed)",
    )
    p.add_argument(
        "--max-frames",
        type=_positive,
        default=None,
        help="use the first N frames of each clip only (corpus: N frames from a start drawn with --seed)",
    )
    p.add_argument("--units", choices=tuple(UNITS), default="cm", help="length unit of the BVH files (default cm)")
    p.add_argument("--seed", type=int, default=0, help="seed of the input corruptions and draws (default 0)")
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
    if args.data is None or args.split.kind == "source":
        return run_corpus(args, pack, methods, need_prior)
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


def run_corpus(args, pack, methods, need_prior: bool) -> int:
    """``rtik eval`` on the multi-source corpus (see the module docstring)."""
    from rtik.eval import crossrig, sources

    log = evaluation.stderr_log
    if args.data is not None:
        raise InputError(f"split {args.split} is a corpus split: leave out --data (the corpus is read from --corpus)")
    if args.split.kind not in ("val", "source"):
        raise InputError(f"split {args.split} needs a Bandai archive (--data); corpus splits: val, source:NAME,...")
    prior_kind = args.prior or ("model" if pack is not None else "train")
    if prior_kind == "model" and need_prior and pack is None:
        raise InputError("--prior model needs a model pack (--model); or --prior train")
    clips, prior = sources.load_split(
        args.split,
        args.corpus,
        limit=args.limit,
        max_frames=args.max_frames,
        seed=args.seed,
        need_prior=need_prior and prior_kind == "train",
        log=log,
    )
    if need_prior and prior_kind == "model":
        prior = crossrig.pack_prior_body(pack)
    runners = {
        m: crossrig.model_method(pack, args.backend, args.virtual == "chain")
        if m == "model"
        else crossrig.baseline_method(m, prior)
        for m in methods
    }
    frames = sum(len(c.local_quats) for c in clips)
    log(f"{len(clips)} clips, {frames} frames of corpus split {args.split}; methods {', '.join(methods)}")
    results = crossrig.evaluate(clips, runners, args.conditions, args.seed, log, offsets=args.offsets)
    print(evalreport.part_table(results))
    if args.json:
        meta = {
            "split": str(args.split),
            "model": None if pack is None else {"name": pack.name, "path": str(args.model or "default")},
            "prior": prior_kind if need_prior else None,
            "offsets": args.offsets,
            "virtual": args.virtual,
            "limit_per_source": args.limit,
            "max_frames": args.max_frames,
            "seed": args.seed,
            "clips": [f"{c.source}/{c.name}" for c in clips],
        }
        Path(args.json).write_text(json.dumps(evalreport.parts_to_json(results, **meta), indent=1) + "\n")
        log(f"wrote {args.json}")
    if args.png:
        overall = results.get("all", next(iter(results.values())))
        panels = (("grot_fit_deg", "global rotation error, rest offset fitted (°)"), ("pos_mm", "input joints (mm)"))
        if evalreport.write_png(overall, clips[0].skeleton.names, args.png, panels):
            log(f"wrote {args.png}")
        else:
            print("rtik eval: matplotlib is not installed (pip install 'rtik[train]'); no PNG written", file=sys.stderr)
    return 0
