"""``rtik solve --ray`` and ``rtik eval --ray``: clips spread over the session's local Ray cluster (``ray_local``)
give the same files and the same numbers as a serial run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_eval_crossrig import tiny  # noqa: F401  (the tiny corpus fixture)

from rtik.cli import main
from rtik.formats import bvh


def same_numbers(a, b, path="") -> None:
    """Nested JSON documents equal, numbers within 1e-6 relative."""
    assert type(a) is type(b) or {type(a), type(b)} <= {int, float}, path
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            same_numbers(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same_numbers(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-9, nan_ok=True), path
    else:
        assert a == b, path


def test_solve_folder_on_ray_equals_the_serial_run(ray_local, pack, sample_clips, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for clip in sample_clips[:3]:
        (src / clip.name).write_bytes(clip.read_bytes())
    (src / "broken.bvh").write_text("HIERARCHY\nROOT x\n{\n")
    model = ["--model", str(pack.path)]
    assert main(["solve", str(src), "-o", str(tmp_path / "serial"), *model]) == 1
    capsys.readouterr()
    assert main(["solve", str(src), "-o", str(tmp_path / "ray"), *model, "--ray", "--workers", "2"]) == 1
    captured = capsys.readouterr()
    assert "broken.bvh" in captured.err and "solved 3/4 files" in captured.out
    names = sorted(p.name for p in (tmp_path / "serial").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "ray").iterdir()) == sorted(c.name for c in sample_clips[:3])
    for name in names:
        a, b = bvh.read(tmp_path / "serial" / name), bvh.read(tmp_path / "ray" / name)
        assert a.skeleton.names == b.skeleton.names and a.num_frames == b.num_frames
        np.testing.assert_allclose(b.local_quats(), a.local_quats(), atol=1e-4)
        np.testing.assert_allclose(b.positions(), a.positions(), atol=1e-4)


def test_solve_one_file_in_another_rig_on_ray(ray_local, pack, sample_clips, tmp_path):
    clip, rig = sample_clips[0], sample_clips[1]
    model = ["--model", str(pack.path), "--rig", str(rig)]
    assert main(["solve", str(clip), "-o", str(tmp_path / "serial.bvh"), *model]) == 0
    assert main(["solve", str(clip), "-o", str(tmp_path / "ray.bvh"), *model, "--ray", "--workers", "1"]) == 0
    a, b = bvh.read(tmp_path / "serial.bvh"), bvh.read(tmp_path / "ray.bvh")
    np.testing.assert_allclose(b.local_quats(), a.local_quats(), atol=1e-4)


def test_eval_on_ray_equals_the_serial_run(ray_local, pack, mocap, tmp_path):
    args = ["eval", "--data", str(mocap / "sample"), "--split", "content:run,walk", "--limit", "3",
            "--max-frames", "30", "--model", str(pack.path), "--conditions", "clean,noise10",
            "--cache", str(tmp_path)]  # fmt: skip
    assert main([*args, "--json", str(tmp_path / "serial.json")]) == 0
    assert main([*args, "--json", str(tmp_path / "ray.json"), "--ray", "--workers", "2"]) == 0
    serial, ray = (json.loads((tmp_path / f).read_text()) for f in ("serial.json", "ray.json"))
    assert serial["model"]["clean"]["clips"] == 3
    same_numbers(ray, serial)


def test_corpus_eval_on_ray_equals_the_serial_run(ray_local, tiny, pack, tmp_path):  # noqa: F811
    cache, _ = tiny
    args = ["eval", "--split", "source:tiny-mpi,tiny-ys", "--corpus", str(cache), "--model", str(pack.path),
            "--max-frames", "30", "--conditions", "clean,occlusion"]  # fmt: skip
    assert main([*args, "--json", str(tmp_path / "serial.json")]) == 0
    assert main([*args, "--json", str(tmp_path / "ray.json"), "--ray", "--workers", "2"]) == 0
    serial, ray = (json.loads((tmp_path / f).read_text()) for f in ("serial.json", "ray.json"))
    assert serial["parts"]["all"]["model"]["clean"]["clips"] == 3
    same_numbers(ray, serial)
