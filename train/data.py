"""Training data: clips of the mocap set as arrays (positions by FK in metres, local rotations), split by take."""

from __future__ import annotations

import os
from pathlib import Path

from rtik import bvh
from rtik.errors import InputError
from rtik.skeleton import Skeleton

CM = 0.01  # the Bandai Namco data is in centimetres


def mocap_root() -> Path:
    """The shared mocap folder: ``../shared/mocap`` beside the repository, else ``$RTIK_MOCAP``."""
    p = Path(__file__).resolve().parents[1].parent / "shared" / "mocap"
    if p.is_dir():
        return p
    env = os.environ.get("RTIK_MOCAP")
    if env and Path(env).is_dir():
        return Path(env)
    raise InputError(f"mocap data not found at {p}; set RTIK_MOCAP to the folder holding the data")


def read_skeleton(path) -> Skeleton:
    """The skeleton of a BVH file, offsets in metres."""
    m = bvh.read(path)
    return m.skeleton.scaled(CM)


def normalized_positions(skel: Skeleton, positions, spec=None):
    """Network input from world positions of every skeleton joint ``(F, J, 3)`` metres.

    Returns ``(pos (F, Ji, 3) float32, yaw (F,) radians, size metres)``: the input joints (all but the dummy
    root) normalised as :func:`rtik.normalize.normalize` does at runtime, body size from the skeleton's bones.
    """
    import numpy as np

    from rtik import normalize as nz

    spec = spec or nz.NormSpec()
    dummy = skel.dummy_root()
    keep = [j for j in range(len(skel)) if j != dummy]
    names = [skel.names[j] for j in keep]
    P = np.asarray(positions, dtype=np.float64)[:, keep]
    size = nz.body_size(spec, names, skel.bone_lengths()[keep])
    yaw, _ = nz.heading(spec, names, P)
    return nz.normalize(P, names.index(spec.root), yaw, size), yaw, size
