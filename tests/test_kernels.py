"""The compiled kernels compute exactly what the numpy reference path computes, in every branch of the solve."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import steppack

from rtik.errors import InputError
from rtik.formats import bvh
from rtik.solve.solver import Solver, SolverOptions

pytestmark = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba is not installed")


@pytest.fixture(scope="module")
def clip():
    m = bvh.read(steppack.mocap_sample())
    return m.positions()[:90, 1:] / 100.0, m.fps  # (F, 21, 3) metres, the model's input joints


def _script(X, fps):
    """Five streams through every branch (leaves half-way to the mean pose): clean, masked joints, noise, a
    teleport, spikes, a missing root, a gap, a locked calibration, a stream absent from some ticks (batches of changing
    size) and centimetre units."""
    rng = np.random.default_rng(7)
    F, Ji = X.shape[:2]
    ticks = []
    for f in range(F):
        frames = {}
        for i in range(5):
            if i == 4 and f % 5 == 2:
                continue  # not every stream has a frame every tick
            P = X[(f + 13 * i) % F] + rng.normal(0.0, 0.01 * (i % 3), (Ji, 3))
            m = None
            if i in (1, 3) and f > 2:
                m = rng.random(Ji) > 0.25
                m[0] = f % 4 != 0  # the root is missing now and then
            if i == 2 and f == 20:
                P = P + 5.0  # teleport
            if i == 0 and f in (38, 39, 43):
                P = P.copy()
                P[7 + f % 2] += 0.15  # a spike: one joint 15 cm off, for one frame or two
            ts = f / fps + (1.0 if i == 4 and f > 30 else 0.0)  # a gap
            scale = 100.0 if i == 3 else 1.0
            frames[f"s{i}"] = (P * scale, ts, m)
        ticks.append(frames)
    return ticks


def _run(pack, ticks, kernels, X):
    s = Solver(pack, options=SolverOptions(kernels=kernels, leaf_prior=0.5))
    assert s.kernels == kernels
    for i in range(5):
        s.open_stream(f"s{i}", units="cm" if i == 3 else "m")
    s.calibrate("s2", X[:30])  # locked
    out = []
    for frames in ticks:
        for name, (P, ts, m) in frames.items():
            s.push(name, P, ts, m)
        out.append(s.tick())
    info = {n: (s.stream(n).resets, s.stream(n).frames) for n in s.streams}
    blen = {n: s.calibrate(n, lock=False) for n in s.streams}
    s.close()
    return out, info, blen


@pytest.mark.parametrize("hinges", [False, True, "twists"], ids=["no-hinges", "hinges", "hinges-and-twists"])
def test_numba_kernels_equal_the_numpy_reference(pack, clip, hinges):
    X, fps = clip
    if hinges == "twists":
        pack = steppack.twisted(pack)
        assert len(pack.twist_prior) == 13 and len(pack.hinges) == 4
    elif hinges:
        pack = steppack.hinged(pack)
        assert len(pack.hinges) == 4
    ticks = _script(X, fps)
    fast, info_f, blen_f = _run(pack, ticks, "numba", X)
    ref, info_r, blen_r = _run(pack, ticks, "numpy", X)
    assert info_f == info_r
    assert sum(r for r, _ in info_r.values()) >= 3  # the script did reset streams (teleport, gap)
    for n in blen_r:
        np.testing.assert_allclose(blen_f[n], blen_r[n], rtol=0, atol=1e-12)
    for a, b in zip(fast, ref, strict=True):
        assert a.keys() == b.keys()
        for n in a:
            x, y = a[n], b[n]
            assert (x.seq, x.timestamp, x.reset) == (y.seq, y.timestamp, y.reset)
            np.testing.assert_allclose(x.local_quats, y.local_quats, rtol=0, atol=2e-6)
            np.testing.assert_allclose(x.positions, y.positions, rtol=0, atol=2e-6)
            np.testing.assert_allclose(x.root_pos, y.root_pos, rtol=0, atol=2e-6)
            assert x.noise == pytest.approx(y.noise, rel=1e-9, abs=1e-12)


def test_held_gaps_follow_each_streams_own_layout(pack, clip):
    """Two streams in one batch, one of a rig without Spine and Neck (its chest holds its place from the hips), one
    of the full layout, joints and the root dropping out and spikes: the compiled and numpy paths agree."""
    X, fps = clip
    names = list(pack.input_joints)
    partial = [n for n in names if n not in ("Spine", "Neck")]
    keep = [names.index(n) for n in partial]
    out = {}
    for kernels in ("numba", "numpy"):
        rng = np.random.default_rng(11)  # the same masks for both
        s = Solver(pack, options=SolverOptions(kernels=kernels))
        s.open_stream("full")
        s.open_stream("rig", layout=partial)
        res = []
        for f in range(len(X)):
            m = rng.random(len(names)) > 0.3 if f > 3 else np.ones(len(names), bool)
            P = X[f].copy()
            if f == 30:
                P[names.index("LowerLeg_L")] += 0.12
            s.push("full", P, f / fps, m)
            s.push("rig", P[keep], f / fps, m[keep])
            res.append(s.tick())
        out[kernels] = res
        assert s._gap_anc[s._get("rig").slot][names.index("Chest")] == names.index("Hips")
        s.close()
    for a, b in zip(out["numba"], out["numpy"], strict=True):
        for n in ("full", "rig"):
            np.testing.assert_allclose(a[n].positions, b[n].positions, rtol=0, atol=2e-6)
            np.testing.assert_allclose(a[n].local_quats, b[n].local_quats, rtol=0, atol=2e-6)


def test_noise_estimate_does_not_depend_on_the_batch(pack, clip):
    """A stream's result is the same whether it is solved alone or beside a masked, a locked and a noisy stream."""
    X, fps = clip
    for kernels in ("numba", "numpy"):
        alone = Solver(pack, options=SolverOptions(kernels=kernels))
        crowd = Solver(pack, options=SolverOptions(kernels=kernels))
        alone.open_stream("a")
        for n in ("a", "masked", "locked"):
            crowd.open_stream(n)
        crowd.calibrate("locked", X[:20])
        rng = np.random.default_rng(3)
        for f in range(30):
            P = X[f] + rng.normal(0.0, 0.005, X[f].shape)
            alone.push("a", P, f / fps)
            crowd.push("a", P, f / fps)
            crowd.push("masked", X[f], f / fps, np.arange(X.shape[1]) % 3 != 1)
            crowd.push("locked", X[f] + 0.01, f / fps)
            ra, rc = alone.tick()["a"], crowd.tick()["a"]
            assert ra.noise == pytest.approx(rc.noise, rel=1e-9, abs=1e-12), kernels
            np.testing.assert_allclose(ra.local_quats, rc.local_quats, rtol=0, atol=2e-6)


def test_kernel_choice_is_checked(pack, monkeypatch):
    with pytest.raises(InputError, match="valid: auto, numba, numpy"):
        Solver(pack, options=SolverOptions(kernels="fortran"))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numba" else real(name, *a))
    with pytest.raises(InputError, match="pip install numba"):
        Solver(pack, options=SolverOptions(kernels="numba"))
    assert Solver(pack).kernels == "numpy"  # auto falls back to numpy


def test_usual_frames_take_the_compiled_push_and_bad_ones_still_name_the_problem(pack, clip, monkeypatch):
    from rtik.formats import layouts

    X, fps = clip
    calls = []
    real = layouts.LayoutMap.apply
    monkeypatch.setattr(layouts.LayoutMap, "apply", lambda self, P, m: calls.append(1) or real(self, P, m))
    s = Solver(pack, options=SolverOptions(kernels="numba"))
    s.open_stream("a", units="cm")
    for f in range(5):
        m = np.ones(X.shape[1], np.uint8) if f % 2 else None  # masks of any dtype
        s.push("a", X[f] * 100.0, f / fps, m)
        assert s.tick()["a"].seq == f
    assert calls == []  # the numpy validation never ran
    bad = X[5] * 100.0
    bad[3] = np.nan
    with pytest.raises(InputError, match="NaN or inf at"):
        s.push("a", bad, 5 / fps)
    with pytest.raises(InputError, match="degenerate frame"):
        s.push("a", np.zeros_like(bad) + 1.0, 5 / fps)
    assert s.stream("a").rejected == 2 and len(calls) == 1  # the NaN is named before the layout is applied
    s.push("a", X[5] * 100.0, 5 / fps)  # a good frame after bad ones is queued as usual
    assert s.stream("a").bad_run == 0 and s.tick()["a"].seq == 5


def test_kernels_that_cannot_compile_fall_back_to_numpy_unless_asked_for(pack, monkeypatch, caplog):
    from rtik.solve import compiled

    def broken(sv):
        raise RuntimeError("cannot cache function: no locator available")

    monkeypatch.setattr(compiled, "_compile", broken)
    with caplog.at_level("WARNING", logger="rtik.solve.solver"):
        s = Solver(pack)
    assert s.kernels == "numpy" and "using the numpy path" in caplog.text
    with pytest.raises(InputError, match="not usable here: cannot cache function"):
        Solver(pack, options=SolverOptions(kernels="numba"))
