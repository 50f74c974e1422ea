"""Full calibration: bone lengths and the rest offsets of the children of multi-child joints (hips, chest), so
that FK of the output lands on a clean input of any rig. Real clips of several rigs, mapped onto the body."""

from __future__ import annotations

import numpy as np
import pytest

from rtik.formats import bvh
from rtik.formats.rig import Rig, clip_arrays
from rtik.formats.units import METRES
from rtik.geometry.kinematics import forward_kinematics
from rtik.solve.solver import Solver, SolverOptions, solve_sequence

#: rigs whose hips and chest children sit elsewhere than the model's, with a neck or a spine missing (virtual)
RIGS = (
    "mpi-poseprior_03100_S7",  # no spine, no neck joint: the chest on the hips, the head on the chest
    "snu-ys2010_Balancing_wd2_long_broad_jump",  # no neck
    "animated-drawings_sst_walk_speed_variation",  # no spine, no neck
    "animated-drawings_cmu_new3_back_handspring1_autolabel",  # every body joint
    # a body joint on its parent: the spine on the hips and the neck and clavicles on the chest (CMU's lowerback,
    # lowerneck, collars); both clavicles from one point beside the neck's axis (tcd); zero-length *Dummy joints
    "animated-drawings_cmu_14_14_short",
    "animated-drawings_tcd_NaturalTalking_100",
    "snu-ys2010_Samsung_wd2_middle_walking",
)


def _rig_input(mocap, name, frames=120):
    """``(positions (F, Jr, 3) m, joint names, fps, rig)``: the rig's joints by FK of the clip, in metres."""
    path = mocap / "extra" / "sample" / f"{name}.bvh"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    m = bvh.read(path)
    rig = Rig.from_motion(m)
    skel, q, root = clip_arrays(m)
    P, _ = forward_kinematics(skel, q[:frames], root[:frames])
    scale = METRES[bvh.guess_units(m) or "cm"]
    return P * scale, skel.names, m.fps, rig


def _errors(solver, out, P, rig) -> dict:
    """Largest distance (m) between FK of the output and the input, per body joint the rig provides."""
    return {
        b: float(np.linalg.norm(out["positions"][:, solver.skeleton.index(b)] - P[:, r], axis=-1).max())
        for b, r in rig.mapping.items()
        if b in solver.skeleton.names and b != "joint_Root"
    }


@pytest.fixture(scope="module")
def default():
    s = Solver.from_path()
    yield s
    s.close()


@pytest.mark.parametrize("name", RIGS)
@pytest.mark.parametrize("calibrate", [True, False], ids=["file", "live"])
def test_fk_of_the_output_lands_on_every_rig_within_a_millimetre(mocap, default, name, calibrate):
    P, joints, fps, rig = _rig_input(mocap, name)
    out = solve_sequence(default, P, fps, layout=rig.layout(), joints=joints, calibrate=calibrate)
    err = _errors(default, out, P, rig)
    # a rig without a neck (SNU's): the head hangs from a virtual neck whose turn the network picks; it lands
    # within 2 mm there (docs/rigs.md), every other joint within 1 mm
    bound = {b: (2e-3 if b == "Head" and "Neck" not in rig.mapping else 1e-3) for b in err}
    assert all(err[b] < bound[b] for b in err), {b: round(e * 1000, 2) for b, e in err.items() if e >= 1e-3}
    # the positions are FK of the output rotations over the calibrated skeleton (live: the one it ends with; a
    # chain the body spans with one bone that bends in the rig, CMU's lowerback-Chest-Chest2, keeps it moving)
    X, _ = forward_kinematics(out["skeleton"], out["local_quats"].astype(np.float64), out["root_pos"])
    last = slice(None) if calibrate else slice(-1, None)
    np.testing.assert_allclose(X[last], out["positions"][last], atol=1e-5)


def test_live_stream_estimate_converges_and_stays(mocap, pack):
    """Pushed frame by frame (the running estimate), with the random test pack: exact after the first frames."""
    P, joints, fps, rig = _rig_input(mocap, "mpi-poseprior_03100_S7")
    for kernels in ("numba", "numpy"):
        s = Solver(pack, options=SolverOptions(kernels=kernels))
        s.open_stream("a", layout=rig.layout(), joints=joints)
        errs = []
        for f in range(len(P)):
            s.push("a", P[f], f / fps)
            r = s.tick()["a"]
            on = [(pack.skeleton.index(b), j) for b, j in rig.mapping.items() if b in pack.skeleton.names]
            errs.append(max(np.linalg.norm(r.positions[i] - P[f, j]) for i, j in on))
        assert max(errs) < 1e-3, kernels
        sk = s.stream_skeleton("a")
        hips = pack.skeleton.index("Hips")
        thighs = [pack.skeleton.index(n) for n in ("UpperLeg_L", "UpperLeg_R")]
        assert np.linalg.norm(sk.offsets[thighs] - pack.skeleton.offsets[thighs]) > 0.005  # moved off the rest
        assert sk.parents[thighs[0]] == hips
        s.close()


def test_missing_joints_keep_the_rest_offsets(pack):
    """A layout without a neck and clavicles: the chest's children keep the model's rest offsets (scaled)."""
    import steppack

    m = bvh.read(steppack.mocap_sample())
    X = m.positions()[:30, 1:] / 100.0
    names = list(pack.input_joints)
    keep = [n for n in names if n not in ("Neck", "Shoulder_L", "Shoulder_R")]
    s = Solver(pack)
    s.open_stream("a", layout=keep)
    for f in range(len(X)):
        s.push("a", X[f][[names.index(n) for n in keep]], f / 30.0)
        s.tick()
    sk, rest = s.stream_skeleton("a"), pack.skeleton
    for n in ("Neck", "Shoulder_L", "Shoulder_R"):
        j = rest.index(n)
        cos = sk.offsets[j] @ rest.offsets[j] / np.linalg.norm(sk.offsets[j]) / np.linalg.norm(rest.offsets[j])
        assert cos == pytest.approx(1.0, abs=1e-9), n
    s.close()


@pytest.mark.parametrize("kernels", ["numba", "numpy"])
def test_a_missing_neck_stays_below_a_head_that_sits_low(mocap, kernels):
    """A rig without a neck whose head sits on the chest nearer than the model's neck is long (SNU ys2010): the
    missing neck goes part of the way to the head, never beyond it, so the neck is not turned upside down to reach
    back down to the head (it was: 180° off, the head with it)."""
    if kernels == "numba":
        pytest.importorskip("numba")
    P, joints, fps, rig = _rig_input(mocap, "snu-ys2010_Balancing_wd2_long_broad_jump")
    s = Solver.from_path(options=SolverOptions(kernels=kernels))
    out = solve_sequence(s, P, fps, layout=rig.layout(), joints=joints)
    X, n = out["positions"], s.skeleton.index
    chest, neck, head = X[:, n("Chest")], X[:, n("Neck")], X[:, n("Head")]
    rest = s.skeleton.offsets[n("Neck")]
    assert np.linalg.norm(head - chest, axis=-1).max() < np.linalg.norm(rest)  # nearer than the model's neck is long
    assert (np.linalg.norm(neck - chest, axis=-1) < np.linalg.norm(head - chest, axis=-1)).all()
    assert (((head - neck) * (head - chest)).sum(-1) > 0).all()
    assert max(_errors(s, out, P, rig).values()) < 1e-3
    s.close()


@pytest.mark.parametrize("name", ["animated-drawings_cmu_14_14_short", "animated-drawings_tcd_NaturalTalking_100"])
def test_the_kernels_equal_the_numpy_path_where_a_joint_sits_on_its_parent(mocap, pack, name):
    """The frames chosen per stream, the convention from the reference points and the aiming bone of real length
    (compiled and numpy alike), clean and noisy, with the random test pack."""
    pytest.importorskip("numba")
    P, joints, fps, rig = _rig_input(mocap, name, frames=40)
    noisy = P + np.random.default_rng(3).normal(0.0, 0.005, P.shape)
    runs = {}
    for kernels in ("numba", "numpy"):
        s = Solver(pack, options=SolverOptions(kernels=kernels))
        s.open_stream("a", layout=rig.layout(), joints=joints)
        s.open_stream("b", layout=rig.layout(), joints=joints)
        out = []
        for f in range(len(P)):
            s.push("a", P[f], f / fps)
            s.push("b", noisy[f], f / fps)
            out.append({n: (r.local_quats, r.positions) for n, r in s.tick().items()})
        runs[kernels] = out, s.stream_skeleton("a").offsets, s.stream_skeleton("b").offsets
        s.close()
    (fast, fa, fb), (ref, ra, rb) = runs["numba"], runs["numpy"]
    np.testing.assert_allclose(fa, ra, atol=1e-12)
    np.testing.assert_allclose(fb, rb, atol=1e-12)
    for x, y in zip(fast, ref, strict=True):
        for n in x:
            np.testing.assert_allclose(x[n][0], y[n][0], atol=2e-6)
            np.testing.assert_allclose(x[n][1], y[n][1], atol=2e-6)
