"""``rtik video`` and the MediaPipe estimator on real media (tests/data/video, public domain: see its LICENSE.md):
the real MediaPipe graph on a photograph, a short clip end to end into a BVH that reads back, frames with no
person held or cut, ``--start/--end``, and damaged, empty or person-less videos (a clear error, exit 1, no output).

Skipped where the ``video`` extra (mediapipe, opencv) is not installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rtik.cli import main
from rtik.formats import bvh
from rtik.formats.layouts import MEDIAPIPE33

try:  # the video extra; a native library that fails to load raises OSError, not ImportError
    import cv2
    from mediapipe.tasks.python import vision  # noqa: F401
except (ImportError, OSError) as e:
    pytest.skip(f"the video extra is not usable here ({e}); pip install 'rtik[video]'", allow_module_level=True)

MEDIA = Path(__file__).resolve().parent / "data" / "video"
CLIP = MEDIA / "astronaut.mp4"  # 36 frames at 15 frames/s, 320 x 240; frames 12-17 are black
EMPTY = list(range(12, 18))
LM = {n: i for i, n in enumerate(MEDIAPIPE33)}


def _rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_mediapipe_finds_the_astronaut_on_the_photograph():
    from rtik.video.estimator import open_estimator

    img = _rgb(MEDIA / "astronaut.jpg")
    with open_estimator("mediapipe", "image") as est:
        lm = est.estimate(img, 0.0)
        assert est.estimate(np.zeros_like(img), 0.0) is None  # nobody on a black image
    assert lm is not None and lm.world.shape == (33, 3) and lm.image.shape == (33, 2) and lm.visibility.shape == (33,)
    assert np.isfinite(lm.world).all() and np.isfinite(lm.image).all()
    ls, rs, nose = LM["left_shoulder"], LM["right_shoulder"], LM["nose"]
    assert lm.visibility[[ls, rs, nose]].min() > 0.9  # head and shoulders are in view
    assert lm.visibility[[LM["left_ankle"], LM["right_ankle"]]].max() < 0.3  # the legs are not
    assert 0.2 < np.linalg.norm(lm.world[ls] - lm.world[rs]) < 0.5  # metres: a person's shoulder width
    assert lm.world[nose, 1] < lm.world[ls, 1] - 0.1  # y down: the nose above the shoulders
    # she faces the camera: her left shoulder is on the image's right, the nose near the image's middle
    assert lm.image[ls, 0] > lm.image[rs, 0]
    assert 0.3 * img.shape[1] < lm.image[nose, 0] < 0.7 * img.shape[1] and lm.image[nose, 1] < 0.4 * img.shape[0]


def test_unknown_estimator_and_mode_are_clear_errors():
    from rtik.errors import InputError
    from rtik.video.estimator import open_estimator

    with pytest.raises(InputError, match="available: mediapipe"):
        open_estimator("openpose")
    with pytest.raises(InputError, match="valid: video, image"):
        open_estimator("mediapipe", "stream")


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """The clip through ``rtik video`` with landmarks and a contact sheet."""
    out = tmp_path_factory.mktemp("video")
    code = main(["video", str(CLIP), "-o", str(out / "a.bvh"), "--landmarks", str(out / "a.npz"),
                 "--preview", str(out / "a.png"), "--no-progress"])  # fmt: skip
    assert code == 0
    return out


def test_a_clip_becomes_a_bvh_that_reads_back(solved):
    m = bvh.read(solved / "a.bvh")
    assert m.num_frames == 36 and m.fps == pytest.approx(15.0)  # one frame per video frame (gaps held)
    pos = m.positions()
    assert np.isfinite(pos).all()
    hips = pos[:, m.skeleton.motion_root()]
    assert 0.3 < np.median(hips[:, 1]) < 1.5  # metres above the floor
    np.testing.assert_allclose(pos[EMPTY], pos[[11] * len(EMPTY)], atol=1e-6)  # the last pose held, exactly
    with np.load(solved / "a.npz") as z:
        detected, source = z["detected"], z["source"]
        assert [str(j) for j in z["joints"]] == list(MEDIAPIPE33) and z["positions"].shape == (36, 33, 3)
    np.testing.assert_array_equal(np.flatnonzero(~detected), EMPTY)
    np.testing.assert_array_equal(source[EMPTY], 11)


def test_the_landmarks_solve_to_the_same_bvh_with_rtik_solve(solved, tmp_path):
    """``rtik video`` feeds the solver through the path ``rtik solve --layout mediapipe33`` takes (with the pack
    ``rtik video`` uses by default, the shipped ``landmarks`` one)."""
    out = str(tmp_path / "b.bvh")
    assert main(["solve", str(solved / "a.npz"), "-o", out, "--layout", "mediapipe33", "--model", "landmarks"]) == 0
    a, b = bvh.read(solved / "a.bvh"), bvh.read(tmp_path / "b.bvh")
    np.testing.assert_allclose(a.positions(), b.positions(), atol=1e-4)


def test_the_contact_sheet_is_a_png_of_frames_and_skeletons(solved):
    img = cv2.imread(str(solved / "a.png"))
    assert img is not None and img.shape == (3 * 240, 2 * (320 + 240), 3)  # 6 cells of frame + skeleton, 2 a row
    assert img[:, 320:560].std() > 5  # the first skeleton panel is not blank


def test_gaps_cut_and_a_time_range(tmp_path):
    assert main(["video", str(CLIP), "-o", str(tmp_path / "cut.bvh"), "--gaps", "cut", "--no-progress"]) == 0
    assert bvh.read(tmp_path / "cut.bvh").num_frames == 36 - len(EMPTY)
    code = main(["video", str(CLIP), "-o", str(tmp_path / "part.bvh"), "--start", "0.5", "--end", "1.5",
                 "--root", "fixed", "--landmarks", str(tmp_path / "part.npz"), "--no-progress"])  # fmt: skip
    assert code == 0
    assert bvh.read(tmp_path / "part.bvh").num_frames == 15
    with np.load(tmp_path / "part.npz") as z:
        assert float(z["start"]) == pytest.approx(8 / 15)  # the first frame at or after 0.5 s
        np.testing.assert_array_equal(np.flatnonzero(~z["detected"]), np.array(EMPTY) - 8)  # frames 8-22


def _black_clip(path: Path, n=10):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for _ in range(n):
        w.write(np.zeros((120, 160, 3), np.uint8))
    w.release()


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated", "nobody"])
def test_a_bad_video_is_a_clear_error_and_leaves_no_output(tmp_path, capsys, kind):
    src = tmp_path / f"{kind}.mp4"
    if kind == "garbage":
        src.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    elif kind == "empty":
        src.write_bytes(b"")
    elif kind == "truncated":
        src.write_bytes(CLIP.read_bytes()[: CLIP.stat().st_size // 2])
    else:
        _black_clip(src)
    out = tmp_path / "out"
    code = main(["video", str(src), "-o", str(out / "x.bvh"), "--landmarks", str(out / "x.npz"),
                 "--preview", str(out / "x.png"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert f"{src}" in err and "error" in err
    expected = {"garbage": "not a video", "empty": "empty file", "truncated": "not a video", "nobody": "no person"}
    assert expected[kind] in err
    assert not out.exists() or list(out.iterdir()) == []  # nothing written, no temporary file left


def test_a_video_damaged_inside_gives_what_decodes_and_says_so(tmp_path, capsys):
    data = bytearray(CLIP.read_bytes())
    start, end = data.find(b"mdat"), data.find(b"moov")  # the frames, then the index (mp4v writes it last)
    data[(start + end) // 2 : end - 8] = bytes(end - 8 - (start + end) // 2)  # the second half of the frames zeroed
    src = tmp_path / "damaged.mp4"
    src.write_bytes(bytes(data))
    assert main(["video", str(src), "-o", str(tmp_path / "d.bvh"), "--no-progress"]) == 0
    assert "frames could be decoded (damaged?)" in capsys.readouterr().err
    assert 0 < bvh.read(tmp_path / "d.bvh").num_frames < 36


def test_a_folder_in_gives_a_folder_out_and_a_bad_file_does_not_stop_it(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "good.mp4").write_bytes(CLIP.read_bytes())
    (src / "bad.mp4").write_bytes(b"not a video at all")
    (src / "notes.txt").write_text("not taken")
    code = main(["video", str(src), "-o", str(tmp_path / "out"), "--gaps", "cut", "--no-progress"])
    out = capsys.readouterr()
    assert code == 1 and "bad.mp4" in out.err and "solved 1/2 videos" in out.out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.bvh"]
    assert bvh.read(tmp_path / "out" / "good.bvh").num_frames == 30
