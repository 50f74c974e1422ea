"""``rtik solve``: BVH/NPZ/CSV in, BVH out; positions round-trip within 1 mm on clean clips."""

from __future__ import annotations

import numpy as np
import pytest

from rtik.cli import main
from rtik.formats import bvh
from rtik.geometry import rotations as rot


def _roundtrip_mm(src_positions, out_path, unit_to_mm):
    out = bvh.read(out_path).positions()
    return np.linalg.norm(out - src_positions, axis=-1).max() * unit_to_mm


def test_bvh_clips_round_trip_within_1mm(pack, sample_clips, tmp_path):
    for clip in sample_clips[::7]:
        dst = tmp_path / (clip.stem + ".bvh")
        assert main(["solve", str(clip), "-o", str(dst), "--model", str(pack.path)]) == 0
        src = bvh.read(clip)
        assert _roundtrip_mm(src.positions(), dst, 10.0) < 1.0  # the data is in centimetres
        out = bvh.read(dst)
        assert out.skeleton.names == src.skeleton.names and out.num_frames == src.num_frames
        assert out.fps == pytest.approx(src.fps, rel=1e-5)
        # bone lengths calibrated from the input, in its unit
        np.testing.assert_allclose(out.skeleton.bone_lengths()[2:], src.skeleton.bone_lengths()[2:], rtol=1e-4)


def test_folder_in_folder_out(pack, sample_clips, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for clip in sample_clips[:2]:
        (src / clip.name).write_bytes(clip.read_bytes())
    (src / "broken.bvh").write_text("HIERARCHY\nROOT x\n{\n")
    assert main(["solve", str(src), "-o", str(tmp_path / "out"), "--model", str(pack.path)]) == 1
    captured = capsys.readouterr()
    assert "broken.bvh" in captured.err and "solved 2/3 files" in captured.out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(c.name for c in sample_clips[:2])


def test_npz_with_mask_and_units(pack, sample_clips, tmp_path):
    m = bvh.read(sample_clips[0])
    P = m.positions()[:60, 1:] * 10.0  # millimetres, input joints only
    mask = np.ones(P.shape[:2], bool)
    mask[10:20, 8] = False
    P[10:20, 8] = np.nan
    f = tmp_path / "clip.npz"
    np.savez(f, positions=P, joints=np.array(m.skeleton.names[1:]), fps=30.0, units="mm", mask=mask)
    dst = tmp_path / "clip.bvh"
    assert main(["solve", str(f), "-o", str(dst), "--model", str(pack.path)]) == 0
    out = bvh.read(dst).positions()[:, 1:]
    err = np.linalg.norm(out - np.nan_to_num(P), axis=-1)
    assert err[mask].max() < 1.0  # mm, observed joints


def test_npz_rows_that_hold_another_rows_pose_take_its_output(pack, sample_clips, tmp_path):
    """A landmarks file's ``frames``/``source`` (``rtik video``: frames with no person repeat the last seen one):
    those rows come out as the row they repeat, exactly; the others are solved as they are."""
    from rtik.formats.points import read_input

    m = bvh.read(sample_clips[0])
    P = m.positions()[:30, 1:] / 100.0
    frames, source = np.arange(30), np.arange(30)
    source[12:18] = 11  # held from frame 11
    source[0:2] = 2  # a clip that opens with no person: held from its first one
    P = P[source]
    f = tmp_path / "held.npz"
    np.savez(f, positions=P, joints=np.array(m.skeleton.names[1:]), fps=30.0, frames=frames, source=source)
    rep = read_input(f).repeats
    assert rep.tolist() == [2, 2] + [-1] * 10 + [11] * 6 + [-1] * 12
    dst = tmp_path / "held.bvh"
    assert main(["solve", str(f), "-o", str(dst), "--model", str(pack.path)]) == 0
    out = bvh.read(dst).positions()
    np.testing.assert_allclose(out[12:18], out[[11] * 6], atol=1e-6)
    np.testing.assert_allclose(out[0:2], out[[2, 2]], atol=1e-6)
    assert np.abs(out[19] - out[11]).max() > 1e-3  # the rest moves on
    # a repeat of a repeat resolves to the row with a pose of its own; rows outside the file are solved as they are
    np.savez(f, positions=P[:4], joints=np.array(m.skeleton.names[1:]), fps=30.0, frames=np.array([0, 1, 2, 5]),
             source=np.array([1, 2, 2, 9]))  # fmt: skip
    assert read_input(f).repeats.tolist() == [2, 2, -1, -1]


def test_npz_with_complex_positions_is_refused(pack, sample_clips, tmp_path, capsys):
    m = bvh.read(sample_clips[0])
    f = tmp_path / "clip.npz"
    np.savez(f, positions=m.positions()[:5, 1:] / 100.0 + 0j, joints=np.array(m.skeleton.names[1:]), fps=30.0)
    assert main(["solve", str(f), "-o", str(tmp_path / "out.bvh"), "--model", str(pack.path)]) == 1
    assert "real numbers" in capsys.readouterr().err and not (tmp_path / "out.bvh").exists()


def test_csv_input(pack, sample_clips, tmp_path):
    m = bvh.read(sample_clips[1])
    P = m.positions()[:40, 1:] / 100.0
    names = m.skeleton.names[1:]
    head = ["frame", "time"] + [f"{j}_{a}" for j in names for a in "xyz"]
    lines = [",".join(head)] + [
        ",".join([str(i), f"{i / 30:.6f}"] + [f"{v:.6f}" for v in P[i].reshape(-1)]) for i in range(len(P))
    ]
    f = tmp_path / "clip.csv"
    f.write_text("\n".join(lines) + "\n")
    dst = tmp_path / "clip.bvh"
    assert main(["solve", str(f), "-o", str(dst), "--model", str(pack.path)]) == 0
    out = bvh.read(dst)
    assert out.fps == pytest.approx(30.0, rel=1e-3)
    assert np.linalg.norm(out.positions()[:, 1:] - P, axis=-1).max() < 1.5e-3  # 6-decimal CSV, metres


def test_errors_name_the_file(pack, tmp_path, capsys):
    bad = tmp_path / "clip.npz"
    np.savez(bad, positions=np.zeros((3, 2, 3)))
    assert main(["solve", str(bad), "-o", str(tmp_path / "o.bvh"), "--model", str(pack.path)]) == 1
    assert f"{bad}: missing array 'joints'" in capsys.readouterr().err
    other = tmp_path / "clip.c3d"
    other.write_bytes(b"x")
    assert main(["solve", str(other), "-o", str(tmp_path / "o.bvh"), "--model", str(pack.path)]) == 1
    assert "unsupported input type; valid: .bvh, .npz, .csv" in capsys.readouterr().err


def test_unmatched_names_fail_clearly(pack, tmp_path, capsys):
    f = tmp_path / "clip.npz"
    np.savez(f, positions=np.zeros((3, 2, 3)), joints=np.array(["a", "b"]), fps=30.0)
    assert main(["solve", str(f), "-o", str(tmp_path / "o.bvh"), "--model", str(pack.path)]) == 1
    err = capsys.readouterr().err
    assert str(f) in err and "does not provide the root joint 'Hips'" in err


def test_bench_json(pack, capsys):
    import json

    assert main(["bench", "--model", str(pack.path), "--streams", "1,3", "--frames", "20", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backend"] == "onnx" and [r["streams"] for r in info["results"]] == [1, 3]
    for r in info["results"]:
        assert r["p50_us"] > 0 and r["p99_us"] >= r["p50_us"] and r["frames_per_s"] > 0
        assert r["memory_per_stream_bytes"] > 0


def test_bench_paced_and_kernel_choice(pack, capsys):
    import json

    args = ["bench", "--model", str(pack.path), "--streams", "1", "--frames", "10", "--json"]
    assert main([*args, "--rate", "200", "--kernels", "numpy"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["rate_hz"] == 200.0 and info["kernels"] == "numpy" and info["results"][0]["p50_us"] > 0
    assert main([*args, "--rate", "-5"]) == 1
    assert "--rate must be a rate in Hz" in capsys.readouterr().err
    assert main([*args, "--noise", "10"]) == 0  # noisy input: the smoothing gate opens
    info = json.loads(capsys.readouterr().out)
    assert info["noise_mm"] == 10.0 and info["results"][0]["p50_us"] > 0
    assert main([*args, "--noise", "-1"]) == 1
    assert "--noise must be a standard deviation in mm" in capsys.readouterr().err


def test_rig_input_writes_the_inputs_own_rig(pack, sample_clips, tmp_path):
    clip = sample_clips[3]
    dst = tmp_path / "own.bvh"
    assert main(["solve", str(clip), "-o", str(dst), "--model", str(pack.path), "--rig", "input"]) == 0
    src, out = bvh.read(clip), bvh.read(dst)
    assert out.skeleton.names == src.skeleton.names and out.skeleton.channels == src.skeleton.channels
    np.testing.assert_allclose(out.skeleton.offsets[2:], src.skeleton.offsets[2:], atol=1e-5)  # its own offsets
    assert _roundtrip_mm(src.positions(), dst, 10.0) < 1.0


def test_rig_from_another_file(pack, sample_clips, mocap, tmp_path):
    other = mocap / "extra" / "sample" / "mpi-poseprior_03100_S7.bvh"
    if not other.exists():
        pytest.skip("no extra sample clips")
    dst = tmp_path / "mpi.bvh"
    assert main(["solve", str(sample_clips[0]), "-o", str(dst), "--model", str(pack.path), "--rig", str(other)]) == 0
    out, rig = bvh.read(dst), bvh.read(other)
    assert out.skeleton.names == rig.skeleton.names and out.num_frames == bvh.read(sample_clips[0]).num_frames
    P = out.positions()
    assert np.isfinite(P).all()
    feet = [rig.skeleton.index(n) for n in ("LeftToeBase", "RightToeBase")]
    head = rig.skeleton.index("Head")
    assert (P[:, head, 1] > P[:, feet, 1].max(axis=1)).all()  # upright in the rig's own axes (Y up)


def test_rig_errors_are_clear(pack, sample_clips, tmp_path, capsys):
    npz = tmp_path / "p.npz"
    np.savez(
        npz,
        positions=bvh.read(sample_clips[0]).positions()[:10] / 100,
        joints=bvh.read(sample_clips[0]).skeleton.names,
        fps=30.0,
    )  # noqa: E501
    args = ["-o", str(tmp_path / "o.bvh"), "--model", str(pack.path), "--rig"]
    assert main(["solve", str(npz), *args, "input"]) == 1
    assert "needs a BVH rig" in capsys.readouterr().err
    stub = tmp_path / "stub.bvh"
    stub.write_text(
        "HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation "
        "Yrotation\n JOINT Head\n {\n  OFFSET 0 10 0\n  CHANNELS 3 Zrotation Xrotation Yrotation\n  End Site\n"
        "  {\n   OFFSET 0 5 0\n  }\n }\n}\nMOTION\nFrames: 1\nFrame Time: 0.033\n0 0 0 0 0 0 0 0 0\n"
    )
    assert main(["solve", str(sample_clips[0]), "-o", str(tmp_path / "o.bvh"), "--model", str(pack.path),
                 "--rig", str(stub)]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "cannot map this rig" in err and "Hand_L" in err and not (tmp_path / "o.bvh").exists()


def test_a_z_up_bvh_is_solved_upright_and_written_back_in_its_own_axes(mocap, tmp_path):
    """The model's world is Y up: a Z-up file's positions are turned before solving, and `--rig input` turns the
    result back into the file's axes (the shipped model: a random one turns this rig's missing spine at random,
    which the rig, whose chest hangs rigidly from its hips, cannot follow)."""
    src = mocap / "extra" / "sample" / "animated-drawings_cmu_new2_motorcycle.bvh"  # Z up, inches
    if not src.exists():
        pytest.skip("no extra sample clips")
    from rtik.formats.rig import clip_arrays
    from rtik.geometry.kinematics import forward_kinematics

    up = tmp_path / "up.bvh"
    assert main(["solve", str(src), "-o", str(up)]) == 0
    P = bvh.read(up).positions()
    m = bvh.read(up).skeleton
    assert (P[:, m.index("Head"), 1] > P[:, m.index("Hips"), 1]).all()  # upright in the model's Y-up world
    own = tmp_path / "own.bvh"
    assert main(["solve", str(src), "-o", str(own), "--rig", "input"]) == 0
    want = forward_kinematics(*clip_arrays(bvh.read(src)))[0]
    got = forward_kinematics(*clip_arrays(bvh.read(own)))[0]
    assert np.abs(got - want).max() * 25.4 < 1.0  # mm: back in the file's Z-up axes


def test_twist_prior_flag_turns_twists_not_positions(sample_clips, tmp_path):
    clip = sample_clips[0]
    out = {}
    for w in ("0", "1"):
        dst = tmp_path / f"w{w}.bvh"
        assert main(["solve", str(clip), "-o", str(dst), "--model", "default", "--twist-prior", w]) == 0
        out[w] = bvh.read(dst)
    np.testing.assert_allclose(out["0"].positions(), out["1"].positions(), atol=0.1)  # centimetres: within 1 mm
    j = out["1"].skeleton.index("UpperArm_R")
    turn = rot.quat_geodesic(out["0"].local_quats()[:, j], out["1"].local_quats()[:, j])
    assert np.degrees(turn).max() > 1.0  # another twist
    with pytest.raises(SystemExit):
        main(["solve", str(clip), "-o", str(tmp_path / "x.bvh"), "--twist-prior", "2"])
