import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from rtik.cli import main
from rtik.errors import InputError
from rtik.eval import evaluation
from rtik.eval import report as evalreport

MOCAP = Path(__file__).resolve().parents[1].parent / "shared" / "mocap"
if not MOCAP.is_dir():
    MOCAP = Path(os.environ.get("RTIK_MOCAP", MOCAP))
SAMPLE = MOCAP / "sample"
KEYS = {"mpjpe_mm", "rot_all_deg", "rot_determined_deg", "rot_limb_deg", "rot_leaf_deg", "grot_all_deg", "jerk_ratio"}

needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"mocap sample not found at {SAMPLE}")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A few sample clips (all val) and links to them under train take numbers: walk and run with a val and a
    train take each, wave-left-hand with a train take only."""
    if not SAMPLE.is_dir():
        pytest.skip(f"mocap sample not found at {SAMPLE}")
    d = tmp_path_factory.mktemp("mocap")
    links = {
        "walk_active_020": ("walk_active_020", "walk_active_021"),
        "run_feminine_030": ("run_feminine_030", "run_feminine_031"),
        "wave-left-hand_elderly_020": ("wave-left-hand_elderly_021",),
    }
    for src, names in links.items():
        for name in names:
            (d / f"dataset-2_{name}.bvh").symlink_to(SAMPLE / f"dataset-2_{src}.bvh")
    return d


def test_split_parsing_and_membership():
    val = evaluation.Split.parse("val")
    assert val.is_test("dataset-2_walk_active_020.bvh") and not val.is_test("dataset-2_walk_active_021.bvh")
    assert val.is_train("dataset-2_walk_active_021.bvh") and not val.is_train("other.bvh")
    s = evaluation.Split.parse("content:wave-left-hand, run")
    assert s.contents == ("run", "wave-left-hand") and str(s) == "content:run,wave-left-hand"
    assert s.is_test("dataset-2_run_elderly_003.bvh") and s.is_test("dataset-2_wave-left-hand_normal_010.bvh")
    assert not s.is_test("dataset-2_wave-right-hand_normal_010.bvh") and s.is_train("dataset-2_walk_normal_011.bvh")
    assert not s.is_train("dataset-2_walk_normal_010.bvh")  # val takes train no model
    assert not s.is_train("dataset-2_run_normal_011.bvh")
    assert evaluation.Split.parse("all").is_test("anything.bvh")
    with pytest.raises(InputError, match="valid contents: walk, walk-turn-left"):
        evaluation.Split.parse("content:swim")
    with pytest.raises(InputError, match="valid splits: val, all, content"):
        evaluation.Split.parse("test")


def test_load_clips_folder_metres_and_prior(tmp_path, data_dir):
    clips, prior = evaluation.load_clips(
        data_dir, evaluation.Split.parse("content:run"), max_frames=30, cache_dir=tmp_path
    )
    assert [c.name for c in clips] == ["dataset-2_run_feminine_030.bvh", "dataset-2_run_feminine_031.bvh"]
    c = clips[0]
    assert c.positions.shape == (30, 22, 3) and c.local_quats.shape == (30, 22, 4)
    assert 0.5 < c.positions[:, 1, 1].mean() < 1.5  # hip height in metres
    assert prior.shape == (22, 4) and np.allclose(np.linalg.norm(prior, axis=-1), 1.0)
    with pytest.raises(InputError, match="no training clips"):
        evaluation.load_clips(SAMPLE, evaluation.Split.parse("val"), limit=1)  # the sample is all val
    with pytest.raises(InputError, match="no clip of split"):
        evaluation.load_clips(tmp_path, evaluation.Split.parse("val"), need_prior=False)


@needs_sample
def test_archive_source_and_prior_cache(tmp_path):
    archive = tmp_path / "mini.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        for name, arcname in (("walk_active_020", "walk_active_020"), ("run_feminine_030", "run_feminine_031")):
            tar.add(SAMPLE / f"dataset-2_{name}.bvh", arcname=f"data/dataset-2_{arcname}.bvh")
    split = evaluation.Split.parse("content:walk")
    clips, prior = evaluation.load_clips(archive, split, max_frames=20, cache_dir=tmp_path / "c")
    assert [c.name for c in clips] == ["dataset-2_walk_active_020.bvh"]
    assert len(list((tmp_path / "c").glob("prior-*.npy"))) == 1
    _, cached = evaluation.load_clips(archive, split, max_frames=20, cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(prior, cached)


@needs_sample
def test_corruption_is_shared_and_seeded():
    clips, _ = evaluation.load_clips(SAMPLE, evaluation.Split("all"), limit=1, max_frames=40, need_prior=False)
    a, ma = evaluation.corrupted_input(clips[0], "occlusion", 0)
    b, mb = evaluation.corrupted_input(clips[0], "occlusion", 0)
    c, _ = evaluation.corrupted_input(clips[0], "noise10", 1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ma, mb)
    assert ma[:, 0].all() and np.array_equal(a[:, 0], clips[0].positions[:, 0])  # the dummy root stays exact
    assert not np.allclose(c[:, 1:], clips[0].positions[:, 1:])


def test_cli_end_to_end(tmp_path, data_dir, capsys):
    out = tmp_path / "r.json"
    png = tmp_path / "r.png"
    argv = [
        "eval", "--data", str(data_dir), "--split", "content:walk", "--limit", "1", "--max-frames", "40",
        "--methods", "analytic,analytic_prior", "--conditions", "clean,noise10", "--cache", str(tmp_path),
        "--json", str(out), "--png", str(png),
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "analytic_prior" in printed and "noise10" in printed and "MPJPE mm" in printed
    doc = json.loads(out.read_text())
    assert set(doc) == {"analytic", "analytic_prior"}
    assert set(doc["analytic"]) == {"clean", "noise10"}
    s = doc["analytic_prior"]["clean"]
    assert KEYS <= set(s) and s["frames"] == 40 and s["clips"] == 1
    assert s["mpjpe_mm"] < 1.0 and s["rot_all_deg"] < doc["analytic"]["clean"]["rot_all_deg"]
    assert doc["analytic"]["noise10"]["mpjpe_mm"] > 10.0
    pytest.importorskip("matplotlib")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # deterministic: the same command gives the same numbers
    assert main(argv) == 0
    assert json.loads(out.read_text()) == doc


def test_cli_rejects_bad_flags(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--data", ".", "--methods", "analytic,oracle"])
    assert "valid methods: model, analytic" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--data", ".", "--conditions", "rain"])
    assert "valid conditions" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--data", ".", "--leaf-prior", "1.5"])
    assert "1.5 is not within 0..1" in capsys.readouterr().err
    assert main(["eval", "--data", "/nonexistent/mocap", "--methods", "analytic"]) == 1
    assert "no mocap data at" in capsys.readouterr().err


def test_table_formats_nan_as_dash():
    from rtik.eval.metrics import Errors

    J = 3
    e = Errors(
        10, 1, np.ones(J), np.ones(J), np.ones(J), 0.0, 0.0, 0, 0.0, 0, np.array([False, True, True]), ("leaf",) * 3
    )
    text = evalreport.table({"analytic": {"clean": e}})
    assert "analytic" in text and " - " in text  # no determined joints, no jerk: shown as '-'
    assert evalreport.to_json({"analytic": {"clean": e}})["analytic"]["clean"]["jerk_ratio"] is None


@pytest.fixture(scope="module")
def model_pack():
    """The shipped model if installed, else the small random-weight test pack of the same contract."""
    from rtik.errors import ModelError
    from rtik.models import modelpack

    pytest.importorskip("rtik.solve.solver")
    try:
        return modelpack.load(None).path
    except ModelError:
        pass
    pytest.importorskip("torch")
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import steppack

    pack = steppack.cached_pack()
    if pack is None:
        pytest.skip("no mocap sample to build the test pack from")
    return pack.path


@needs_sample
def test_cli_model_through_the_runtime_solver(tmp_path, model_pack, capsys):
    out = tmp_path / "m.json"
    argv = [
        "eval", "--data", str(SAMPLE), "--split", "content:run", "--limit", "1", "--max-frames", "30",
        "--model", str(model_pack), "--conditions", "clean,occlusion", "--cache", str(tmp_path), "--json", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert list(doc) == ["model", "analytic", "analytic_prior", "analytic_prior_oneeuro"]
    m = doc["model"]["clean"]
    assert KEYS <= set(m) and m["frames"] == 30
    assert m["mpjpe_mm"] < 5.0  # the solver's refinement reproduces observed positions
    assert doc["model"]["occlusion"]["mpjpe_mm"] > m["mpjpe_mm"]
