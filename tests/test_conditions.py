import numpy as np
import pytest

from rtik.errors import InputError
from rtik.eval import conditions as cond


def _pos(F=600, J=21, seed=0):
    return np.random.default_rng(seed).normal(size=(F, J, 3))


def test_clean_is_identity_and_full_mask():
    P = _pos()
    out, mask = cond.apply_condition("clean", P, 30.0, np.random.default_rng(0))
    np.testing.assert_array_equal(out, P)
    assert mask.all() and mask.shape == P.shape[:2]
    assert out is not P


def test_noise_sigma_and_determinism():
    P = _pos(F=2000)
    a, mask = cond.apply_condition("noise10", P, 30.0, np.random.default_rng(1))
    b, _ = cond.apply_condition("noise10", P, 30.0, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    d = a - P
    assert mask.all()
    assert abs(d.std() - 0.010) < 0.0003  # 126,000 samples: std error ~2e-5
    assert abs(d.mean()) < 0.0002


def test_noise_keeps_float32():
    P = _pos().astype(np.float32)
    assert cond.gaussian_noise(P, np.random.default_rng(0)).dtype == np.float32


def test_occlusion_spans_and_fraction():
    fps = 30.0
    P = _pos(F=3000)
    out, mask = cond.apply_condition("occlusion", P, fps, np.random.default_rng(2))
    assert mask[0].all()  # the first frame is complete
    assert np.isnan(out[~mask]).all() and np.array_equal(out[mask], P[mask])
    expected = 1 - np.exp(-cond.OCCLUSION_RATE * cond.OCCLUSION_SPAN)
    assert abs((~mask).mean() - expected) < 0.02
    # every missing run is at least one span (15 frames) long, unless cut by the clip's end
    n = int(round(cond.OCCLUSION_SPAN * fps))
    for j in range(mask.shape[1]):
        m = np.concatenate([[1], mask[:, j].astype(int), [1]])
        starts = np.nonzero(np.diff(m) == -1)[0]
        ends = np.nonzero(np.diff(m) == 1)[0]
        lengths = ends - starts
        assert np.all((lengths >= n) | (ends == len(mask)))


def test_occlusion_only_chosen_joints_and_fill():
    P = _pos(F=1000, J=5)
    out, mask = cond.occlude(P, 30.0, np.random.default_rng(3), rate=2.0, joints=[1, 3], fill=0.0)
    assert mask[:, [0, 2, 4]].all()
    assert not mask[:, 1].all() and not mask[:, 3].all()
    assert np.all(out[~mask] == 0.0)


def test_outliers_count_and_distance():
    P = _pos(F=1000)
    out, hit = cond.outliers(P, np.random.default_rng(4))
    assert hit.sum() == round(0.01 * P.shape[0] * P.shape[1])
    d = np.linalg.norm(out - P, axis=-1)
    np.testing.assert_allclose(d[hit], 0.10, rtol=1e-9)
    assert np.all(d[~hit] == 0)
    _, mask = cond.apply_condition("outliers", P, 30.0, np.random.default_rng(4))
    assert mask.all()


def test_outlier_directions_are_isotropic():
    v = cond.random_directions(np.random.default_rng(5), 20000)
    np.testing.assert_allclose(np.linalg.norm(v, axis=-1), 1.0)
    assert np.abs(v.mean(axis=0)).max() < 0.02


def test_input_not_modified():
    P = _pos()
    before = P.copy()
    for name in cond.CONDITIONS:
        cond.apply_condition(name, P, 30.0, np.random.default_rng(0))
    np.testing.assert_array_equal(P, before)


def test_bad_input_errors():
    with pytest.raises(InputError, match="valid conditions: clean, noise10"):
        cond.apply_condition("fog", _pos(), 30.0, np.random.default_rng(0))
    with pytest.raises(InputError, match=r"expected \(F, J, 3\)"):
        cond.apply_condition("clean", np.zeros((3, 4)), 30.0, np.random.default_rng(0))
    with pytest.raises(InputError, match="fps"):
        cond.occlude(_pos(), 0.0, np.random.default_rng(0))
    with pytest.raises(InputError, match="fraction"):
        cond.outliers(_pos(), np.random.default_rng(0), fraction=2.0)
    assert cond.parse_conditions("clean, noise10") == ("clean", "noise10")
    with pytest.raises(InputError, match="valid conditions"):
        cond.parse_conditions("clean,bogus")


def test_monocular_noise_is_deeper_along_one_horizontal_ray():
    rng = np.random.default_rng(0)
    P = np.zeros((4000, 3, 3))
    out, mask = cond.apply_condition("monocular", P, 30.0, rng)
    assert mask.all() and out.dtype == P.dtype
    d = out.reshape(-1, 3)
    cov = np.cov(d.T)
    w, v = np.linalg.eigh(cov)
    ray = v[:, -1]
    assert abs(ray[1]) < 0.05  # the deep axis is horizontal
    np.testing.assert_allclose(np.sqrt(w[-1]), np.hypot(0.015, 0.030), rtol=0.05)  # 15 mm and 30 mm more
    np.testing.assert_allclose(np.sqrt(w[:2]), 0.015, rtol=0.05)
    assert "monocular" in cond.parse_conditions("clean,monocular")
