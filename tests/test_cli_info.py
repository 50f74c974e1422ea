"""``rtik info`` and ``rtik bvh-check``, run through the real CLI entry point."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

from rtik import cli
from rtik.commands import bvh_check
from rtik.formats import bvh

GOLDEN = Path(__file__).resolve().parent / "data" / "golden.bvh"
BROKEN = GOLDEN.read_text().replace("1 2 3 90", "1 2 x 90")


def rtik(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def rescaled_copy(motion: bvh.Motion, factor: float, path: Path) -> Path:
    """The clip in another length unit: offsets, End Sites and position channels times ``factor``."""
    skel = motion.skeleton
    ch = motion.channels.copy()
    col = 0
    for chans in skel.channels:
        for c in chans:
            if c.endswith("position"):
                ch[:, col] *= factor
            col += 1
    bvh.write(path, bvh.Motion(skel.scaled(factor), motion.frame_time, ch))
    return path


# ------------------------------------------------------------------------------------------------------ info
def test_info_golden(capsys):
    rc, out, _ = rtik(capsys, "info", GOLDEN)
    assert rc == 0
    lines = out.splitlines()
    assert "joints:     7 (1 determined, 6 limb, 0 leaf; motion root Hips)" in lines
    assert "frames:     5" in lines and "duration:   0.200 s" in lines
    assert "fps:        25 (frame time 0.04 s)" in lines
    assert "channels:   24 in all" in lines
    assert any("Yrotation Xrotation Zrotation  [rotation order YXZ]: Head" in ln for ln in lines)
    assert "  0 x 1   (none): Hand" in lines
    assert lines[lines.index("skeleton:") + 1 :][:2] == ["  Hips  [determined]", "    Chest  [limb]"]


def test_info_sample_clip_and_units(capsys, sample_motions, tmp_path):
    path, motion = sample_motions[0]
    rc, out, _ = rtik(capsys, "info", path)
    assert rc == 0
    assert "dummy root joint_Root" in out and "joints:     22 (2 determined, 14 limb, 5 leaf" in out
    assert "units:      cm (hip height" in out
    assert (
        "6 x 22  Xposition Yposition Zposition Zrotation Xrotation Yrotation  [rotation order ZXY]: every joint" in out
    )
    assert f"frames:     {motion.num_frames}\n" in out and "fps:        30 " in out
    for factor, unit in ((0.01, "m"), (10.0, "mm")):
        rc, out, _ = rtik(capsys, "info", rescaled_copy(motion, factor, tmp_path / f"{unit}.bvh"))
        assert rc == 0 and f"units:      {unit} (hip height" in out
    h = bvh.hip_height(motion)
    assert 80 < h < 100  # the performer's hips are ~0.9 m above the feet


def test_info_errors(capsys, tmp_path):
    rc, _, err = rtik(capsys, "info", tmp_path / "nope.bvh")
    assert rc == 1 and "nope.bvh: cannot read" in err
    bad = tmp_path / "bad.bvh"
    bad.write_text(BROKEN)
    rc, _, err = rtik(capsys, "info", bad)
    assert rc == 1 and "bad.bvh:" in err and "non-numeric value 'x'" in err


# ------------------------------------------------------------------------------------------------- bvh-check
def test_bvh_check_file(capsys):
    rc, out, _ = rtik(capsys, "bvh-check", GOLDEN)
    assert rc == 0 and out == "1 ok, 0 failed\n"


def test_bvh_check_folder_recursive_with_failure(capsys, tmp_path):
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "a.bvh").write_bytes(GOLDEN.read_bytes())
    (tmp_path / "deep" / "er" / "b.BVH").write_text(BROKEN)
    (tmp_path / "deep" / "notes.txt").write_text("not a clip")
    rc, out, _ = rtik(capsys, "bvh-check", tmp_path)
    lines = out.splitlines()
    assert rc == 1
    assert lines[-1] == "1 ok, 1 failed"
    assert len(lines) == 2 and lines[0].startswith(f"FAIL {tmp_path / 'deep' / 'er' / 'b.BVH'}: ")
    assert "non-numeric value 'x' in frame 1" in lines[0]


def test_bvh_check_tar_xz(capsys, tmp_path):
    arc = tmp_path / "clips.tar.xz"
    with tarfile.open(arc, "w:xz") as tar:
        for name, data in (("d/a.bvh", GOLDEN.read_bytes()), ("d/b.bvh", BROKEN.encode()), ("d/c.bvh", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    rc, out, _ = rtik(capsys, "bvh-check", arc)
    lines = out.splitlines()
    assert rc == 1 and lines[-1] == "1 ok, 2 failed"
    assert lines[0].startswith(f"FAIL {arc}:d/b.bvh: ") and lines[1].startswith(f"FAIL {arc}:d/c.bvh: ")
    # an uncompressed tar without the usual suffix is recognised by content
    plain = tmp_path / "clips.archive"
    with tarfile.open(plain, "w") as tar:
        tar.add(GOLDEN, arcname="g.bvh")
    rc, out, _ = rtik(capsys, "bvh-check", plain, GOLDEN)
    assert rc == 0 and out == "2 ok, 0 failed\n"


def test_bvh_check_damaged_archive_counts_as_failure(capsys, tmp_path):
    arc = tmp_path / "broken.tar.xz"
    arc.write_bytes(b"definitely not xz")
    rc, out, _ = rtik(capsys, "bvh-check", arc, GOLDEN)
    assert rc == 1 and "cannot read archive" in out and out.splitlines()[-1] == "1 ok, 1 failed"


def test_bvh_check_bad_paths(capsys, tmp_path):
    rc, _, err = rtik(capsys, "bvh-check", tmp_path / "missing")
    assert rc == 1 and "no such file or folder" in err
    (tmp_path / "empty").mkdir()
    rc, _, err = rtik(capsys, "bvh-check", tmp_path / "empty")
    assert rc == 1 and "no .bvh files" in err


def test_bvh_check_progress_on_stderr(capsys, monkeypatch, sample_clips):
    monkeypatch.setattr(bvh_check, "PROGRESS_EVERY_S", 0.0)
    rc, out, err = rtik(capsys, "bvh-check", sample_clips[0].parent)
    assert rc == 0 and out == f"{len(sample_clips)} ok, 0 failed\n"
    assert "files checked, 0 failed" in err
    rc, _, err = rtik(capsys, "bvh-check", "--quiet", sample_clips[0])
    assert rc == 0 and err == ""


def test_console_entry_point():
    r = subprocess.run([sys.executable, "-m", "rtik.cli", "bvh-check", str(GOLDEN)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "1 ok, 0 failed\n"
    r = subprocess.run([sys.executable, "-m", "rtik.cli", "info", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "FILE.bvh" in r.stdout


def test_guess_units_bounds():
    m = bvh.read(GOLDEN)
    assert bvh.guess_units(m) is None  # a 15-unit hip height is no known unit
    assert np.isfinite(bvh.hip_height(m))
