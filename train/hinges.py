"""Hinge axes of a model pack: the axis each knee and elbow turns about, measured on the training clips.

A knee (and, less strictly, an elbow) bends about one axis fixed in its upper bone. Joint positions then say
more than a bone's direction: where the limb is bent, the plane through its three joints is normal to that axis,
which fixes the upper bone's twist and the lower bone's whole rotation (docs/solver.md, "Hinges"). On a
performer it was not trained on, a network's guess of those twists is where it is worst; the hinge is anatomy,
the same for every body.

The axis of a joint is the mean rotation axis of its local rotations over the training frames where it is bent by
more than :data:`MIN_BEND` (the direction of flexion: a bend is a positive turn about the axis), made normal to the
lower bone's rest direction. Measured on the corpus (every source's training part), the bent knees' axes lie
within 0–5° of their mean on five sources of six (median); elbows within 0–20°: some rigs keep the forearm's
roll in the elbow.

``python -m train.hinges PACK [--exclude-source NAME ...]`` measures them on the corpus's training split (without
the sources a fold model was trained without) and writes them into ``PACK/model.json``; ``train.fit`` writes them
into every pack it exports.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from rtik.geometry.skeleton import Skeleton

#: the body's hinge joints (the lower joint of each limb, whose local rotation is the bend)
HINGE_JOINTS = ("LowerArm_L", "LowerArm_R", "LowerLeg_L", "LowerLeg_R")
#: frames bent less than this (degrees) do not say where the axis is
MIN_BEND = 30.0
#: joints whose twist about their own bone the solver takes from the mean pose (a pack's ``twist_prior``):
#: positions do not show it, and on four leave-source-out folds the mean pose's twist was closer than the
#: network's for the clavicles, the neck, the limbs and the feet (docs/results.md); the spine's stays the
#: network's (closer on three folds of four). The hinges override it where a limb is bent.
TWIST_PRIOR = (
    "Neck", "Shoulder_L", "Shoulder_R", "UpperArm_L", "LowerArm_L", "UpperArm_R", "LowerArm_R",
    "UpperLeg_L", "LowerLeg_L", "Foot_L", "UpperLeg_R", "LowerLeg_R", "Foot_R",
)  # fmt: skip
#: how far the shipped recipe turns the leaves (head, hands, toes) to the mean pose (a pack's ``leaf_prior``)
LEAF_PRIOR = 1.0


def twist_joints(skel: Skeleton, joints=TWIST_PRIOR) -> list[str]:
    """The joints of ``joints`` that ``skel`` has with a parent and a child bone (a twist to take)."""
    return [n for n in joints if n in skel.names and skel.parents[skel.index(n)] >= 0
            and skel.bone_children(skel.index(n))]  # fmt: skip


def hinge_axes(quats, skel: Skeleton, joints=HINGE_JOINTS, stride: int = 1) -> tuple[dict, dict]:
    """``({joint: [x, y, z]}, {joint: {"frames", "spread_deg"}})``: each hinge joint's axis (in its parent's
    frame) from local rotations ``quats (N, J, 4)`` XYZW of ``skel``, every ``stride``-th frame; the report gives
    the bent frames it saw and the median angle of their axes from their mean (before it is made normal to the
    bone). Joints the skeleton lacks, or that no
    frame bends, are left out."""
    axes, report = {}, {}
    for name in joints:
        if name not in skel.names:
            continue
        j = skel.index(name)
        q = np.asarray(quats[::stride, j], dtype=np.float64)
        q = np.where(q[:, 3:4] < 0, -q, q)  # w >= 0: the axis points the way of a positive turn
        angle = 2.0 * np.arccos(np.clip(q[:, 3], -1.0, 1.0))
        s = np.linalg.norm(q[:, :3], axis=1)
        bent = angle > np.radians(MIN_BEND)
        if not bent.any():
            continue
        ax = q[bent, :3] / s[bent, None]
        kids = skel.bone_children(j)
        mean = ax.mean(0)
        dev = np.degrees(np.arccos(np.clip(ax @ (mean / max(np.linalg.norm(mean), 1e-12)), -1.0, 1.0)))
        if kids:  # normal to the lower bone's rest direction
            d = skel.offsets[kids[0]] / np.linalg.norm(skel.offsets[kids[0]])
            mean = mean - (mean @ d) * d
        if np.linalg.norm(mean) < 1e-6:
            continue
        mean /= np.linalg.norm(mean)
        axes[name] = [round(float(v), 6) for v in mean]
        report[name] = {"frames": int(bent.sum()), "spread_deg": round(float(np.median(dev)), 2)}
    return axes, report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m train.hinges",
        description="Measure the knees' and elbows' hinge axes on the corpus's training split and write them into "
        "a model pack's model.json.",
    )
    p.add_argument("pack", help="model pack folder")
    p.add_argument("--exclude-source", action="append", default=[], metavar="NAME",
                   help="leave out a source (the ones a fold model was trained without); repeatable")  # fmt: skip
    p.add_argument("--corpus", default=None, help="folder of the corpus caches (default cache)")
    args = p.parse_args(argv)
    from rtik.models import modelpack
    from train.corpus import load_corpus

    pack = modelpack.load(args.pack)
    cs = load_corpus(exclude_source=args.exclude_source, cache_dir=args.corpus).split("train")
    axes, report = hinge_axes(cs.quats, cs.skeleton, stride=max(1, cs.num_frames // 200_000))
    meta_path = Path(pack.path) / modelpack.META_FILE
    meta = json.loads(meta_path.read_text())
    meta["hinges"] = axes
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    modelpack.load(pack.path)  # still a valid pack
    for name, r in report.items():
        print(f"{name}: axis {axes[name]}, {r['frames']} bent frames, spread {r['spread_deg']}°")
    print(f"wrote hinges into {meta_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
