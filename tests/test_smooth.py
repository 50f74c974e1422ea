"""The solver's noise-gated output smoothing: clean input passes untouched, noisy input is smoothed, resets start
the filter over, and its state travels with a stream's snapshot."""

from __future__ import annotations

import numpy as np
import pytest

from rtik.geometry import rotations as rot
from rtik.solve.smooth import MAX_STAGES, SmoothConfig, smooth


def _run(q, root, noise, fps=60.0, cfg=None):
    cfg = cfg or SmoothConfig()
    F, J = q.shape[:2]
    state = (np.zeros((1, MAX_STAGES, J, 4)), np.zeros((1, J, 4)), np.zeros((1, MAX_STAGES, 3)), np.zeros((1, 3)))
    outq, outr = [], []
    for f in range(F):
        qo, ro, *state = smooth(cfg, q[f][None], root[f][None], np.array([noise]), np.array([1 / fps]),
                                np.array([f == 0]), state)  # fmt: skip
        outq.append(qo[0])
        outr.append(ro[0])
    return np.array(outq), np.array(outr)


def _jitter(q, root, rng, deg=2.0, mm=10.0):
    aa = rng.normal(0, np.radians(deg), q.shape[:-1] + (3,))
    return rot.quat_mul(q, rot.axis_angle_to_quat(aa)), root + rng.normal(0, mm / 1000, root.shape)


def _third_difference(x):
    return np.abs(x[3:] - 3 * x[2:-1] + 3 * x[1:-2] - x[:-3]).mean()


def test_clean_input_passes_untouched():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 2, 120)
    q = rot.axis_angle_to_quat(np.stack([np.sin(3 * t), 0.5 * t, np.cos(2 * t)], -1)[:, None].repeat(3, 1))
    root = np.stack([t, np.sin(t), 0 * t], -1)
    qn, rn = _jitter(q, root, rng)
    oq, orr = _run(qn, rn, noise=0.0)  # the stream's noise estimate is zero on clean input: the gate is shut
    np.testing.assert_allclose(np.abs(np.einsum("fjc,fjc->fj", oq, qn)), 1.0, atol=1e-9)
    np.testing.assert_allclose(orr, rn, atol=1e-12)


def test_noisy_input_is_smoothed_and_follows_the_motion():
    rng = np.random.default_rng(1)
    t = np.linspace(0, 4, 240)
    q = rot.axis_angle_to_quat(np.stack([0.8 * np.sin(2 * t), 0 * t, 0 * t], -1)[:, None])
    root = np.stack([0.5 * t, 0 * t, 0 * t], -1)
    qn, rn = _jitter(q, root, rng)
    oq, orr = _run(qn, rn, noise=0.01)
    for raw, out in ((qn, oq), (rn, orr)):
        assert _third_difference(out) < 0.5 * _third_difference(raw)  # jitter at least halved
    err_raw = np.degrees(rot.quat_geodesic(qn[60:], q[60:])).mean()
    err_out = np.degrees(rot.quat_geodesic(oq[60:], q[60:])).mean()
    assert err_out < err_raw  # closer to the true motion than the noisy input, lag included
    assert np.abs(orr[60:, 0] - root[60:, 0]).mean() < 0.01  # the root keeps up with a 0.5 m/s walk


def test_a_fresh_stream_starts_over_at_the_raw_pose():
    J = 2
    q = rot.axis_angle_to_quat(np.tile([0.0, 1.0, 0.0], (1, J, 1)))
    far = (
        np.zeros((1, MAX_STAGES, J, 4)) + [0, 0, 0, 1.0],
        np.ones((1, J, 4)),
        np.full((1, MAX_STAGES, 3), 9.0),
        np.ones((1, 3)),
    )
    qo, ro, sq, sdq, sr, sdr = smooth(SmoothConfig(), q, np.zeros((1, 3)), np.array([0.05]), np.array([0.01]),
                                      np.array([True]), far)  # fmt: skip
    np.testing.assert_allclose(qo, q, atol=1e-12)
    np.testing.assert_allclose(ro, 0.0)
    assert not sdq.any() and not sdr.any()
    np.testing.assert_allclose(sq[:, :2], np.repeat(q[:, None], 2, 1), atol=1e-12)  # every stage in use restarts
    np.testing.assert_allclose(sr[:, :2], 0.0)


@pytest.mark.parametrize("stages", [1, 2, 3])
def test_compiled_kernel_equals_the_numpy_filter(stages):
    """rtik.solve.kernels.smooth (in place on the solver's slot arrays) gives what smooth() gives, frame after
    frame, for a noisy stream, a clean one (gate shut: raw pose bit for bit) and one that restarts."""
    kernels = pytest.importorskip("rtik.solve.kernels")
    from rtik.solve.smooth import config_array

    rng = np.random.default_rng(3)
    F, J, cfg = 90, 5, SmoothConfig(stages=stages)
    t = np.linspace(0, 1.5, F)
    q = rot.axis_angle_to_quat(np.stack([np.sin(2 * t), 0.3 * t, np.cos(t)], -1)[:, None].repeat(J, 1))
    root = np.stack([t, 0 * t, np.sin(t)], -1)
    qs, rs = zip(*(_jitter(q, root, rng) for _ in range(3)), strict=True)
    qs, rs = np.stack(qs, 1), np.stack(rs, 1)  # (F, 3 streams, J, 4), (F, 3, 3)
    qs = rot.quat_canonical(qs)
    noise = np.array([0.01, 0.0, 0.004])
    slots = np.array([4, 0, 2])
    N = 6
    arrays = [np.zeros((N, MAX_STAGES, J, 4)), np.zeros((N, J, 4)), np.zeros((N, MAX_STAGES, 3)), np.zeros((N, 3))]
    state = [np.zeros((3, MAX_STAGES, J, 4)), np.zeros((3, J, 4)), np.zeros((3, MAX_STAGES, 3)), np.zeros((3, 3))]
    for f in range(F):
        fresh = np.array([f == 0, f == 0, f in (0, 40)])
        dt = np.full(3, 1 / 60)
        qo, ro, *state = smooth(cfg, qs[f], rs[f], noise, dt, fresh, state)
        qk, rk = qs[f].astype(np.float32), rs[f].astype(np.float32)
        opened = kernels.smooth(qk, rk, noise, dt, fresh, slots, *arrays, config_array(cfg))
        assert opened.tolist() == [True, False, True]
        np.testing.assert_allclose(qk, qo, atol=2e-6)
        np.testing.assert_allclose(rk, ro, atol=2e-6)
        np.testing.assert_array_equal(qk[1], qs[f, 1].astype(np.float32))  # shut: the raw pose, untouched
        np.testing.assert_allclose(arrays[0][slots], state[0], atol=2e-6)


def test_stages_cut_jitter_for_about_the_same_lag():
    """Two low-pass stages at twice the cutoff leave much less jerk than one stage and follow a slow motion about
    as closely (docs/solver.md "Output smoothing")."""
    rng = np.random.default_rng(7)
    t = np.linspace(0, 4, 480)  # 120 Hz
    q = rot.axis_angle_to_quat(np.stack([0.6 * np.sin(1.5 * t), 0.2 * np.cos(t), 0 * t], -1)[:, None])
    root = np.stack([0.3 * np.sin(t), 0 * t, 0 * t], -1)
    qn, rn = _jitter(q, root, rng, deg=1.0, mm=10.0)
    outs = {n: _run(qn, rn, noise=0.01, fps=120.0, cfg=SmoothConfig(stages=n)) for n in (1, 2)}
    jerk = {n: _third_difference(o[0]) for n, o in outs.items()}
    err = {n: np.degrees(rot.quat_geodesic(o[0][60:], q[60:])).mean() for n, o in outs.items()}
    rerr = {n: np.abs(o[1][60:] - root[60:]).mean() for n, o in outs.items()}
    assert jerk[2] < 0.5 * jerk[1], jerk
    assert err[2] < 1.35 * err[1] and rerr[2] < 1.35 * rerr[1], (err, rerr)


@pytest.mark.parametrize("stages", [0, 4, 1.5])
def test_stages_out_of_range_are_refused(stages):
    with pytest.raises(ValueError, match="stages"):
        SmoothConfig(stages=stages)
