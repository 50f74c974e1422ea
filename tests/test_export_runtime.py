"""The real network architecture, exported, through the runtime: ONNX Runtime must stay finite and agree with
the torch program on the inputs the solver actually builds (the root at the origin, masked joints at zero).

A regression guard: the dynamo ONNX exporter's optimiser drops ``x + eps`` for a tiny constant, so a norm floor
written that way turned the root's zero vectors into NaN in ONNX Runtime while torch stayed finite."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rtik.formats import bvh  # noqa: E402
from rtik.models import modelpack  # noqa: E402
from rtik.models.backends.base import open_backend  # noqa: E402
from rtik.solve.solver import solve_sequence  # noqa: E402


@pytest.fixture(scope="module")
def pack(tmp_path_factory, sample_clips):
    out = tmp_path_factory.mktemp("pack") / "random"
    cmd = [sys.executable, "-m", "train.export", "--random", "--out", str(out), "--hidden", "16", "--layers", "1",
           "--den-hidden", "16"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return modelpack.load(out)


@pytest.fixture(scope="module")
def clip(sample_clips):
    m = bvh.read(sample_clips[0])
    return m.positions()[:40, 1:] / 100.0, m.fps


def test_degenerate_inputs_stay_finite_and_match_torch(pack):
    onnx_b, torch_b = open_backend(pack, "onnx"), open_backend(pack, "torch")
    Ji, S = len(pack.input_joints), pack.state_size
    rng = np.random.default_rng(0)
    cases = {
        "all zero": (np.zeros((2, Ji, 3), np.float32), np.ones((2, Ji), np.float32)),
        "all masked": (np.zeros((2, Ji, 3), np.float32), np.zeros((2, Ji), np.float32)),
        "root at origin": (rng.normal(0, 0.2, (2, Ji, 3)).astype(np.float32), np.ones((2, Ji), np.float32)),
    }
    cases["root at origin"][0][:, 0] = 0.0
    for name, (pos, mask) in cases.items():
        state = np.zeros((2, S), np.float32)
        a = [o.copy() for o in onnx_b.step(pos, mask, state)]
        b = [o.copy() for o in torch_b.step(pos, mask, state)]
        for x, y in zip(a, b, strict=True):
            assert np.isfinite(x).all(), name
            np.testing.assert_allclose(x, y, atol=1e-4, err_msg=name)


def test_solver_never_falls_back_on_a_real_clip(pack, clip):
    X, fps = clip
    out = solve_sequence(pack, X, fps)
    assert out["reset"].sum() == 1  # the first frame only: the network output was finite on every frame
    assert np.linalg.norm(out["positions"][:, 1:] - X, axis=-1).max() < 1e-3
