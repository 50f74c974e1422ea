import os
from pathlib import Path

import numpy as np
import pytest

from rtik.errors import InputError
from rtik.eval import baselines, conditions, metrics
from rtik.formats import bvh
from rtik.geometry import kinematics as kin

MOCAP = Path(__file__).resolve().parents[1].parent / "shared" / "mocap"
if not MOCAP.is_dir():
    MOCAP = Path(os.environ.get("RTIK_MOCAP", MOCAP))
SAMPLE = MOCAP / "sample"


def _load(name):
    path = SAMPLE / name
    if not path.is_file():
        pytest.skip(f"mocap sample not found at {path}")
    m = bvh.read(path)
    return m.skeleton.scaled(0.01), m.local_quats(), m.positions() * 0.01, m.fps


@pytest.fixture(scope="module")
def walk():
    return _load("dataset-2_walk_active_020.bvh")


@pytest.fixture(scope="module")
def prior():
    acc = baselines.PriorAccumulator(22)
    for name in ("dataset-2_run_feminine_030.bvh", "dataset-2_wave-left-hand_elderly_020.bvh"):
        acc.add(_load(name)[1])
    return acc.result()


def test_prior_accumulator_matches_mean_local_rotations(walk):
    _, q, _, _ = walk
    acc = baselines.PriorAccumulator(22)
    acc.add(q[:50])
    acc.add(q[50:])
    np.testing.assert_allclose(acc.result(), kin.mean_local_rotations(q), atol=1e-9)
    assert acc.frames == len(q)


def test_clean_positions_are_reproduced(walk, prior):
    skel, q, p, fps = walk
    for method in ("analytic", "analytic_prior"):
        sol = baselines.solve(method, skel, p, fps, prior_local=prior)
        s = metrics.clip_errors(skel, sol.local_quats, sol.positions, q, p, fps).summary()
        assert s["mpjpe_mm"] < 0.5, method
        assert s["jerk_ratio"] == pytest.approx(1.0, abs=0.01)
    # the prior fixes most of the twist the zero-twist solver gets wrong; determined joints are exact
    a = metrics.clip_errors(skel, *_solved(skel, p, fps, "analytic", prior), q, p, fps).summary()
    b = metrics.clip_errors(skel, *_solved(skel, p, fps, "analytic_prior", prior), q, p, fps).summary()
    assert b["rot_all_deg"] < 0.5 * a["rot_all_deg"]
    assert b["rot_determined_deg"] < 2.0


def _solved(skel, p, fps, method, prior):
    sol = baselines.solve(method, skel, p, fps, prior_local=prior)
    return sol.local_quats, sol.positions


def test_calibration_comes_from_the_input(walk):
    skel, _, p, fps = walk
    sol = baselines.solve("analytic", skel, p * 1.1, fps)
    np.testing.assert_allclose(sol.skeleton.bone_lengths()[2:], 1.1 * skel.bone_lengths()[2:], rtol=1e-3)
    np.testing.assert_allclose(sol.positions, p * 1.1, atol=1e-3)


def test_one_euro_smooths_noise(walk, prior):
    skel, q, p, fps = walk
    noisy, _ = conditions.apply_condition("noise10", p, fps, np.random.default_rng(0))
    noisy[:, 0] = p[:, 0]  # the dummy root stays where it is
    raw = baselines.solve("analytic_prior", skel, noisy, fps, prior_local=prior)
    smooth = baselines.solve("analytic_prior_oneeuro", skel, noisy, fps, prior_local=prior)
    e_raw = metrics.clip_errors(skel, raw.local_quats, raw.positions, q, p, fps).summary()
    e_smooth = metrics.clip_errors(skel, smooth.local_quats, smooth.positions, q, p, fps).summary()
    assert e_smooth["jerk_ratio"] < 0.5 * e_raw["jerk_ratio"]
    assert 15.0 < e_raw["mpjpe_mm"] < 25.0  # ~ sqrt(3) * 10 mm, times the share of bone directions kept


def test_occlusion_is_filled_causally(walk, prior):
    skel, q, p, fps = walk
    inp, mask = conditions.occlude(p, fps, np.random.default_rng(1), rate=1.0, joints=np.arange(1, 22))
    sol = baselines.solve("analytic_prior", skel, inp, fps, mask, prior)
    assert np.all(np.isfinite(sol.local_quats)) and np.all(np.isfinite(sol.positions))
    full = baselines.solve("analytic_prior", skel, p, fps, prior_local=prior)
    # frames before the first gap are solved as from complete input
    first_gap = np.nonzero(~mask.all(axis=1))[0][0]
    np.testing.assert_allclose(sol.positions[:first_gap], full.positions[:first_gap], atol=2e-3)


def test_bad_input(walk, prior):
    skel, _, p, fps = walk
    with pytest.raises(InputError, match="valid baselines: analytic, analytic_prior"):
        baselines.solve("magic", skel, p, fps)
    with pytest.raises(InputError, match="needs prior_local"):
        baselines.solve("analytic_prior", skel, p, fps)
    with pytest.raises(InputError, match=r"expected \(F, 22, 3\)"):
        baselines.solve("analytic", skel, p[:, :5], fps)
    mask = np.ones(p.shape[:2], bool)
    mask[:, 9] = False
    with pytest.raises(InputError, match="never observed in this clip: Hand_L"):
        baselines.solve("analytic", skel, p, fps, mask)
    with pytest.raises(InputError, match="no training frames"):
        baselines.PriorAccumulator(22).result()
