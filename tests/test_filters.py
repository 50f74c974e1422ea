import math

import numpy as np
import pytest

from rtik.errors import InputError
from rtik.solve.filters import OneEuroConfig, OneEuroFilter, hold_last, one_euro


def _reference_scalar(xs, rate, min_cutoff, beta, d_cutoff):
    """Casiez et al.'s scalar One Euro filter, written straight from the paper."""

    def alpha(cutoff):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau * rate)

    out, x_prev, dx_prev = [], None, 0.0
    for x in xs:
        if x_prev is None:
            x_hat = x
        else:
            dx = (x - x_prev) * rate
            dx_prev = dx_prev + alpha(d_cutoff) * (dx - dx_prev)
            a = alpha(min_cutoff + beta * abs(dx_prev))
            x_hat = x_prev + a * (x - x_prev)
        out.append(x_hat)
        x_prev = x_hat
    return np.array(out)


def test_matches_scalar_reference():
    rng = np.random.default_rng(0)
    P = np.cumsum(rng.normal(0, 0.01, size=(200, 4, 3)), axis=0)
    out = one_euro(P, 30.0, config=OneEuroConfig(1.0, 0.7, 1.5))
    for j in range(4):
        for k in range(3):
            ref = _reference_scalar(P[:, j, k], 30.0, 1.0, 0.7, 1.5)
            np.testing.assert_allclose(out[:, j, k], ref, rtol=1e-12, atol=1e-12)


def test_constant_passes_and_noise_is_reduced():
    rng = np.random.default_rng(1)
    P = np.ones((300, 5, 3)) * [0.1, 1.0, -0.3]
    np.testing.assert_allclose(one_euro(P, 30.0), P)
    noisy = P + rng.normal(0, 0.01, P.shape)
    out = one_euro(noisy, 30.0)
    assert np.std(out[50:] - P[50:]) < 0.5 * np.std(noisy[50:] - P[50:])


def test_causal():
    rng = np.random.default_rng(2)
    P = rng.normal(size=(100, 3, 3))
    Q = P.copy()
    Q[60:] += 5.0
    np.testing.assert_array_equal(one_euro(P, 30.0)[:60], one_euro(Q, 30.0)[:60])


def test_beta_zero_is_exponential_lowpass():
    fps, fc = 30.0, 2.0
    a = 1.0 / (1.0 + fps / (2 * math.pi * fc))
    P = np.zeros((20, 1, 3))
    P[1:] = 1.0  # a step
    out = one_euro(P, fps, config=OneEuroConfig(fc, 0.0, 1.0))
    expected = 1.0 - (1.0 - a) ** np.arange(20)
    expected[0] = 0.0
    np.testing.assert_allclose(out[:, 0, 0], expected, rtol=1e-12)


def test_missing_samples_hold_estimate_and_nan_before_first():
    f = OneEuroFilter(2, 30.0)
    out = f(np.array([[np.nan] * 3, [1.0, 2.0, 3.0]]))
    assert np.isnan(out[0]).all() and np.allclose(out[1], [1, 2, 3])
    out = f(np.array([[0.0, 0.0, 0.0], [9.0, 9.0, 9.0]]), mask=np.array([True, False]))
    assert np.allclose(out[0], 0.0) and np.allclose(out[1], [1, 2, 3])  # masked: held
    assert f.gap[1] == 2.0
    f.reset()
    assert np.isnan(f.x).all()


def test_hold_last():
    P = np.arange(5 * 3 * 3, dtype=float).reshape(5, 3, 3)
    mask = np.ones((5, 3), bool)
    mask[2:4, 1] = False
    mask[:2, 2] = False
    out = hold_last(P, mask)
    np.testing.assert_array_equal(out[2, 1], P[1, 1])
    np.testing.assert_array_equal(out[3, 1], P[1, 1])
    np.testing.assert_array_equal(out[4, 1], P[4, 1])
    assert np.isnan(out[:2, 2]).all()
    out = hold_last(P, mask, parents=np.array([-1, 0, 1]))
    np.testing.assert_array_equal(out[:2, 2], out[:2, 1])  # not seen yet: at its parent


def test_bad_input():
    with pytest.raises(InputError, match="min_cutoff"):
        OneEuroConfig(min_cutoff=0.0)
    with pytest.raises(InputError, match="fps"):
        OneEuroFilter(3, 0.0)
    with pytest.raises(InputError, match=r"expected \(3, 3\)"):
        OneEuroFilter(3, 30.0)(np.zeros((2, 3)))
