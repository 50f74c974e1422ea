"""Live BVH recording: round trip, crash safety and recover, name confinement, full disk."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import numpy as np
import pytest

from rtik.formats import bvh
from rtik.serve.recorder import COUNT_WIDTH, RecordError, Recording, check_name, recover, resolve


@pytest.fixture(scope="module")
def clip(sample_motions):
    """(skeleton in metres, local quats (F, J, 4), root translation (F, 3) metres, source positions cm)."""
    m = sample_motions[0][1]
    skel = m.skeleton.scaled(0.01)
    root = m.local_positions()[:, skel.motion_root()] * 0.01
    return skel, m.local_quats(), root, m.positions()


def _record(path, clip, units="cm", n=None, frame_time=1 / 30, **kw) -> Recording:
    skel, q, root, _ = clip
    rec = Recording(path, skel, units, frame_time, **kw)
    for i in range(n or len(q)):
        assert rec.write(q[i], root[i], i / 30)
    return rec


@pytest.mark.parametrize("units, scale", [("cm", 1.0), ("m", 0.01)])
def test_recording_round_trip(tmp_path, clip, units, scale):
    rec = _record(tmp_path / "a.bvh", clip, units)
    assert rec.close() and rec.frames == len(clip[1])
    m = bvh.read(rec.path)
    assert m.num_frames == len(clip[1]) and m.frame_time == pytest.approx(1 / 30, abs=1e-6)
    np.testing.assert_allclose(m.positions(), clip[3] * scale, atol=2e-4 * max(scale, 0.01) * 100)


def test_frame_time_estimated_from_timestamps(tmp_path, clip):
    skel, q, root, _ = clip
    rec = Recording(tmp_path / "e.bvh", skel, frame_time=None)
    for i in range(20):
        rec.write(q[i], root[i], 100.0 + i / 120)
    assert rec.close()
    assert bvh.read(rec.path).frame_time == pytest.approx(1 / 120, rel=1e-4)


def test_short_recording_before_the_estimate_is_complete(tmp_path, clip):
    skel, q, root, _ = clip
    rec = Recording(tmp_path / "s.bvh", skel, frame_time=None)
    for i in range(3):
        rec.write(q[i], root[i], i / 60)
    assert rec.close() and bvh.read(rec.path).num_frames == 3


def test_empty_recording_is_a_valid_bvh(tmp_path, clip):
    rec = Recording(tmp_path / "empty.bvh", clip[0])
    assert rec.close() and bvh.read(rec.path).num_frames == 0


def test_header_count_is_padded_while_recording(tmp_path, clip):
    rec = _record(tmp_path / "p.bvh", clip, n=5, flush_interval=1e-9)
    text = (tmp_path / "p.bvh").read_text()
    assert f"Frames: {'0'.ljust(COUNT_WIDTH)}\n" in text and text.count("\n") > 30  # frames flushed already
    rec.close()
    assert f"Frames: {'5'.ljust(COUNT_WIDTH)}\n" in (tmp_path / "p.bvh").read_text()


def test_existing_files_are_never_overwritten(tmp_path, clip):
    (tmp_path / "x.bvh").write_text("precious")
    with pytest.raises(RecordError, match="cannot create recording"):
        Recording(tmp_path / "x.bvh", clip[0])
    assert (tmp_path / "x.bvh").read_text() == "precious"


def test_crash_then_recover(tmp_path, clip, sample_motions):
    """A process killed mid-recording leaves frames on disk (flushed within 1 s); recover makes it readable."""
    path = tmp_path / "crash.bvh"
    code = f"""
import os, numpy as np
from rtik.formats import bvh
from rtik.serve.recorder import Recording
m = bvh.read({str(sample_motions[0][0])!r})
skel = m.skeleton.scaled(0.01)
q = m.local_quats(); root = m.local_positions()[:, 1] * 0.01
rec = Recording({str(path)!r}, skel, "cm", 1 / 30, flush_interval=1e-9)
for i in range(20):
    rec.write(q[i], root[i])
rec._f.write(b"1.0 2.0 3.")   # a partial line, as if cut mid-write
rec._f.flush()
os._exit(1)                    # no close(): the header still says 0
"""
    subprocess.run([sys.executable, "-c", code], check=False, timeout=60)
    assert bvh.read(path).num_frames == 0  # as the crash left it: the placeholder count hides every frame
    assert recover(path) == 20
    m = bvh.read(path)
    assert m.num_frames == 20
    np.testing.assert_allclose(m.positions()[:20], clip[3][:20], atol=2e-3)


def test_recover_drops_a_bad_last_line_and_is_idempotent(tmp_path, clip):
    rec = _record(tmp_path / "r.bvh", clip, n=10)
    rec.close()
    with open(rec.path, "a") as f:
        f.write("1 2 3\n")  # wrong number of values: the damage starts here
    assert recover(rec.path) == 10
    assert recover(rec.path) == 10 and bvh.read(rec.path).num_frames == 10


def test_recover_rejects_non_bvh(tmp_path):
    p = tmp_path / "junk.bvh"
    p.write_text("hello\n")
    with pytest.raises(RecordError, match="not a BVH recording"):
        recover(p)
    with pytest.raises(RecordError, match="cannot read"):
        recover(tmp_path / "missing.bvh")


def test_recover_command(tmp_path, clip, capsys):
    from rtik.cli import main

    rec = _record(tmp_path / "c.bvh", clip, n=4, flush_interval=1e-9)
    rec._f.flush()
    assert main(["recover", str(rec.path)]) == 0
    assert "4 complete frames kept" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["take1", "actor_1-2024.bvh", "A.b.c"])
def test_valid_names(tmp_path, name):
    p = resolve(tmp_path, name)
    assert p.parent == tmp_path.resolve() and p.suffix == ".bvh"


@pytest.mark.parametrize("name", ["../evil", "a/b", "/etc/passwd", "..", "", ".hidden", "a\\b", "x" * 200, "é", "a b"])
def test_traversal_and_odd_names_rejected(tmp_path, name):
    with pytest.raises(RecordError, match="invalid recording name"):
        resolve(tmp_path, name)


def test_check_name_appends_suffix():
    assert check_name("take") == "take.bvh" and check_name("take.BVH") == "take.BVH"


class _FullDisk:
    """A file whose writes fail with ENOSPC after ``room`` bytes, like a full disk."""

    def __init__(self, path, mode, room):
        self.f = open(path, mode)
        self.room = room

    def write(self, b):
        if len(b) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(b)
        return self.f.write(b)

    def flush(self):
        self.f.flush()

    def seek(self, pos):
        return self.f.seek(pos)

    def close(self):
        self.f.close()


def test_full_disk_stops_the_recording_with_an_error(tmp_path, clip):
    skel, q, root, _ = clip
    opener = lambda p, mode: _FullDisk(p, mode, room=9000)
    rec = Recording(tmp_path / "full.bvh", skel, "cm", 1 / 30, flush_interval=1e-9, opener=opener)
    results = [rec.write(q[i], root[i]) for i in range(40)]
    assert results[0] and not results[-1] and rec.closed
    assert "No space left on device" in rec.error
    assert rec.write(q[0], root[0]) is False and rec.close() is False
    kept = bvh.read(rec.path)  # repaired on failure: the frames that fit
    assert 0 < kept.num_frames < 40


def test_full_tmpfs(tmp_path, clip):
    """The same on a real tiny filesystem, where mounting one is allowed (root on Linux)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if sys.platform != "linux" or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)],
                                                 capture_output=True).returncode:  # fmt: skip
        pytest.skip("cannot mount a tmpfs here")
    try:
        skel, q, root, _ = clip
        rec = Recording(mnt / "t.bvh", skel, "cm", 1 / 30, flush_interval=1e-9)
        ok = [rec.write(q[i % len(q)], root[i % len(q)]) for i in range(200)]
        assert not all(ok) and "No space left" in rec.error
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_rig_writer_refuses_a_rig_it_cannot_map(tmp_path):
    from rtik.errors import RtikError
    from rtik.geometry.skeleton import Skeleton
    from rtik.serve.recorder import rig_writer

    stub = tmp_path / "stub.bvh"
    stub.write_text(
        "HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation "
        "Yrotation\n JOINT Head\n {\n  OFFSET 0 10 0\n  CHANNELS 3 Zrotation Xrotation Yrotation\n  End Site\n"
        "  {\n   OFFSET 0 5 0\n  }\n }\n}\nMOTION\nFrames: 1\nFrame Time: 0.033\n0 0 0 0 0 0 0 0 0\n"
    )
    model = Skeleton(("Hips",), np.array([-1]), np.zeros((1, 3)))
    with pytest.raises(RtikError, match="cannot map this rig onto the body: no joint found for Hand_L"):
        rig_writer(model, stub)
