"""A root the input only approximates (a pose estimator's stand-in for the hips) or does not have: the body moves by
the mean miss of its other observed joints, so that a root placed off the joint does not carry every observed
joint with it."""

from __future__ import annotations

import importlib.util

import numpy as np

from rtik.formats import layouts
from rtik.models import modelpack
from rtik.solve import numpath
from rtik.solve.solver import Solver, SolverOptions

#: what a pose estimator does not give: the torso between the hips and the shoulders
TORSO = ("Spine", "Chest", "Neck", "Shoulder_L", "Shoulder_R")


def _run(pack, X, fps, kernels):
    """Solve ``X`` without the torso and with the root 4 cm above its joint, marked approximate as ``mediapipe33``
    marks its hips; -> the observed joints' FK positions less their input ``(F, Jo, 3)`` (the root left out)."""
    names = tuple(n for n in pack.input_joints if n not in TORSO)
    layout = layouts.from_names(names, tuple(pack.input_joints), name="names")
    layout = layouts.Layout(layout.name, layout.joints, layout.rows, {pack.norm.root: "a stand-in"})
    sv = Solver(pack, options=SolverOptions(kernels=kernels, smooth=None))
    sv.open_stream("a", layout=layout)
    keep = [list(pack.input_joints).index(n) for n in names]
    root = names.index(pack.norm.root)
    out = []
    for f in range(len(X)):
        P = X[f, keep].copy()
        P[root] += [0.0, 0.04, 0.0]
        sv.push("a", P, f / fps)
        out.append(sv.tick()["a"].positions[sv.in_idx[keep]] - X[f, keep])
    return np.delete(np.array(out), root, axis=1)


def test_the_body_lands_on_the_observed_joints_when_the_root_is_a_stand_in(pack_motion, monkeypatch):
    pack = modelpack.load("default")  # a trained denoiser: the torso it guesses is close, but not where the joints are
    X = pack_motion.positions()[:, 1:] / 100.0  # metres, the pack's input joints
    landed = _run(pack, X, pack_motion.fps, "numpy")
    assert np.abs(landed.mean(1)).max() < 1e-3  # no mean miss left, in any frame
    if importlib.util.find_spec("numba") is not None:
        np.testing.assert_allclose(_run(pack, X, pack_motion.fps, "numba"), landed, atol=2e-6)
    monkeypatch.setattr(numpath, "_land_root", lambda sv, land, M, tgt, root_pos, X: (root_pos, X))
    carried = _run(pack, X, pack_motion.fps, "numpy")
    assert np.linalg.norm(carried.mean(1), axis=-1).mean() > 0.01  # without it: a centimetre or more, every joint
    assert np.linalg.norm(landed, axis=-1).mean() < np.linalg.norm(carried, axis=-1).mean()
