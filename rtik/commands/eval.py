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

from rtik.commands.options import add_ray_options, fraction, positive_int
from rtik.errors import InputError, ModelError
from rtik.eval import evaluation
from rtik.eval import report as evalreport
from rtik.eval.conditions import parse_conditions
from rtik.formats.units import METRES
from rtik.solve.solver import SolverOptions

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
    p.add_argument(
        "--markers",
        choices=("none", "rig", "estimator"),
        default="none",
        help="corpus splits: the leaf markers the input has: none (joints only; default), rig (each clip's own "
        "rig's head, hand and toe tips where it has them) or estimator (a pose estimator's points and joints, as "
        "the mediapipe33 layout gives them)",
    )
    p.add_argument("--model", default=None, help="model pack folder (default: the shipped model)")
    p.add_argument(
        "--leaf-prior",
        type=fraction,
        default=None,
        metavar="W",
        help="turn the model's leaf rotations (head, hands, toes) this far towards its mean pose, 0..1 (default: "
        "the pack's leaf_prior)",
    )
    p.add_argument(
        "--no-hinge",
        dest="hinge",
        action="store_false",
        help="leave the network's twists of bent knees and elbows as they are (SolverOptions.hinge; docs/solver.md)",
    )
    p.add_argument(
        "--twist-prior",
        type=fraction,
        default=1.0,
        metavar="W",
        help="turn the twists of the pack's twist_prior joints (clavicles, neck, limbs) this far from the "
        "network's towards the mean pose's, 0..1 (default 1; 0 = the network's; SolverOptions.twist_prior)",
    )
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
        type=positive_int,
        default=None,
        help="evaluate the first N clips of the split only (corpus: N clips per source, drawn with --seed)",
    )
    p.add_argument(
        "--max-frames",
        type=positive_int,
        default=None,
        help="use the first N frames of each clip only (corpus: N frames from a start drawn with --seed)",
    )
    p.add_argument("--units", choices=tuple(UNITS), default="cm", help="length unit of the BVH files (default cm)")
    p.add_argument("--seed", type=int, default=0, help="seed of the input corruptions and draws (default 0)")
    p.add_argument("--cache", default="cache/eval", help="folder for cached training-set statistics")
    add_ray_options(p, "clips")
    p.add_argument(
        "--json",
        default=None,
        metavar="OUT.json",
        help="write the summary as JSON (corpus splits: with the per-joint means)",
    )
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
            evaluation.model_method(pack, args.backend, _options(args))
            if m == "model"
            else evaluation.baseline_method(m, prior)
        )
    frames = sum(len(c.local_quats) for c in clips)
    log(f"{len(clips)} clips, {frames} frames of split {args.split}; methods {', '.join(methods)}")
    if getattr(args, "ray", None) is not None:
        results = _ray_bandai(args, clips, methods, prior, log)
    else:
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
    runners = _runners(
        "corpus",
        args.model,
        args.backend,
        methods,
        prior,
        args.virtual == "chain",
        pack,
        args.markers,
        _options(args),
    )
    frames = sum(len(c.local_quats) for c in clips)
    log(f"{len(clips)} clips, {frames} frames of corpus split {args.split}; methods {', '.join(methods)}")
    kw = {"offsets": args.offsets, "markers_mode": args.markers}  # how crossrig.evaluate scores
    if getattr(args, "ray", None) is not None:
        runners = _ray_corpus(args, clips, methods, prior, log, kw)
    results = crossrig.evaluate(clips, runners, args.conditions, args.seed, log, **kw)
    print(evalreport.part_table(results))
    if args.json:
        meta = {
            "split": str(args.split),
            "model": None if pack is None else {"name": pack.name, "path": str(args.model or "default")},
            "prior": prior_kind if need_prior else None,
            "offsets": args.offsets,
            "virtual": args.virtual,
            "markers": args.markers,
            "limit_per_source": args.limit,
            "max_frames": args.max_frames,
            "seed": args.seed,
            "clips": [f"{c.source}/{c.name}" for c in clips],
        }
        doc = evalreport.parts_to_json(results, clips[0].skeleton.names, **meta)
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
        log(f"wrote {args.json}")
    if args.png:
        overall = results.get("all", next(iter(results.values())))
        panels = (("grot_fit_deg", "global rotation error, rest offset fitted (°)"), ("pos_mm", "input joints (mm)"))
        if evalreport.write_png(overall, clips[0].skeleton.names, args.png, panels):
            log(f"wrote {args.png}")
        else:
            print("rtik eval: matplotlib is not installed (pip install 'rtik[train]'); no PNG written", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------------------ Ray
def _options(args) -> SolverOptions:
    """The solver options of an evaluation: ``--leaf-prior`` (None: the pack's), ``--no-hinge``,
    ``--twist-prior``."""
    return SolverOptions(
        leaf_prior=args.leaf_prior, hinge=SolverOptions.hinge if args.hinge else None, twist_prior=args.twist_prior
    )


def _runners(
    kind: str, model, backend: str, methods, prior, fill: bool = False, pack=None, markers="none", options=None
) -> dict:  # fmt: skip
    """The methods of a run: ``kind`` ``"bandai"`` (:mod:`rtik.eval.evaluation`) or ``"corpus"``
    (:mod:`rtik.eval.crossrig`, the input's leaf ``markers`` mode); the model pack is loaded from ``model`` unless
    given (workers load it); ``options``: the model's :class:`SolverOptions` (None: the defaults)."""
    from rtik.eval import crossrig
    from rtik.models import modelpack
    from rtik.solve.solver import Solver

    options = options if options is not None else SolverOptions()

    mod = crossrig if kind == "corpus" else evaluation
    if "model" in methods and pack is None:
        pack = modelpack.load(model)
    out = {}
    for m in methods:
        if m != "model":
            out[m] = mod.baseline_method(m, prior)
        elif kind == "corpus":
            solver = Solver(pack, backend=backend, options=options)
            out[m] = crossrig.model_method(pack, backend, fill, solver=solver, markers_mode=markers)
        else:
            out[m] = evaluation.model_method(pack, backend, options)
    return out


def _ray_clip_errors(runners, job) -> dict:
    """A worker's share of a Bandai run: one clip's ``{method: {condition: Errors}}``."""
    clip, conditions, seed = job
    return evaluation.evaluate([clip], runners, conditions, seed)


def _ray_clip_outputs(runners, job) -> dict:
    """A worker's share of a corpus run: one clip's outputs ``{condition: {method: (global (F, 22, 4), positions
    (F, 22, 3))}}`` in float32, as :func:`rtik.eval.crossrig.evaluate` keeps them, for the very input it gives
    (evaluate runs here on the one clip, recording what each method returns; its scores are not used)."""
    import numpy as np

    from rtik.eval import crossrig

    clip, conditions, seed, kw = job
    outs: dict = {c: {} for c in conditions}
    order = iter([(c, m) for c in conditions for m in runners])

    def recorder(name, run):
        def rec(clip, positions, mask):
            cond, m = next(order)
            if m != name:
                raise InputError(f"method {name} asked for out of order")
            g, pos = run(clip, positions, mask)
            outs[cond][name] = (g.astype(np.float32), pos.astype(np.float32))
            return g, pos

        return rec

    crossrig.evaluate([clip], {m: recorder(m, r) for m, r in runners.items()}, conditions, seed, **kw)
    return outs


def _ray_map(args, setup, fn, clips, log, extra=()) -> list:
    from rtik.serve import ray_cluster

    ray_cluster.connect(args.ray, num_cpus=args.workers)
    workers = args.workers or ray_cluster.cluster_cpus()
    log(f"solving on {workers} Ray workers")
    n = [0]

    def done(i: int, _out) -> None:
        n[0] += 1
        if n[0] % 10 == 0 or n[0] == len(clips):
            log(f"evaluated {n[0]}/{len(clips)} clips")

    jobs = [(c, tuple(args.conditions), args.seed, *extra) for c in clips]
    return ray_cluster.map_items(setup, fn, jobs, workers, done)


def _ray_bandai(args, clips, methods, prior, log) -> dict:
    """``rtik eval --ray`` on a Bandai split: each clip scored whole on a worker; the sums combined here in clip
    order, as :func:`rtik.eval.evaluation.evaluate` combines them."""
    from functools import partial

    from rtik.eval import metrics

    setup = partial(
        _runners,
        "bandai",
        args.model,
        args.backend,
        tuple(methods),
        prior,
        options=_options(args),
    )
    per = _ray_map(args, setup, _ray_clip_errors, clips, log)
    return {m: {c: metrics.combine([p[m][c] for p in per]) for c in args.conditions} for m in methods}


def _ray_corpus(args, clips, methods, prior, log, kw: dict) -> dict:
    """``rtik eval --ray`` on the corpus: each clip solved whole on a worker; methods that hand those outputs to
    :func:`rtik.eval.crossrig.evaluate`, which fits the offsets and scores here, as in a serial run."""
    from functools import partial

    fill = args.virtual == "chain"
    setup = partial(
        _runners,
        "corpus",
        args.model,
        args.backend,
        tuple(methods),
        prior,
        fill,
        None,
        args.markers,
        _options(args),
    )
    outs = _ray_map(args, setup, _ray_clip_outputs, clips, log, ({**kw, "offsets": "clip"},))
    return {m: _replay(m, clips, outs, args.conditions) for m in methods}


def _replay(method: str, clips, outs, conditions):
    """A method that returns the outputs computed on the workers, in the order evaluate asks for them."""
    order = iter([(i, c) for i in range(len(clips)) for c in conditions])

    def run(clip, positions, mask):
        i, cond = next(order)
        if clips[i] is not clip:
            raise InputError(f"clip {clip.name} asked for out of order")
        return outs[i][cond][method]

    return run
