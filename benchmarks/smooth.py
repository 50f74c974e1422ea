"""The output smoothing's trade (jitter against lag) on *training* clips of corpus sources, never their val parts.

    python benchmarks/smooth.py                                   # the shipped model, snu-vsports and mpi-poseprior
    python benchmarks/smooth.py --model runs/NAME/pack --sources snu-vsports --clips 8 --condition noise10
    python benchmarks/smooth.py --clips 8 --configs default --bias-times none,0.25,0.5,1   # the denoiser's offset

For each source, ``--clips`` training clips (a 300-frame window each) are solved from their rig's joints under the
condition, with the solver's smoothing off and with each configuration below, and scored as ``rtik eval`` scores
corpus clips (MPJPE, rotation error with one rest offset per joint and source, jerk ratio). Needs the corpus
caches (``python -m train.corpus``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtik.eval import crossrig, sources  # noqa: E402
from rtik.eval.evaluation import Split  # noqa: E402
from rtik.models import modelpack  # noqa: E402
from rtik.solve import solver as S  # noqa: E402

CONFIGS = {
    "off": None,
    "default": S.SmoothConfig(),
    "before: one stage, beta_power 1, gate_power 2": S.SmoothConfig(stages=1, beta_power=1.0, gate_power=2.0),
    "one stage": S.SmoothConfig(stages=1),
    "three stages": S.SmoothConfig(stages=3),
    "beta_power 2": S.SmoothConfig(beta_power=2.0),
    "gate_power 2": S.SmoothConfig(gate_power=2.0),
    "three stages, beta_power 2": S.SmoothConfig(stages=3, beta_power=2.0),
    "fixed beta (beta_hz none)": S.SmoothConfig(beta_hz=None),
    "slow root (root_beta 1)": S.SmoothConfig(root_beta=1.0),
    "slow speed (beta 4 and d_cutoff 1 Hz)": S.SmoothConfig(beta=4.0, d_cutoff=1.0),
    "beta 4": S.SmoothConfig(beta=4.0),
    "beta 2": S.SmoothConfig(beta=2.0),
    "d_cutoff 1 Hz": S.SmoothConfig(d_cutoff=1.0),
    "sigma 1.5 mm": S.SmoothConfig(sigma=0.0015),
}


def training_clips(source: str, cache: Path, n: int, seed: int):
    clips, _ = sources.load_split(Split.parse(f"source:{source}"), cache, limit=5 * n, max_frames=300, seed=seed)
    a = np.load(sources.cache_files(cache)[source])
    names = [str(x) for x in a["names"]]
    val = sources.val_flags(source, names, [str(f) for f in a["families"]])
    held = {x for x, v in zip(names, val, strict=True) if v}
    return [c for c in clips if c.name not in held][:n]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model pack (default: the shipped one)")
    ap.add_argument("--sources", default="snu-vsports,mpi-poseprior")
    ap.add_argument("--clips", type=int, default=4, help="training clips per source")
    ap.add_argument("--condition", default="noise10")
    ap.add_argument("--corpus", type=Path, default=ROOT / "cache")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument(
        "--bias-times",
        default="0.5",
        help="comma-separated SolverOptions.bias_time values (s; 'none' = no correction of the denoiser's offset)",
    )
    ap.add_argument("--configs", default=";".join(CONFIGS), help="semicolon-separated smoothing configurations")
    args = ap.parse_args(argv)
    biases = [None if b == "none" else float(b) for b in args.bias_times.split(",")]
    names = [n.strip() for n in args.configs.split(";")]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"unknown configurations {unknown}; known: {', '.join(CONFIGS)}")
    configs = {n: CONFIGS[n] for n in names}
    pack = modelpack.load(args.model)
    print("| source | bias_time s | smoothing | MPJPE mm | rot ° | global ° | jerk × |")
    print("|---|---|---|---:|---:|---:|---:|")
    for src in args.sources.split(","):
        clips = training_clips(src, args.corpus, args.clips, args.seed)
        for bias in biases:
            for name, cfg in configs.items():
                solver = S.Solver(pack, options=S.SolverOptions(smooth=cfg, bias_time=bias))
                run = crossrig.model_method(pack, solver=solver)
                s = crossrig.evaluate(clips, {"m": run}, (args.condition,), 0)[src]["m"][args.condition].summary()
                print(f"| {src} | {bias} | {name} | {s['mpjpe_mm']:.1f} | {s['rot_fit_all_deg']:.2f} | "
                      f"{s['grot_fit_all_deg']:.2f} | {s['jerk_ratio']:.2f} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
