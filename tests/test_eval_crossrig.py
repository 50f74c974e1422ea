"""Cross-rig evaluation on the multi-source corpus: the corpus splits read from train.corpus's caches (val of
every source, source:NAME), the constant rest offset per joint, and `rtik eval` end to end on a tiny corpus."""

from __future__ import annotations

import json

import numpy as np
import pytest
from archives import write_tar

from rtik.cli import main
from rtik.errors import InputError
from rtik.eval import crossrig, sources
from rtik.eval.evaluation import Split
from rtik.formats import markers
from rtik.geometry import kinematics as kin
from rtik.geometry import rotations as rot

BANDAI = sources.BANDAI
#: a tiny corpus: Bandai sample clips (all val), two ys2010 rigs and the MPI rig (no spine, no neck)
TINY = {
    "tiny-ys": ("snu-ys2010_Physics2_wd2_PushStep02.bvh", "snu-ys2010_Samsung_wd2_middle_walking.bvh"),
    "tiny-mpi": ("mpi-poseprior_03100_S7.bvh",),
}


@pytest.fixture(scope="module")
def tiny(mocap, tmp_path_factory):
    """``(cache folder, ClipSet)`` of a tiny corpus built by train.corpus from the sample clips."""
    pytest.importorskip("torch")
    from train.corpus import load_corpus

    root = tmp_path_factory.mktemp("mocap")
    (root / "extra").mkdir()
    bandai = sorted((mocap / "sample").glob("*.bvh"))[:2]
    write_tar(root / f"{BANDAI}.tar.xz", [(f"data/{p.name}", p.read_bytes()) for p in bandai])
    for source, names in TINY.items():
        write_tar(
            root / "extra" / f"{source}.tar.xz", [(n, (mocap / "extra" / "sample" / n).read_bytes()) for n in names]
        )
    cache = tmp_path_factory.mktemp("cache")
    return cache, load_corpus(root=root, cache_dir=cache, progress=False)


def test_val_flags_follow_train_corpus():
    pytest.importorskip("torch")
    from train import corpus

    names = [f"s_{s:03d}_{m}_{t}.bvh" for s in range(1, 8) for m in range(1, 6) for t in (1, 2)]
    fams = [corpus.family_key("snu-vsports", n) for n in names]
    assert np.array_equal(sources.val_flags("x", names, fams), corpus.val_flags("x", names, fams))
    bandai = ["dataset-2_run_normal_010.bvh", "dataset-2_run_normal_011.bvh", "dataset-2_walk_active_020.bvh"]
    assert np.array_equal(sources.val_flags(BANDAI, bandai, bandai), corpus.val_flags(BANDAI, bandai, bandai))
    assert (sources.VAL_PERCENT, sources.VAL_EVERY) == (corpus.VAL_PERCENT, corpus.VAL_EVERY)


def test_corpus_splits(tiny):
    cache, cs = tiny
    clips, prior = sources.load_split(Split.parse("val"), cache, need_prior=True)
    val = cs.split("val")
    assert sorted(c.name for c in clips) == sorted(val.names) and len(clips) >= 3
    assert {c.source for c in clips} == set(val.sources)
    assert prior.shape == (22, 4) and np.all(np.isfinite(prior))
    clips, _ = sources.load_split(Split.parse("source:tiny-ys,tiny-mpi"), cache)
    assert sorted(c.name for c in clips) == sorted(n for n, s in zip(cs.names, cs.sources, strict=True) if s != BANDAI)
    mpi = next(c for c in clips if c.source == "tiny-mpi")
    absent = [n for n, p in zip(mpi.skeleton.names, mpi.present, strict=True) if not p]
    assert absent == ["joint_Root", "Spine", "Neck"]
    # ground truth is the cached body: FK of the clip's own body in metres, native frame rate
    i = cs.names.index(mpi.name)
    np.testing.assert_allclose(mpi.skeleton.offsets, cs.clip_offsets[i], atol=1e-6)
    assert abs(mpi.fps - 120.0) < 0.01 and 0.6 < np.median(mpi.positions[:, 1, 1]) < 1.3
    # a seeded draw of clips per source and a seeded window of frames
    one, _ = sources.load_split(Split.parse("source:tiny-ys"), cache, limit=1, max_frames=20, seed=3)
    again, _ = sources.load_split(Split.parse("source:tiny-ys"), cache, limit=1, max_frames=20, seed=3)
    assert len(one) == 1 and len(one[0].local_quats) == 20
    assert one[0].name == again[0].name and np.array_equal(one[0].local_quats, again[0].local_quats)
    with pytest.raises(InputError, match="sources: "):
        sources.load_split(Split.parse("source:nope"), cache)
    with pytest.raises(InputError, match="train.corpus"):
        sources.load_split(Split.parse("val"), cache / "empty")


def test_split_parse_source():
    s = Split.parse("source:snu-vsports, mpi-poseprior")
    assert s.kind == "source" and s.sources == ("snu-vsports", "mpi-poseprior")
    assert str(s) == "source:snu-vsports,mpi-poseprior" and not s.is_test("dataset-2_run_normal_010.bvh")
    with pytest.raises(InputError, match="source:NAME"):
        Split.parse("sources:x")


def _clip(F=50, seed=0):
    """A SourceClip of random smooth motion on the Bandai-named body (every joint present but the dummy)."""
    from rtik.formats.rig import BODY_NAMES, BODY_PARENTS
    from rtik.geometry.skeleton import Skeleton

    rng = np.random.default_rng(seed)
    offsets = rng.normal(0, 0.1, (22, 3))
    offsets[:2] = 0
    chans = tuple(("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation") if j < 2 else
                  ("Zrotation", "Xrotation", "Yrotation") for j in range(22))  # fmt: skip
    skel = Skeleton(BODY_NAMES, BODY_PARENTS.copy(), offsets, chans, tuple(None for _ in range(22)))
    t = np.linspace(0, 1, F)[:, None, None]
    q = rot.axis_angle_to_quat(rng.normal(0, 0.5, (1, 22, 3)) * np.sin(3 * t + rng.uniform(0, 6, (1, 22, 1))))
    P = kin.forward_kinematics(skel, q, root_pos=np.zeros((F, 3)))[0]
    return sources.SourceClip("c.bvh", "s", skel, q, P, 30.0, sources.present_joints(skel, q))


def test_a_constant_offset_is_removed_by_the_fit():
    clip = _clip()
    gt = kin.local_to_global(clip.skeleton, clip.local_quats)
    rng = np.random.default_rng(1)
    angles = np.radians(rng.uniform(5, 40, 22))
    axes = rng.normal(size=(22, 3))
    C = rot.axis_angle_to_quat(axes / np.linalg.norm(axes, axis=-1, keepdims=True) * angles[:, None])
    out = rot.quat_mul(gt, rot.quat_conj(C)[None])  # out C = gt
    np.testing.assert_allclose(np.abs(np.sum(crossrig.fit_offsets(out, gt) * C, axis=-1)), 1.0, atol=1e-9)
    s = crossrig.clip_errors(clip, out, clip.positions).summary()
    pj = crossrig.clip_errors(clip, out, clip.positions).per_joint()
    assert s["grot_fit_all_deg"] < 1e-4 and s["rot_fit_all_deg"] < 1e-4 and s["mpjpe_mm"] < 1e-9
    scored = clip.present
    np.testing.assert_allclose(pj["grot_deg"][scored], np.degrees(angles[scored]), atol=1e-6)
    # the same offsets given (as a per-source fit passes them) and two clips summed per joint
    both = crossrig.clip_errors(clip, out, clip.positions, C) + crossrig.clip_errors(clip, out, clip.positions, C)
    assert both.summary()["grot_fit_all_deg"] < 1e-4 and both.frames == 100 and both.clips == 2
    np.testing.assert_allclose(both.per_joint()["grot_deg"][scored], np.degrees(angles[scored]), atol=1e-6)


def test_virtual_joints_sit_on_their_chain(tiny):
    cache, _ = tiny
    (mpi,), _ = sources.load_split(Split.parse("source:tiny-mpi"), cache, max_frames=30)
    P, m = crossrig.corrupted_input(mpi, "clean", 0)
    assert P.shape[1] == m.shape[1] == len(mpi.skeleton) + len(markers.NAMES)  # joints, then leaf markers
    assert np.isnan(P[:, len(mpi.skeleton) :]).all() and not m[:, len(mpi.skeleton) :].any()  # none without a mode
    P, m = P[:, : len(mpi.skeleton)], m[:, : len(mpi.skeleton)]
    assert np.isnan(P[:, mpi.skeleton.index("Spine")]).all() and not m[:, mpi.skeleton.index("Neck")].any()
    filled, fm = crossrig.fill_virtual(mpi, P, m)
    np.testing.assert_allclose(filled, mpi.positions, atol=1e-5)  # exact on clean input: the mapping's place
    assert fm.all()


def test_rtik_eval_on_the_corpus_end_to_end(tiny, pack, tmp_path):
    cache, _ = tiny
    out = tmp_path / "lso.json"
    args = ["eval", "--split", "source:tiny-mpi,tiny-ys", "--corpus", str(cache), "--model", str(pack.path),
            "--max-frames", "40", "--conditions", "clean,noise10", "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    doc = json.loads(out.read_text())
    assert doc["split"] == "source:tiny-mpi,tiny-ys" and doc["prior"] == "model" and doc["offsets"] == "source"
    assert list(doc["parts"]) == ["tiny-mpi", "tiny-ys", "all"]
    allp = doc["parts"]["all"]
    assert set(allp) == {"model", "analytic", "analytic_prior", "analytic_prior_oneeuro"}
    assert allp["model"]["clean"]["clips"] == 3 and allp["model"]["clean"]["frames"] == 120
    for m in ("analytic", "analytic_prior"):
        s = allp[m]["clean"]
        assert s["mpjpe_mm"] < 0.5 and s["grot_fit_all_deg"] <= s["grot_all_deg"] + 1e-9
        assert allp[m]["noise10"]["mpjpe_mm"] > 5
    s = allp["model"]["noise10"]
    assert all(s[k] is not None and np.isfinite(s[k]) for k in crossrig.KEYS)
    # per joint: the body's names, one value per joint, whose means over the scored joints are the summary's
    joints = doc["joints"]
    assert joints["names"][1] == "Hips" and len(joints["names"]) == 22
    for m in ("model", "analytic_prior"):
        pj = joints["parts"]["all"][m]["clean"]
        rf = np.array([np.nan if v is None else v for v in pj["rot_fit_deg"]])
        assert len(rf) == 22 and np.isnan(rf[0])  # the static dummy root is never scored
        assert np.nanmean(rf) == pytest.approx(allp[m]["clean"]["rot_fit_all_deg"], abs=1e-3)


def test_rtik_eval_corpus_split_errors(tiny, capsys):
    cache, _ = tiny
    with pytest.raises(SystemExit):
        main(["eval", "--split", "source:", "--corpus", str(cache)])
    assert main(["eval", "--split", "content:run", "--corpus", str(cache), "--methods", "analytic"]) != 0
    assert "needs a Bandai archive" in capsys.readouterr().err


def test_estimator_input_lacks_the_torso_and_the_baselines_get_a_stand_in(tiny):
    cache, _ = tiny
    (mpi,), _ = sources.load_split(Split.parse("source:tiny-mpi"), cache, max_frames=30)
    P, m = crossrig.corrupted_input(mpi, "clean", 0, "estimator")
    J, n = len(mpi.skeleton), mpi.skeleton.index
    for j in ("Spine", "Chest", "Neck", "Shoulder_L", "Shoulder_R"):
        assert not m[:, n(j)].any(), j
    hips = 0.5 * (mpi.positions[:, n("UpperLeg_L")] + mpi.positions[:, n("UpperLeg_R")])
    np.testing.assert_allclose(P[:, n("Hips")], hips, atol=1e-9)  # the hip landmarks' midpoint
    nose = J + markers.NAMES.index("Nose")
    assert m[:, nose].all() and not m[:, J + markers.NAMES.index("HeadTop")].any()  # estimators give no head top
    filled, fm = crossrig.fill_torso(mpi, P[:, :J], m[:, :J])
    assert fm[:, n("Chest")].all() and np.isfinite(filled[:, n("Chest")]).all()
    neck = 0.5 * (mpi.positions[:, n("UpperArm_L")] + mpi.positions[:, n("UpperArm_R")])
    np.testing.assert_allclose(filled[:, n("Neck")], neck, atol=1e-9)
    G, X = crossrig.baseline_method("analytic", None)(mpi, P, m)
    assert np.isfinite(G).all() and np.isfinite(X).all()


def test_solver_flags_reach_the_solver():
    from rtik.cli import build_parser
    from rtik.commands.eval import _options

    parse = lambda *a: build_parser().parse_args(["eval", *a])  # noqa: E731
    o = _options(parse("--leaf-prior", "0.5", "--no-hinge", "--twist-prior", "0.25"))
    assert (o.hinge, o.leaf_prior, o.twist_prior) == (None, 0.5, 0.25)
    o = _options(parse())
    assert (o.hinge, o.leaf_prior, o.twist_prior) == ((10.0, 25.0), None, 1.0)
    with pytest.raises(SystemExit):
        parse("--twist-prior", "2")
