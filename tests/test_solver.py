"""The multi-stream solver: exact positions on clean input, batching, per-stream isolation, resets, calibration."""

from __future__ import annotations

import numpy as np
import pytest
import steppack

from rtik.errors import InputError
from rtik.formats import bvh
from rtik.geometry import kinematics
from rtik.geometry import rotations as rot
from rtik.models import normalize
from rtik.models.backends.base import Backend, open_backend
from rtik.solve.solver import Solver, SolverOptions, solve_sequence


class Recording(Backend):
    """The real ONNX backend, counting calls and keeping the last inputs."""

    name = "recording"

    def __init__(self, pack):
        super().__init__(pack)
        self.inner = open_backend(pack, "onnx")
        self.calls, self.last = 0, None

    def step(self, pos, mask, state):
        self.calls += 1
        self.last = (pos.copy(), mask.copy(), state.copy())
        return self.inner.step(pos, mask, state)


class Misplacing(Backend):
    """The real ONNX backend whose denoiser puts one joint (the left hand) 20 cm (in body-size units) off."""

    name = "misplacing"

    def __init__(self, pack, joint="Hand_L"):
        super().__init__(pack)
        self.inner = open_backend(pack, "onnx")
        self.joint = list(pack.input_joints).index(joint)

    def step(self, pos, mask, state):
        r6, clean, state = self.inner.step(pos, mask, state)
        clean = clean.copy()
        clean[:, self.joint, 0] += 0.2
        return r6, clean, state


@pytest.fixture(scope="module")
def clip():
    m = bvh.read(steppack.mocap_sample())
    return m.positions()[:120, 1:] / 100.0, m.fps  # (F, 21, 3) metres, the model's input joints


@pytest.fixture
def solver(pack):
    s = Solver(pack, Recording(pack))
    yield s
    s.close()


def test_clean_clip_comes_back_exact(pack, clip):
    X, fps = clip
    out = solve_sequence(pack, X, fps)
    err = np.linalg.norm(out["positions"][:, 1:] - X, axis=-1)
    assert err.max() < 1e-4  # metres: refinement puts every joint on its observation
    assert out["local_quats"].dtype == np.float32 and out["local_quats"].shape == (len(X), 22, 4)
    np.testing.assert_allclose(np.linalg.norm(out["local_quats"], axis=-1), 1.0, atol=1e-5)
    assert out["reset"][0] and not out["reset"][1:].any()


def test_running_calibration_is_exact_on_rigid_input(pack, clip):
    X, fps = clip
    out = solve_sequence(pack, X, fps, calibrate=False)
    assert np.linalg.norm(out["positions"][:, 1:] - X, axis=-1).max() < 1e-4


def test_positions_are_fk_of_the_rotations(pack, clip, solver):
    X, fps = clip
    solver.open_stream("a")
    for i in range(5):
        solver.push("a", X[i], i / fps)
        r = solver.tick()["a"]
    skel = solver.stream_skeleton("a")
    P, _ = kinematics.forward_kinematics(skel, r.local_quats[None].astype(np.float64), r.root_pos[None])
    np.testing.assert_allclose(P[0], r.positions, atol=1e-5)


def test_units_and_timestamps(pack, clip, solver):
    X, fps = clip
    solver.open_stream("m", units="m")
    solver.open_stream("mm", units="mm")
    for i in range(3):
        solver.push("m", X[i], i / fps)
        solver.push("mm", X[i] * 1000, i / fps)
        res = solver.tick()
    np.testing.assert_allclose(res["m"].positions, res["mm"].positions, atol=1e-5)
    assert res["m"].timestamp == pytest.approx(2 / fps) and res["m"].seq == 2


def test_streams_batch_into_one_backend_call_and_match_solo(pack, clip, solver):
    X, fps = clip
    names = ["a", "b", "c"]
    for n in names:
        solver.open_stream(n)
    solo = Solver(pack)
    solo.open_stream("b")
    for i in range(10):
        calls = solver.backend.calls
        for k, n in enumerate(names):
            solver.push(n, X[i + 10 * k], i / fps)
        res = solver.tick()
        assert solver.backend.calls == calls + 1 and set(res) == set(names)
        solo.push("b", X[i + 10], i / fps)
        ref = solo.tick()["b"]
    np.testing.assert_allclose(res["b"].local_quats, ref.local_quats, atol=1e-5)
    assert solver.tick() == {}  # nothing new


def test_normalisation_matches_rtik_normalize(pack, clip, solver):
    X, fps = clip
    solver.open_stream("a")
    solver.calibrate("a", X)
    solver.push("a", X[7], 0.0)
    solver.tick()
    pos = solver.backend.last[0][0]
    names = list(pack.input_joints)
    L = kinematics.bone_lengths(pack.skeleton, np.concatenate([np.zeros((len(X), 1, 3)), X], axis=1))
    size = normalize.body_size(pack.norm, pack.skeleton.names, L)
    yaw, _ = normalize.heading(pack.norm, names, X[7])
    want = normalize.normalize(X[7], names.index("Hips"), yaw, size)
    np.testing.assert_allclose(pos, want, atol=1e-5)


def test_bad_frames_are_rejected_per_stream(pack, clip, solver):
    X, fps = clip
    solver.open_stream("good")
    solver.open_stream("bad")
    bad = X[0].copy()
    bad[8] = np.nan
    with pytest.raises(InputError, match="stream 'bad': NaN or inf at Hand_L"):
        solver.push("bad", bad, 0.0)
    with pytest.raises(InputError, match=r"frame has shape \(20, 3\), expected \(21, 3\)"):
        solver.push("bad", X[0][:20], 0.0)
    solver.push("good", X[0], 0.0)
    res = solver.tick()
    assert set(res) == {"good"} and solver.stream("bad").rejected == 2
    # a missing joint may hold NaN when the mask says so
    mask = np.ones(21, bool)
    mask[8] = False
    solver.push("bad", bad, 0.0, mask=mask)
    r = solver.tick()["bad"]
    assert np.isfinite(r.local_quats).all()
    observed = np.linalg.norm(r.positions[1:][mask] - X[0][mask], axis=-1)
    assert observed.max() < 1e-4


def test_nan_burst_resets_the_stream(pack, clip, solver):
    X, fps = clip
    solver.open_stream("a")
    for i in range(3):
        solver.push("a", X[i], i / fps)
        assert solver.tick()["a"].reset == (i == 0)
    bad = np.full((21, 3), np.nan)
    for _ in range(3):
        with pytest.raises(InputError):
            solver.push("a", bad, 0.1)
    solver.push("a", X[3], 3 / fps)
    assert solver.tick()["a"].reset and solver.stream("a").resets == 1


@pytest.mark.parametrize("kind", ["gap", "teleport", "backwards"])
def test_gaps_teleports_and_time_reversal_reset(pack, clip, solver, kind):
    X, fps = clip
    solver.open_stream("a")
    for i in range(3):
        solver.push("a", X[i], i / fps)
        solver.tick()
    t, frame = 3 / fps, X[3].copy()
    if kind == "gap":
        t += 0.6
    elif kind == "teleport":
        frame += [5.0, 0.0, 0.0]
    else:
        t = 0.0
    solver.push("a", frame, t)
    assert solver.tick()["a"].reset
    solver.push("a", frame, t + 1 / fps)
    assert not solver.tick()["a"].reset


def test_explicit_reset_and_dropped_frames(pack, clip, solver):
    X, fps = clip
    solver.open_stream("a")
    solver.push("a", X[0], 0.0)
    solver.push("a", X[1], 1 / fps)  # replaces the unsolved frame
    r = solver.tick()["a"]
    assert solver.stream("a").dropped == 1 and r.timestamp == pytest.approx(1 / fps)
    solver.reset("a")
    solver.push("a", X[2], 2 / fps)
    assert solver.tick()["a"].reset


def test_calibrate_measures_bone_lengths(pack, clip, solver):
    X, _ = clip
    solver.open_stream("a", units="cm")
    L = solver.calibrate("a", X * 100)
    rest = pack.skeleton.bone_lengths()
    bones = np.isfinite(L)
    assert bones.sum() == 20  # every bone between input joints
    np.testing.assert_allclose(L[bones], rest[bones], rtol=1e-3)


def test_noise_estimate_tracks_input_noise(pack, clip):
    X, fps = clip
    clean = Solver(pack)
    noisy = Solver(pack)
    clean.open_stream("a")
    noisy.open_stream("a")
    rng = np.random.default_rng(0)
    for i in range(len(X)):
        clean.push("a", X[i], i / fps)
        noisy.push("a", X[i] + rng.normal(0, 0.01, X[i].shape), i / fps)
        rc, rn = clean.tick()["a"], noisy.tick()["a"]
    assert rc.noise < 1e-4
    assert 0.002 < rn.noise < 0.03


@pytest.mark.parametrize("kernels", ["numpy", "auto"])
def test_denoiser_moves_a_joint_no_further_than_the_noise_explains(pack, clip, kernels):
    """A denoiser that does not know this body (here: one that keeps the left hand 20 cm from where it is) may pull
    each observed joint's target at most ``denoise_reach`` times the noise estimate away from its observation;
    without the bound it pulls the hand all the way."""
    X, fps = clip
    rng = np.random.default_rng(3)
    P = X + rng.normal(0.0, 0.01, X.shape)
    far = {}
    for reach in (5.0, None):
        opts = SolverOptions(kernels=kernels, denoise_reach=reach, bias_time=None)
        s = Solver(pack, Misplacing(pack), options=opts)
        s.open_stream("a")
        slot = s._get("a").slot
        worst = []
        for i in range(len(P)):
            s.push("a", P[i], i / fps)
            noise = s.tick()["a"].noise
            if i >= 30:  # the noise estimate has settled
                worst.append(np.linalg.norm(s._last_tgt[slot] - P[i], axis=-1).max() / noise)
        far[reach] = max(worst)
        s.close()
    assert far[5.0] <= 5.0 + 1e-6
    assert far[None] > 5.0


@pytest.mark.parametrize("kernels", ["numpy", "auto"])
def test_leaf_prior_turns_the_leaves_towards_the_mean_pose(pack, clip, kernels):
    """leaf_prior 1 gives every leaf (no child bone) the pack's mean local rotation, 0.5 one between, and no joint
    moves; the other joints' rotations are untouched."""
    X, fps = clip
    skel = pack.skeleton
    leaves = [j for j in range(len(skel)) if skel.parents[j] >= 0 and not skel.bone_children(j)]
    assert [skel.names[j] for j in leaves] == ["Head", "Hand_L", "Hand_R", "Toes_L", "Toes_R"]
    out = {}
    for w in (0.0, 0.5, 1.0):
        s = Solver(pack, options=SolverOptions(kernels=kernels, leaf_prior=w))
        out[w] = solve_sequence(s, X[:40], fps)
        s.close()
    q0, qh, q1 = (out[w]["local_quats"].astype(np.float64) for w in (0.0, 0.5, 1.0))
    prior = np.broadcast_to(pack.prior_local[leaves], q1[:, leaves].shape)
    assert np.degrees(rot.quat_geodesic(q1[:, leaves], prior)).max() < 1e-3
    half = np.degrees(rot.quat_geodesic(qh[:, leaves], prior))
    net = np.degrees(rot.quat_geodesic(q0[:, leaves], prior))
    assert np.all(half <= net + 1e-3) and (half < net - 0.1).any()
    others = [j for j in range(len(skel)) if j not in leaves]
    np.testing.assert_allclose(q1[:, others], q0[:, others], atol=1e-6)
    np.testing.assert_allclose(out[1.0]["positions"], out[0.0]["positions"], atol=1e-6)
    with pytest.raises(InputError, match="leaf_prior must be within 0..1"):
        Solver(pack, options=SolverOptions(kernels=kernels, leaf_prior=-0.1))


@pytest.mark.parametrize("kernels", ["numpy", "auto"])
def test_the_denoisers_lasting_offset_is_taken_off(pack, clip, kernels):
    """A denoiser that keeps the left hand 20 cm off: the stream learns the offset within a second (bias_time
    0.5 s) and the hand's target comes back near its observation; without the correction it stays at the reach
    bound (5 sigma); a child of a multi-child joint (a clavicle on the chest) is not corrected."""
    X, fps = clip
    rng = np.random.default_rng(5)
    P = X + rng.normal(0.0, 0.01, X.shape)
    names = list(pack.input_joints)
    far = {}
    for joint, bias in (("Hand_L", 0.5), ("Hand_L", None), ("Shoulder_L", 0.5)):
        s = Solver(pack, Misplacing(pack, joint), options=SolverOptions(kernels=kernels, bias_time=bias))
        s.open_stream("a")
        slot, k = s._get("a").slot, names.index(joint)
        ratio = []
        for i in range(len(P)):
            s.push("a", P[i], i / fps)
            noise = s.tick()["a"].noise
            if i >= 30:  # a second in
                ratio.append(np.linalg.norm(s._last_tgt[slot, k] - P[i, k]) / noise)
        far[joint, bias] = float(np.mean(ratio))
        s.close()
    assert far["Hand_L", 0.5] < 2.0  # about the noise: near the observation
    assert far["Hand_L", None] > 4.0  # the denoiser followed up to the reach (5 sigma)
    assert far["Shoulder_L", 0.5] > 4.0
    with pytest.raises(InputError, match="bias_time must be positive"):
        Solver(pack, options=SolverOptions(kernels=kernels, bias_time=0.0))


@pytest.mark.parametrize("kernels", ["numpy", "auto"])
def test_a_joint_that_drops_out_holds_its_offset_from_its_parent(pack, clip, kernels):
    """The left forearm and hand missing for a third of a second (an occluded marker) while the hands are held up:
    with gap_hold their targets keep the offsets they last had from the upper arm (in the heading frame) with
    weight exp(-t / 1 s), the rest going to the denoiser's guess (gap_hold None; far off with the test pack's
    random weights), and the full weight comes back when they are seen again."""
    X, fps = clip
    names = list(pack.input_joints)
    gone = [names.index("LowerArm_L"), names.index("Hand_L")]
    gap = range(12, 22)
    err, w = {}, []
    for hold in (1.0, None):
        s = Solver(pack, options=SolverOptions(kernels=kernels, gap_hold=hold, smooth=None))
        s.open_stream("a")
        slot = s._get("a").slot
        err[hold] = []
        for i in range(len(X)):
            m = np.ones(len(names), bool)
            m[gone] = i not in gap
            s.push("a", X[i], i / fps, m)
            s.tick()
            if i in gap:
                err[hold].append(np.linalg.norm(s._last_tgt[slot, gone] - X[i, gone], axis=-1))
                if hold is not None:
                    w.append(s._gap_w[slot, gone])
        if hold is not None:
            assert s._gap_w[slot, gone].tolist() == [1.0, 1.0]  # seen again
        s.close()
    w, held, guess = np.array(w), np.array(err[1.0]), np.array(err[None])
    np.testing.assert_allclose(w, np.exp(-np.arange(1, 11) / fps)[:, None].repeat(2, 1), rtol=1e-9)
    assert held[0].max() < 0.03 < guess.min()  # the first missing frame: near the truth, the guess is not
    # the held offsets barely move while the hand is still: what error there is comes from the guess's share, and
    # the hand, held from the forearm's held place, adds the forearm's
    assert (held[:, 0] <= (1.0 - w[:, 0]) * guess[:, 0] + 0.01).all()
    assert (held[:, 1] <= (1.0 - w[:, 1]) * guess[:, 1] + held[:, 0] + 0.01).all()
    with pytest.raises(InputError, match="gap_hold must be positive"):
        Solver(pack, options=SolverOptions(kernels=kernels, gap_hold=0.0))


@pytest.mark.parametrize("kernels", ["numpy", "auto"])
@pytest.mark.parametrize("gone", [["LowerArm_L"], ["Hips"], ["Chest", "LowerLeg_R"]])
def test_joints_below_a_missing_one_are_still_reached(pack, clip, kernels, gone):
    """An elbow, the root, or the chest and a knee missing for a third of a second: each missing joint is placed
    where its bones fit its parent and its observed children (two-bone IK; the root from its children), so every
    observed joint comes back within a millimetre and the missing ones stay near the truth; without gap holding
    (the test pack's random denoiser) the observed joints below them are far off."""
    X, fps = clip
    names = list(pack.input_joints)
    idx = [names.index(n) for n in gone]
    seen = np.setdiff1d(np.arange(len(names)), idx)
    gap = range(12, 22)
    worst = {}
    for hold in (1.0, None):
        s = Solver(pack, options=SolverOptions(kernels=kernels, gap_hold=hold, smooth=None))
        s.open_stream("a")
        obs, miss = [], []
        for i in range(len(X)):
            m = np.ones(len(names), bool)
            m[idx] = i not in gap
            s.push("a", X[i], i / fps, m)
            out = s.tick()["a"].positions[pack.input_index]
            if i in gap:
                obs.append(np.linalg.norm(out[seen] - X[i, seen], axis=-1).max())
                miss.append(np.linalg.norm(out[idx] - X[i, idx], axis=-1).max())
        worst[hold] = max(obs), max(miss)
        s.close()
    assert worst[1.0][0] < 1e-3
    # the missing joints: near the truth, though their trust leaks to the random denoiser's guess as the gap goes on
    assert worst[1.0][1] < 0.1 and worst[1.0][1] < 0.5 * worst[None][1]
    assert worst[None][0] > 0.02


@pytest.mark.parametrize("kernels", ["numpy", "auto"])
@pytest.mark.parametrize("joint", ["LowerArm_L", "LowerLeg_R", "Hips", "Chest"])
def test_a_spike_is_taken_as_missing(pack, clip, kernels, joint):
    """One joint thrown 15 cm off for a frame (a swapped marker): its bones change length while the body's do not,
    so it is taken as missing and held: the output stays within 2 cm of the truth there, and its neighbours are
    untouched; without the check (spike None) the output follows the spike. (A hand, head or toe has one bone:
    thrown along it, nothing the solver outputs moves, since bone lengths are calibrated; thrown across it, the
    length stays and the spike is not caught.)"""
    X, fps = clip
    names = list(pack.input_joints)
    k = names.index(joint)
    throw = np.array([0.09, -0.09, 0.08])
    err = {}
    for spike in (0.02, None):
        s = Solver(pack, options=SolverOptions(kernels=kernels, spike=spike, smooth=None))
        s.open_stream("a")
        for i in range(len(X)):
            P = X[i].copy()
            if i == 20:
                P[k] += throw
            out = s.tick() if s.push("a", P, i / fps) is None else None
            if i == 20:
                pos = out["a"].positions[pack.input_index]
                err[spike] = np.linalg.norm(pos - X[i], axis=-1)
        s.close()
    assert err[0.02][k] < 0.02
    assert np.delete(err[0.02], k).max() < 0.02
    assert err[None][k] > 0.05
    with pytest.raises(InputError, match="spike must be positive"):
        Solver(pack, options=SolverOptions(kernels=kernels, spike=-1.0))


def test_stream_errors(pack, solver):
    with pytest.raises(InputError, match="unknown units 'inch'; valid units: m, cm, mm"):
        solver.open_stream("a", units="inch")
    with pytest.raises(InputError, match="no stream 'zz'; open streams: none"):
        solver.push("zz", np.zeros((21, 3)), 0.0)
    with pytest.raises(InputError, match="unknown layout"):
        solver.open_stream("a", layout="nope")


def test_partial_layout_stream_solves(pack, clip, solver):
    from rtik.formats.layouts import COCO17

    X, fps = clip
    names = list(pack.input_joints)
    src = {"left_hip": "UpperLeg_L", "right_hip": "UpperLeg_R", "left_knee": "LowerLeg_L", "right_knee": "LowerLeg_R",
           "left_ankle": "Foot_L", "right_ankle": "Foot_R", "left_shoulder": "UpperArm_L",
           "right_shoulder": "UpperArm_R", "left_elbow": "LowerArm_L", "right_elbow": "LowerArm_R",
           "left_wrist": "Hand_L", "right_wrist": "Hand_R", "left_ear": "Head", "right_ear": "Head", "nose": "Head",
           "left_eye": "Head", "right_eye": "Head"}  # fmt: skip
    solver.open_stream("cam", layout="coco17")
    for i in range(5):
        frame = np.array([X[i][names.index(src[k])] for k in COCO17])
        solver.push("cam", frame, i / fps)
        r = solver.tick()["cam"]
    assert np.isfinite(r.local_quats).all() and np.isfinite(r.positions).all()
    # a bone whose two ends are observed points exactly along its observation (the rest comes from the network)
    knee, ankle = pack.skeleton.index("LowerLeg_L"), pack.skeleton.index("Foot_L")
    got = r.positions[ankle] - r.positions[knee]
    want = X[4][names.index("Foot_L")] - X[4][names.index("LowerLeg_L")]
    cos = got @ want / np.linalg.norm(got) / np.linalg.norm(want)
    assert cos > np.cos(np.radians(0.1))
    assert np.linalg.norm(got) == pytest.approx(np.linalg.norm(want), rel=1e-4)


def test_euler_for_writers(pack, solver):
    q = rot.quat_normalize(np.random.default_rng(0).normal(size=(3, 22, 4)))
    e = solver.euler(q)
    assert e.shape == (3, 22, 3)
    back = rot.euler_to_quat(e, pack.skeleton.rotation_order(1))
    np.testing.assert_allclose(rot.quat_geodesic(back, q), 0, atol=1e-6)


class Poisoning(Recording):
    """The real ONNX backend, with the outputs of batch row ``row`` replaced by NaN on call ``at``."""

    def __init__(self, pack, row: int, at: int):
        super().__init__(pack)
        self.row, self.at = row, at

    def step(self, pos, mask, state):
        r6, clean, st = super().step(pos, mask, state)
        if self.calls == self.at:
            r6, st = r6.copy(), st.copy()
            r6[self.row] = np.nan
            st[self.row] = np.nan
        return r6, clean, st


def test_non_finite_network_output_resets_only_that_stream(pack, clip):
    X, fps = clip
    s = Solver(pack, Poisoning(pack, row=1, at=5))
    try:
        for name in ("a", "b"):
            s.open_stream(name)
        for i in range(10):
            for name in ("a", "b"):
                s.push(name, X[i], i / fps)
            res = s.tick()
            for r in res.values():
                assert np.isfinite(r.local_quats).all() and np.isfinite(r.positions).all()
                assert np.linalg.norm(r.positions[1:] - X[i], axis=-1).max() < 1e-3  # still on the observations
            if i == 4:
                assert res["b"].reset and not res["a"].reset
        assert s.stream("b").resets == 1 and s.stream("a").resets == 0
        assert "not finite" in s.stream("b").last_error
        assert np.isfinite(s._state).all()
    finally:
        s.close()


def test_degenerate_frame_is_refused_and_never_poisons_the_stream(pack, clip, solver):
    X, fps = clip
    solver.open_stream("a")
    with pytest.raises(InputError, match="degenerate frame"):
        solver.push("a", np.zeros_like(X[0]), 0.0)  # every joint on one point
    with pytest.raises(InputError, match="wrong units"):
        solver.push("a", X[0] * 0.01, 0.0)  # centimetres announced as metres... the other way round
    solver.push("a", X[0], 0.0)
    r = solver.tick()["a"]
    assert np.isfinite(r.local_quats).all()
    assert np.linalg.norm(r.positions[1:] - X[0], axis=-1).max() < 1e-3


@pytest.mark.parametrize("kernels", ["numpy", "auto"])
def test_bones_never_observed_take_their_length_from_the_targets(pack, clip, kernels):
    """A layout without the clavicles (as a pose estimator's): their bones get a running length between the last
    targets (where the denoiser put the clavicles), their count runs negative, and the first real observation
    of the bone replaces that estimate outright."""
    X, fps = clip
    names = list(pack.input_joints)
    keep = [n for n in names if n not in ("Shoulder_L", "Shoulder_R")]
    s = Solver(pack, options=SolverOptions(kernels=kernels))
    s.open_stream("est", layout=keep)
    s.open_stream("full")
    sh = pack.skeleton.index("UpperArm_L")  # the bone Shoulder_L -> UpperArm_L, stored at its child
    m = np.ones(len(names), bool)
    m[names.index("Shoulder_L")] = False
    for i in range(6):
        s.push("est", X[i][[names.index(n) for n in keep]], i / fps)
        s.push("full", X[i], i / fps, mask=m if i < 5 else None)  # the clavicle seen from frame 5 on
        s.tick()
    est, full = s.stream("est").slot, s.stream("full").slot
    assert s._nobs[est, sh] == -5 and np.isfinite(s._blen[est, sh])  # frames 1..5 (not the first: no targets)
    want = np.linalg.norm(X[5][names.index("UpperArm_L")] - X[5][names.index("Shoulder_L")])
    assert s._nobs[full, sh] == 1 and s._blen[full, sh] == pytest.approx(want, rel=1e-9)
    s.close()


@pytest.mark.parametrize("kernels", ["numpy", "auto"])
def test_approximate_joints_feed_the_network_but_not_the_targets_or_calibration(pack, clip, kernels):
    """A layout that marks the head approximate (as mediapipe33 marks the ears' midpoint): the network still sees
    it, but the neck-to-head bone is never measured on it (explicit calibration or running) and a head 10 cm off
    does not raise the stream's noise estimate."""
    from rtik.formats.layouts import Layout

    X, fps = clip
    names = tuple(pack.input_joints)
    off = X.copy()
    off[:, names.index("Head")] += [0.0, 0.1, 0.0]  # the stand-in sits 10 cm above the joint
    plain = Layout("plain", names, {n: ((n, 1.0),) for n in names})
    approx = Layout("approx", names, plain.rows, {"Head": "a stand-in"})
    rec = Recording(pack)
    s = Solver(pack, rec, options=SolverOptions(kernels=kernels))
    head = pack.skeleton.index("Head")
    for lay in (plain, approx):
        s.open_stream(lay.name, layout=lay)
        L = s.calibrate(lay.name, off[:20], lock=False)
        assert np.isfinite(L[head]) == (lay is plain)
    for i in range(30):
        for lay in (plain, approx):
            s.push(lay.name, off[i], i / fps)
            r = s.tick()[lay.name]
            if lay is approx:
                assert rec.last[1][0, names.index("Head")] == 1.0  # the network sees the head
    assert s._nobs[s.stream("approx").slot, head] < 0  # its bone: from the targets only
    # the plain stream measured the stand-in: its neck-to-head bone is the 10 cm longer one
    assert s._blen[s.stream("plain").slot, head] == pytest.approx(
        np.linalg.norm(off[0, names.index("Head")] - off[0, names.index("Neck")]), rel=1e-2
    )
    assert r.noise < 1e-3  # the approx stream: the 10 cm stand-in is not read as input noise
    s.close()
