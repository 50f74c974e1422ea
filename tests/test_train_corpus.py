"""The multi-source corpus: archives read in place, clips mapped onto the body, bad clips reported, per-source
caches and reports, family keys, val and leave-source-out splits, per-clip bodies in the training examples."""

from __future__ import annotations

import json

import numpy as np
import pytest
from archives import write_tar

pytest.importorskip("torch")
pytest.importorskip("rtik.formats.rig")

from rtik.errors import InputError  # noqa: E402
from rtik.models import normalize as nz  # noqa: E402
from train import corpus  # noqa: E402
from train.batches import ExampleMaker  # noqa: E402
from train.corpus import BANDAI, family_key, load_corpus, val_flags  # noqa: E402
from train.fit import _augment_config  # noqa: E402
from train.hinges import TWIST_PRIOR  # noqa: E402

EXTRA = ("snu-ys2010_Walking_rawmotion_woddy2_wide_ext_walk1.bvh", "snu-ys2010_Physics2_wd2_PushStep02.bvh")
BROKEN = b"HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 3 Xrotation\n}\nMOTION\nFrames: 1\n"


@pytest.fixture(scope="module")
def tiny(mocap, tmp_path_factory):
    """A mocap folder with two small archives (Bandai clips; two ys2010 rigs and a corrupt member)."""
    root = tmp_path_factory.mktemp("mocap")
    (root / "extra").mkdir()
    bandai = sorted((mocap / "sample").glob("*.bvh"))[:2]
    write_tar(root / f"{BANDAI}.tar.xz", [(f"data/{p.name}", p.read_bytes()) for p in bandai])
    extra = [(f"ys/{n.split('_', 1)[1]}", (mocap / "extra" / "sample" / n).read_bytes()) for n in EXTRA]
    write_tar(root / "extra" / "tiny.tar.xz", [*extra, ("ys/broken.bvh", BROKEN)])
    cache = tmp_path_factory.mktemp("cache")
    return root, cache, load_corpus(root=root, cache_dir=cache, progress=False)


def test_family_key_groups_near_duplicates():
    ys = "snu-ys2010"
    # the same take saved for two rigs under two folders, and the same walk with its words reordered
    assert family_key(ys, "Physics2_wd2_Take_001.bvh") == family_key(ys, "Samsung_wd2_Take_001.bvh")
    a, b = "Walking_lastmotion_woddy2_walk_fast_stright.bvh", "Walking_rawmotion_woddy2_walk_straight_fast.bvh"
    assert family_key(ys, a) == family_key(ys, b)
    assert family_key(ys, "Physics2_wd2_WalkLean00.bvh") == family_key(ys, "Physics2_wd2_WalkLean04.bvh")
    assert family_key(ys, "Physics2_wd2_WalkLean00.bvh") != family_key(ys, "Physics2_wd2_WalkSoldier00.bvh")
    assert family_key(ys, "Samsung_wd2_tt_serve.bvh") == family_key(ys, "Samsung_wd2_tt_serve_1.bvh")
    # takes of one motion of one subject stay together; other motions and subjects apart
    vs = "snu-vsports"
    assert family_key(vs, "s_003_6_1.bvh") == family_key(vs, "s_003_6_2.bvh") != family_key(vs, "s_003_5_1.bvh")
    assert family_key(vs, "s_003_6_1.bvh") != family_key(vs, "s_004_6_1.bvh")
    mpi = "mpi-poseprior"
    assert family_key(mpi, "03098_lar2b.bvh") == family_key(mpi, "03098_lar1.bvh") != family_key(mpi, "00008_lar1")
    ad = "animated-drawings"
    assert family_key(ad, "cmu_14_14_short.bvh") == family_key(ad, "cmu_14_14.bvh")
    assert family_key(ad, "5yr_old_mouse002.bvh") == family_key(ad, "5yr_old_mouse_2.bvh")
    assert family_key(BANDAI, "dataset-2_run_normal_010.bvh") != family_key(BANDAI, "dataset-2_run_normal_011.bvh")


def test_val_part_is_fixed_by_family():
    names = ["dataset-2_run_normal_010.bvh", "dataset-2_run_normal_011.bvh"]
    assert val_flags(BANDAI, names, ["a", "b"]).tolist() == [True, False]
    names = [f"s_{s:03d}_{m}_{t}.bvh" for s in range(1, 11) for m in range(1, 9) for t in (1, 2)]
    fams = [family_key("snu-vsports", n) for n in names]
    val = val_flags("snu-vsports", names, fams)
    assert np.array_equal(val, val_flags("snu-vsports", names[::-1], fams[::-1])[::-1])  # order does not matter
    assert val.sum() == 16 and len({f for f, v in zip(fams, val, strict=True) if v}) == 8  # 10 % of 80 families
    assert val_flags("mpi-poseprior", ["a", "b", "c"], ["x", "y", "z"]).sum() == 1  # a small source has one


def test_archive_read_mapped_and_cached(tiny):
    root, cache, cs = tiny
    assert set(cs.sources) == {BANDAI, "tiny"} and len(cs) == 4
    assert cs.fps == 30.0 and cs.clip_offsets.shape == (4, 22, 3) and cs.skeleton.names[1] == "Hips"
    # one report and one cache per source; the corrupt member is reported with its reason and skipped
    reports = {json.loads(p.read_text())["source"]: json.loads(p.read_text()) for p in cache.glob("corpus-*.json")}
    assert set(reports) == {BANDAI, "tiny"} and len(list(cache.glob("corpus-*.npz"))) == 2
    r = reports["tiny"]
    assert r["clips"] == 2 and r["refused"] == 1 and r["refused_clips"][0]["clip"] == "broken.bvh"
    assert "BVHError" in r["refused_clips"][0]["reason"] and "broken.bvh" not in cs.names
    assert r["fps"] == {"24": 1, "30": 1} and len(r["rigs"]) == 2
    assert all(v["mapped"] >= 19 for v in r["rigs"].values())
    # the 24 Hz clip is resampled to 30 Hz on load
    i = cs.names.index(EXTRA[0].split("_", 1)[1])
    n24 = r["frames"] - next(v for k, v in _native_lengths(cache).items() if k != EXTRA[0].split("_", 1)[1])
    assert abs((cs.starts[i + 1] - cs.starts[i]) - (n24 - 1) * 30 / 24) <= 1.5
    # bodies in metres: adult hips about a metre up, each clip its own offsets
    for k in range(len(cs)):
        assert 0.6 < np.median(cs.clip(k)[1][:, 1]) < 1.3
    assert not np.allclose(cs.clip_offsets[0], cs.clip_offsets[2])


def _native_lengths(cache):
    f = next(p for p in cache.glob("corpus-tiny-*.npz"))
    with np.load(f) as z:
        return {str(n): int(b - a) for n, a, b in zip(z["names"], z["starts"][:-1], z["starts"][1:], strict=True)}


def test_cache_is_reused_and_rebuilt_when_stale(tiny, monkeypatch):
    root, cache, cs = tiny

    def fail(*a, **k):
        raise AssertionError("rebuilt")

    monkeypatch.setattr(corpus, "build_source", fail)
    again = load_corpus(root=root, cache_dir=cache, progress=False)
    assert again.names == cs.names and np.array_equal(again.quats, cs.quats)
    monkeypatch.setattr(corpus, "CODE_VERSION", "other")
    with pytest.raises(AssertionError, match="rebuilt"):
        load_corpus(["tiny"], root=root, cache_dir=cache, progress=False)


def test_leave_source_out(tiny):
    _, _, cs = tiny
    tr, held = cs.split("train", exclude_source=["tiny"]), cs.split("heldout", exclude_source=["tiny"])
    assert "tiny" not in tr.sources and set(held.sources) == {"tiny"} and len(held) == 2
    assert "tiny" not in cs.split("val", exclude_source=["tiny"]).sources
    assert held.clip_offsets.shape == (2, 22, 3)
    with pytest.raises(InputError, match="sources"):
        cs.split("train", exclude_source=["nope"])
    with pytest.raises(InputError, match="sources"):
        load_corpus(["nope"], root=tiny[0], cache_dir=tiny[1], progress=False)


def test_per_clip_bodies_reach_the_examples(tiny):
    _, _, cs = tiny
    maker = ExampleMaker(cs, _augment_config("none"))
    rng = np.random.default_rng(0)
    for i in (0, 2):
        ex = maker.make(i, rng)
        skel = cs.skeleton_of(i)
        size = nz.body_size(maker.spec, maker.names, skel.bone_lengths()[maker.keep])
        want = skel.offsets[maker.keep] / size
        want[maker.mr_in] = 0.0
        np.testing.assert_allclose(ex["offsets"][0], want, atol=1e-6)
        # targets are FK of the clip's rotations through its own body
        P = cs.positions(i)[:, maker.keep]
        rel = np.linalg.norm(P[:, :, None] - P[:, None], axis=-1) / size
        got = np.linalg.norm(ex["pos_gt"][:, :, None] - ex["pos_gt"][:, None], axis=-1)
        np.testing.assert_allclose(got, rel[: len(got)], atol=1e-4)


def test_fit_trains_on_the_corpus_without_a_source(tiny, tmp_path, monkeypatch):
    from train import fit

    root, cache, _ = tiny
    real = corpus.load_corpus
    monkeypatch.setattr(corpus, "load_corpus", lambda *a, **k: real(*a, **{**k, "root": root, "cache_dir": cache}))
    out = tmp_path / "run"
    args = ["--out", str(out), "--exclude-source", "tiny", "--steps", "3", "--batch", "2", "--window", "8",
            "--workers", "0", "--hidden", "16", "--layers", "1", "--den-hidden", "8", "--train-split", "all",
            "--augment", "none", "--no-export", "--no-progress"]  # fmt: skip
    assert fit.main(args) == 0
    meta = __import__("torch").load(out / "last.pt", weights_only=False)["meta"]
    assert meta["name"] == "rtik-without-tiny" and BANDAI in meta["training"]["data"]
    assert "tiny" not in meta["training"]["data"] and "non-commercial" in meta["licence"]
    # the knees' and elbows' hinge axes, measured on the training clips (unit, normal to the lower bone)
    assert set(meta["hinges"]) <= {"LowerArm_L", "LowerArm_R", "LowerLeg_L", "LowerLeg_R"} and meta["hinges"]
    for axis in meta["hinges"].values():
        assert abs(np.linalg.norm(axis) - 1) < 1e-5
    # the shipped recipe's solver settings: mean-pose twists of clavicles, neck and limbs; mean-pose leaves
    assert meta["twist_prior"] == list(TWIST_PRIOR) and meta["leaf_prior"] == 1.0


def test_caches_built_at_once_by_two_writers_stay_whole(tiny, monkeypatch):
    """Two training runs started together build the same cache: each writes its own temporary files and leaves
    the other's alone; both get the data and the cache on disk is whole."""
    import threading

    root, _, cs = tiny
    cache = root.parent / "cache-twice"
    cache.mkdir()
    path = root / "extra" / "tiny.tar.xz"
    npz, rep = corpus.cache_paths("tiny", path, cache)
    stale = cache / "corpus-tiny-0000000000.npz"  # an older code version's cache: removed
    stale.write_bytes(b"old")
    foreign = cache / f"{npz.stem}.other.tmp.npz"  # another writer's file in progress: kept
    foreign.write_bytes(b"partial")
    out, errors = [], []

    def build():
        try:
            out.append(corpus.load_source("tiny", path, cache, progress=False, rebuild=True)[0])
        except Exception as e:  # pragma: no cover - the failure this test looks for
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(out) == 2
    again, report = corpus.load_source("tiny", path, cache, progress=False)
    assert np.array_equal(again["quats"], out[0]["quats"]) and report["source"] == "tiny"
    assert not stale.exists() and foreign.exists()
    assert sorted(p.name for p in cache.iterdir()) == sorted([npz.name, rep.name, foreign.name])
