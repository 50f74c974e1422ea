"""Joints that drop out and spikes, on *training* clips of corpus sources (never their val parts).

    python benchmarks/gaps.py                                    # snu-vsports, mpi-poseprior, snu-ys2010; 4 clips
    python benchmarks/gaps.py --sources animated-drawings --clips 3 --model runs/NAME/pack

For each source, ``--clips`` training clips (a 300-frame window each, as ``benchmarks/smooth.py`` draws them) are
solved from their rig's joints under ``rtik eval``'s occlusion condition (0.5 s gaps) with gap holding on
(``SolverOptions.gap_hold`` 1 s) and off, and under its outliers condition (1 % of samples 10 cm off) with the
spike check at each ``--spikes`` threshold and off. Printed: the error of the occluded joints themselves, of the
observed joints (which a wrong guess for a missing joint above them drags along), of all joints, and the jerk
ratio. Needs the corpus caches (``python -m train.corpus``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from smooth import training_clips  # noqa: E402

from rtik.eval import crossrig  # noqa: E402
from rtik.eval.metrics import jerk  # noqa: E402
from rtik.models import modelpack  # noqa: E402
from rtik.solve.solver import Solver, SolverOptions  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model pack (default: the shipped one)")
    ap.add_argument("--sources", default="snu-vsports,mpi-poseprior,snu-ys2010")
    ap.add_argument("--clips", type=int, default=4, help="training clips per source")
    ap.add_argument("--corpus", type=Path, default=ROOT / "cache")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--spikes", default="0.02", help="comma-separated SolverOptions.spike values (m) to compare")
    args = ap.parse_args(argv)
    pack = modelpack.load(args.model)
    configs = {
        ("occlusion", "gap_hold 1 s"): SolverOptions(),
        ("occlusion", "gap_hold off"): SolverOptions(gap_hold=None),
        **{("outliers", f"spike {float(v) * 100:g} cm"): SolverOptions(spike=float(v)) for v in args.spikes.split(",")},
        ("outliers", "spike off"): SolverOptions(spike=None),
    }
    print("| source | condition | solver | missing joints mm | observed joints mm | all joints mm | jerk × |")
    print("|---|---|---|---:|---:|---:|---:|")
    for src in args.sources.split(","):
        clips = training_clips(src, args.corpus, args.clips, args.seed)
        for (cond, name), opts in configs.items():
            run = crossrig.model_method(pack, solver=Solver(pack, options=opts))
            miss, seen, every, jr = [], [], [], []
            for clip in clips:
                P, mask = crossrig.corrupted_input(clip, cond, 0)
                _, pos = run(clip, P, mask)
                J = len(clip.skeleton)
                d = np.linalg.norm(pos - clip.positions, axis=-1)[:, clip.present] * 1000.0
                gone = ~mask[:, :J][:, clip.present]
                miss.append(d[gone])
                seen.append(d[~gone])
                every.append(d.ravel())
                out, true = pos[:, clip.present], clip.positions[:, clip.present]
                jr.append(float(np.mean(jerk(out, clip.fps)) / max(float(np.mean(jerk(true, clip.fps))), 1e-12)))
            m = np.concatenate(miss)
            print(f"| {src} | {cond} | {name} | {m.mean() if m.size else float('nan'):.1f} | "
                  f"{np.concatenate(seen).mean():.1f} | {np.concatenate(every).mean():.2f} | {np.mean(jr):.2f} |",
                  flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
