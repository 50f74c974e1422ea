"""rtik.video.landmarks (numpy only, no estimator): root translation from a pinhole projection of known points,
smoothing, frames with no person held or cut, the floor, the npz that ``rtik solve`` reads back."""

from __future__ import annotations

import numpy as np
import pytest

from rtik.errors import InputError
from rtik.formats.layouts import MEDIAPIPE33
from rtik.formats.points import read_npz
from rtik.video.landmarks import (
    FEET,
    HIPS,
    camera_translation,
    focal_px,
    held_indices,
    save,
    smooth,
    solver_input,
    stack,
)

K = len(MEDIAPIPE33)
SIZE = (640, 480)


def body(rng) -> np.ndarray:
    """A hip-centred point cloud the size of a person, camera axes (y down): feet about 0.9 m below the hips."""
    pts = rng.uniform([-0.25, -0.7, -0.15], [0.25, 0.9, 0.15], (K, 3))
    pts[list(HIPS)] = [[0.1, 0.0, 0.0], [-0.1, 0.0, 0.0]]
    pts[list(FEET)] = [[0.1, 0.9, 0.05], [-0.1, 0.9, 0.05], [0.1, 0.88, -0.12], [-0.1, 0.88, -0.12]]
    return pts


def project(world, T, fov=60.0, size=SIZE):
    """Pixels of ``world (K, 3) + T`` through a pinhole camera (principal point at the centre)."""
    f = focal_px(size[0], fov)
    X = world + T
    return np.stack([f * X[:, 0] / X[:, 2] + size[0] / 2, f * X[:, 1] / X[:, 2] + size[1] / 2], axis=-1)


def test_translation_of_a_projected_body_is_recovered_exactly():
    rng = np.random.default_rng(0)
    Ts = np.array([[0.0, 0.0, 3.0], [0.8, -0.3, 4.5], [-1.2, 0.4, 2.2]])
    world = np.stack([body(rng) for _ in Ts])
    image = np.stack([project(w, T) for w, T in zip(world, Ts, strict=True)])
    got = camera_translation(world, image, np.ones((3, K)), SIZE, 60.0)
    np.testing.assert_allclose(got, Ts, atol=1e-9)
    # assuming a wider field of view (a shorter focal length) than the camera's puts the body closer
    wide = camera_translation(world, image, np.ones((3, K)), SIZE, 90.0)
    assert (wide[:, 2] < 0.7 * Ts[:, 2]).all()


def test_translation_ignores_unweighted_landmarks_and_needs_three():
    rng = np.random.default_rng(1)
    world, T = body(rng), np.array([0.3, 0.1, 3.0])
    image = project(world, T)
    image[:10] += 80.0  # wrong, but weighted 0
    w = np.ones(K)
    w[:10] = 0.0
    np.testing.assert_allclose(camera_translation(world[None], image[None], w[None], SIZE, 60.0)[0], T, atol=1e-9)
    w[:] = 0.0
    w[:2] = 1.0
    assert np.isnan(camera_translation(world[None], image[None], w[None], SIZE, 60.0)).all()
    with pytest.raises(InputError, match="field of view"):
        focal_px(640, 0.0)


def test_smooth_averages_within_runs_and_keeps_gaps():
    x = np.array([[0.0], [3.0], [6.0], [np.nan], [10.0], [10.0]])
    out = smooth(x, 3)
    np.testing.assert_allclose(out[:3, 0], [1.5, 3.0, 4.5])
    assert np.isnan(out[3, 0])
    np.testing.assert_allclose(out[4:, 0], [10.0, 10.0])
    np.testing.assert_array_equal(smooth(x, 1), x)


def test_held_indices_repeat_the_last_seen_frame():
    np.testing.assert_array_equal(held_indices([False, True, True, False, False, True]), [1, 1, 2, 2, 2, 5])
    with pytest.raises(InputError, match="no person found in any of the 3 frames"):
        held_indices([False, False, False])


def _track(n=8, empty=(3, 4), T=(0.0, 0.0, 3.0), fps=30.0):
    rng = np.random.default_rng(2)
    frames = []
    for t in range(n):
        if t in empty:
            frames.append(None)
            continue
        w = body(rng).astype(np.float32)
        Tt = np.array(T) + [0.05 * t, 0.0, 0.0]
        vis = np.ones(K, np.float32)
        vis[0] = 0.2  # the nose barely visible
        vis[HIPS[0]] = 0.1  # the hips are kept anyway
        frames.append((w, project(w, Tt).astype(np.float32), vis))
    return stack(frames, fps, SIZE)


def test_solver_input_holds_gaps_and_stands_on_the_floor():
    tr = _track()
    s = solver_input(tr, gaps="hold", root="camera", smooth_s=0.0)
    assert s.positions.shape == (8, K, 3) and s.mask.shape == (8, K)
    np.testing.assert_array_equal(s.frames, np.arange(8))
    np.testing.assert_array_equal(s.source, [0, 1, 2, 2, 2, 5, 6, 7])
    np.testing.assert_array_equal(s.held, [0, 0, 0, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(s.positions[3], s.positions[2])
    assert not s.mask[:, 0].any() and s.mask[:, list(HIPS)].all() and s.mask[:, 1:].all()
    # Y up: the feet (0.9 m below the hips in camera axes) are on the floor, the hips about 0.9 m above it
    hips = s.positions[:, list(HIPS)].mean(1)
    np.testing.assert_allclose(hips[0], [0.0, 0.9, 0.0], atol=0.03)
    assert np.percentile(s.positions[:, list(FEET), 1].min(1), 5) == pytest.approx(0.0, abs=1e-9)
    # the body moves 5 cm right per frame in the camera's view, and the translation follows it
    np.testing.assert_allclose(np.diff(hips[[0, 1, 2, 5, 6, 7], 0])[[0, 1, 3, 4]], 0.05, atol=1e-6)


def test_solver_input_cut_and_fixed_root():
    tr = _track()
    s = solver_input(tr, gaps="cut", root="fixed")
    np.testing.assert_array_equal(s.frames, [0, 1, 2, 5, 6, 7])
    np.testing.assert_array_equal(s.source, s.frames)
    hips = s.positions[:, list(HIPS)].mean(1)
    np.testing.assert_allclose(hips[:, [0, 2]], 0.0, atol=1e-6)  # no translation: the hips stay put
    with pytest.raises(InputError, match="unknown gap handling"):
        solver_input(tr, gaps="fade")
    with pytest.raises(InputError, match="unknown root"):
        solver_input(tr, root="gps")


def test_track_checks_its_arrays():
    tr = _track()
    with pytest.raises(InputError, match="disagree"):
        type(tr)(tr.world[:-1], tr.image, tr.visibility, tr.detected, 30.0, SIZE)
    with pytest.raises(InputError, match="fps"):
        type(tr)(tr.world, tr.image, tr.visibility, tr.detected, 0.0, SIZE)


def test_saved_landmarks_read_back_as_rtik_solve_reads_them(tmp_path):
    tr = _track()
    s = solver_input(tr)
    save(tr, tmp_path / "lm.npz", s)
    clip = read_npz(tmp_path / "lm.npz")
    assert clip.joints == MEDIAPIPE33 and clip.fps == 30.0 and clip.units == "m"
    np.testing.assert_allclose(clip.positions, s.positions, atol=1e-6)
    np.testing.assert_array_equal(clip.mask, s.mask)
    with np.load(tmp_path / "lm.npz") as z:
        np.testing.assert_array_equal(z["detected"], tr.detected)
        np.testing.assert_array_equal(z["source"], s.source)
