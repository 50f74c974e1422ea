"""``rtik info FILE.bvh``: what a BVH file holds — skeleton tree with joint groups, frames, rate, units, channels."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rtik.formats import bvh
from rtik.geometry.skeleton import GROUPS


def register(sub) -> None:
    p = sub.add_parser(
        "info",
        help="describe a BVH file: skeleton, joint groups, frames, fps, units, channel layout",
        description=__doc__.replace("``", ""),
    )
    p.add_argument("file", type=Path, metavar="FILE.bvh", help="the BVH file to describe")
    p.set_defaults(func=run)


def describe(motion: bvh.Motion) -> list[str]:
    """The report's lines."""
    skel = motion.skeleton
    dummy = skel.dummy_root()
    counts = Counter(g for j, g in enumerate(skel.groups) if j != dummy)
    groups = ", ".join(f"{counts[g]} {g}" for g in GROUPS)
    roots = f"; dummy root {skel.names[dummy]}" if dummy is not None else ""
    units = bvh.guess_units(motion)
    height = bvh.hip_height(motion)
    unit_line = f"{units} (hip height {height:.4g})" if units else f"unknown (hip height {height:.4g})"
    lines = [
        f"file:       {motion.source}",
        f"joints:     {len(skel)} ({groups}{roots}; motion root {skel.names[skel.motion_root()]})",
        f"frames:     {motion.num_frames}",
        f"fps:        {motion.fps:.6g} (frame time {motion.frame_time:.6g} s)",
        f"duration:   {motion.num_frames * motion.frame_time:.3f} s",
        f"units:      {unit_line}",
        f"channels:   {skel.num_channels} in all",
    ]
    layouts: dict[tuple[str, ...], list[str]] = {}
    for name, ch in zip(skel.names, skel.channels, strict=True):
        layouts.setdefault(ch, []).append(name)
    for ch, names in layouts.items():
        order = "".join(c[0] for c in ch if c.endswith("rotation"))
        who = "every joint" if len(names) == len(skel) else ", ".join(names)
        desc = " ".join(ch) if ch else "(none)"
        lines.append(f"  {len(ch)} x {len(names):<3} {desc}{f'  [rotation order {order}]' if order else ''}: {who}")
    lines.append("skeleton:")
    lines += [f"  {line}" for line in skel.tree_lines()]
    return lines


def run(args) -> int:
    print("\n".join(describe(bvh.read(args.file))))
    return 0
