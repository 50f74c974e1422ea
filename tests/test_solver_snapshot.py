"""A stream's state moved between solvers (Solver.export_stream / import_stream): the stream goes on exactly."""

from __future__ import annotations

import numpy as np
import pytest
import steppack

from rtik.errors import InputError
from rtik.formats import bvh
from rtik.solve.solver import Solver


@pytest.fixture(scope="module")
def clip():
    m = bvh.read(steppack.mocap_sample())
    return m.positions()[:90, 1:] / 100.0, m.fps  # (F, 21, 3) metres, the model's input joints


@pytest.mark.parametrize("kernels", ["numba", "numpy"])
def test_moved_stream_continues_exactly(pack, clip, kernels):
    from rtik.solve.solver import SolverOptions

    X, fps = clip
    opts = SolverOptions(kernels=kernels)
    a, b, ref = (Solver(pack, "onnx", opts) for _ in range(3))
    for s in (a, ref):
        s.open_stream("p", fps=fps)
        s.open_stream("other", fps=fps)  # a neighbour: the moved stream has another slot on the new solver
    b.open_stream("third", fps=fps)
    out_ref, out_moved = [], []
    for i in range(len(X)):
        for s in (a, ref):
            s.push("p", X[i], i / fps)
            s.push("other", X[-1 - i], i / fps)
        if i < 40:
            out_moved.append(a.tick()["p"])
        else:
            if i == 40:
                snap = a.export_stream("p")
                b.open_stream("p", fps=fps)
                b.import_stream("p", snap)
            b.push("p", X[i], i / fps)
            out_moved.append(b.tick()["p"])
        out_ref.append(ref.tick()["p"])
    for r, m in zip(out_ref, out_moved, strict=True):
        assert (r.seq, r.reset) == (m.seq, m.reset)
        np.testing.assert_allclose(m.local_quats, r.local_quats, atol=1e-5)
        np.testing.assert_allclose(m.positions, r.positions, atol=1e-5)
    assert b.stream("p").frames == ref.stream("p").frames == len(X)
    np.testing.assert_allclose(b.calibrate("p", lock=False), ref.calibrate("p", lock=False), atol=1e-9)


def test_snapshot_is_a_copy_and_checked(pack, clip):
    X, fps = clip
    s = Solver(pack)
    s.open_stream("p", fps=fps)
    s.push("p", X[0], 0.0)
    s.tick()
    snap = s.export_stream("p")
    state = snap["arrays"]["state"].copy()
    s.push("p", X[1], 1 / fps)
    s.tick()
    np.testing.assert_array_equal(snap["arrays"]["state"], state)  # later ticks do not change a snapshot
    bad = {**snap, "arrays": {**snap["arrays"], "state": np.zeros(3, np.float32)}}
    with pytest.raises(InputError, match="shape"):
        s.import_stream("p", bad)
    with pytest.raises(InputError, match="fields"):
        s.import_stream("p", {**snap, "arrays": {"state": state}})
    with pytest.raises(InputError, match="no stream"):
        s.import_stream("nobody", snap)
