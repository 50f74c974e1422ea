"""Pictures of the rig mapping, to check by eye: every sample rig in the body's T-pose, and one frame of motion
converted to the body, each joint's frame drawn as a small red (x), green (y), blue (z) triad.

    python benchmarks/rigs.py --out rigs.png [--frame 60]

The T-pose row should show the same figure for every rig (Y up, facing +Z, arms along X, feet forward); the motion
row shows each clip's pose on the body, with the hands' and feet's frames turned as the performer's were.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rtik.formats import bvh  # noqa: E402
from rtik.formats.rig import BODY_NAMES, BODY_PARENTS, Rig, clip_arrays  # noqa: E402
from rtik.geometry import rotations as rot  # noqa: E402
from rtik.geometry.kinematics import forward_kinematics  # noqa: E402

MOCAP = Path(__file__).resolve().parents[2] / "shared" / "mocap"


def _draw(ax, P, G, title, scale):
    for j, p in enumerate(BODY_PARENTS):
        if p > 0:
            ax.plot(*[[P[p, k], P[j, k]] for k in (0, 2, 1)], color="0.3", lw=1.5)
    R = rot.quat_to_matrix(G)
    for j in range(1, len(BODY_NAMES)):
        for k, c in enumerate("rgb"):
            e = P[j] + 0.06 * scale * R[j][:, k]
            ax.plot([P[j, 0], e[0]], [P[j, 2], e[2]], [P[j, 1], e[1]], color=c, lw=1)
    c = P[1]
    for setlim, k in ((ax.set_xlim, 0), (ax.set_ylim, 2), (ax.set_zlim, 1)):
        setlim(c[k] - 0.6 * scale, c[k] + 0.6 * scale)
    ax.set_title(title, fontsize=7)
    ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
    ax.view_init(elev=10, azim=-70)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="rigs.png")
    ap.add_argument("--frame", type=int, default=60)
    ap.add_argument("--only", nargs="*", default=(), help="substrings of the sample files to draw (default: all)")
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = sorted((MOCAP / "extra" / "sample").glob("*.bvh")) + sorted((MOCAP / "sample").glob("*.bvh"))[:1]
    files = [f for f in files if not args.only or any(s in f.name for s in args.only)]
    fig = plt.figure(figsize=(2.4 * len(files), 5.0))
    for i, f in enumerate(files):
        m = bvh.read(f)
        rig = Rig.from_motion(m)
        _, q, root = clip_arrays(m)
        t = min(args.frame, len(q) - 1)
        scale = float(np.ptp(forward_kinematics(rig.body, rot.quat_identity((1, 22)))[0][0], axis=0).max())
        P, G = forward_kinematics(rig.body, rot.quat_identity((1, 22)))
        name = f.stem.replace("animated-drawings", "AD").replace("snu-", "")[:22]
        _draw(fig.add_subplot(2, len(files), i + 1, projection="3d"), P[0], G[0], f"{name}\n{len(m.skeleton)} j", scale)
        bq, hips = rig.to_body(q[t : t + 1], root[t : t + 1])
        P, G = forward_kinematics(rig.body, bq, hips)
        _draw(fig.add_subplot(2, len(files), len(files) + i + 1, projection="3d"), P[0], G[0], f"frame {t}", scale)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} ({len(files)} rigs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
