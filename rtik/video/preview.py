"""A contact sheet: frames of a video, each beside the skeleton solved for it (front view, Y up), as one PNG.

Each cell shows the video frame with the landmarks the estimator found (visible ones solid, the others hollow) and,
to its right, the solved skeleton by forward kinematics on the floor (the grey line), all cells at one scale so
that translation shows. Frames with no person say so (their skeleton is the held pose, or none when cut).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rtik.errors import InputError
from rtik.formats.layouts import MEDIAPIPE33
from rtik.video.frames import cv2, open_video
from rtik.video.landmarks import Track

#: landmark pairs drawn on the video frames
BONES_2D = tuple(
    (MEDIAPIPE33.index(a), MEDIAPIPE33.index(b))
    for a, b in (
        ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"), ("left_shoulder", "left_hip"),
        ("right_shoulder", "right_hip"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
        ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"), ("left_hip", "left_knee"),
        ("left_knee", "left_ankle"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
        ("left_ankle", "left_heel"), ("left_heel", "left_foot_index"), ("right_ankle", "right_heel"),
        ("right_heel", "right_foot_index"), ("left_ear", "nose"), ("right_ear", "nose"),
    )
)  # fmt: skip
CELL_H = 240  # pixels, the height of every panel
COLOURS = {"left": (0, 160, 255), "right": (255, 120, 0), "centre": (40, 200, 40)}  # BGR


def pick(n_frames: int, count: int) -> np.ndarray:
    """``count`` frame indices spread evenly over ``n_frames`` (fewer when the clip is shorter)."""
    return np.unique(np.linspace(0, n_frames - 1, min(count, n_frames)).round().astype(int))


def _side(name: str) -> tuple[int, int, int]:
    return COLOURS["left" if "left" in name.lower() or name.endswith("_L") else
                   "right" if "right" in name.lower() or name.endswith("_R") else "centre"]  # fmt: skip


def _video_panel(cv, rgb, track: Track, t: int, vis_min: float):
    bgr = cv.cvtColor(rgb, cv.COLOR_RGB2BGR)
    s = CELL_H / bgr.shape[0]
    img = cv.resize(bgr, (max(1, int(round(bgr.shape[1] * s))), CELL_H), interpolation=cv.INTER_AREA)
    if track.detected[t]:
        p, v = track.image[t] * s, track.visibility[t]
        for a, b in BONES_2D:
            if min(v[a], v[b]) >= vis_min:
                cv.line(img, tuple(int(x) for x in p[a]), tuple(int(x) for x in p[b]), (255, 255, 255), 1, cv.LINE_AA)
        for k, name in enumerate(MEDIAPIPE33):
            cv.circle(img, tuple(int(x) for x in p[k]), 3, _side(name), -1 if v[k] >= vis_min else 1, cv.LINE_AA)
    return img


def _skeleton_panel(cv, pos, parents, names, box, label: str):
    """Front view (x right, y up) of ``pos (J, 3)`` in a square panel; ``box``: (xmin, xmax, ymin, ymax) metres."""
    img = np.full((CELL_H, CELL_H, 3), 32, np.uint8)
    xmin, xmax, ymin, ymax = box
    scale = 0.9 * CELL_H / max(xmax - xmin, ymax - ymin, 1e-6)
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2

    def px(q):
        return int(round(CELL_H / 2 + (q[0] - cx) * scale)), int(round(CELL_H / 2 - (q[1] - cy) * scale))

    floor = px((0.0, 0.0))[1]
    cv.line(img, (0, floor), (CELL_H - 1, floor), (90, 90, 90), 1)
    if pos is not None:
        for j, par in enumerate(parents):
            if par >= 0:
                cv.line(img, px(pos[par]), px(pos[j]), _side(names[j]), 2, cv.LINE_AA)
        for q in pos:
            cv.circle(img, px(q), 2, (230, 230, 230), -1, cv.LINE_AA)
    cv.putText(img, label, (4, CELL_H - 6), cv.FONT_HERSHEY_SIMPLEX, 0.4, (220, 220, 220), 1, cv.LINE_AA)
    return img


def contact_sheet(video_path, track: Track, solved, skeleton, frames, out: Path, count: int = 6, columns: int = 2,
                  vis_min: float = 0.5) -> Path:  # fmt: skip
    """Write the contact sheet of ``count`` frames of the video to ``out`` (PNG, atomically).

    Args:
        track: the video's landmarks (its ``start`` says which video frame is track frame 0).
        solved: ``(F, J, 3)`` positions of the solved ``skeleton`` (a :class:`~rtik.geometry.skeleton.Skeleton`,
            metres, Y up), row ``r`` for track frame ``frames[r]`` (a frame in no row was cut).
    """
    cv = cv2()
    solved = np.asarray(solved, np.float64)
    row_of = {int(f): r for r, f in enumerate(frames)}
    dummy = skeleton.dummy_root()  # a static root joint at the origin is not drawn
    parents = [-1 if p == dummy and dummy is not None else p for p in skeleton.parents]
    if dummy is not None:
        solved = np.delete(solved, dummy, axis=1)
        keep = [j for j in range(len(parents)) if j != dummy]
        parents = [keep.index(parents[j]) if parents[j] >= 0 else -1 for j in keep]
    names = [n for j, n in enumerate(skeleton.names) if j != dummy]
    picks = set(pick(len(track), count).tolist())
    lo, hi = solved.reshape(-1, 3).min(0), solved.reshape(-1, 3).max(0)
    box = (lo[0] - 0.1, hi[0] + 0.1, min(lo[1], 0.0) - 0.05, hi[1] + 0.1)
    cells = []
    with open_video(video_path, track.fps) as video:
        for i, tm, rgb in video.frames(track.start):
            t = int(round((tm - track.start) * track.fps))
            if t >= len(track):
                break
            if t not in picks:
                continue
            r = row_of.get(t)
            label = f"frame {i}  {tm:.2f} s"
            if not track.detected[t]:
                label = f"frame {i}: no person" + (" (held)" if r is not None else " (cut)")
            left = _video_panel(cv, rgb, track, t, vis_min)
            right = _skeleton_panel(cv, None if r is None else solved[r], parents, names, box, label)
            cells.append(np.concatenate([left, right], axis=1))
    if not cells:
        raise InputError(f"{video_path}: no frame to show")
    width = max(c.shape[1] for c in cells)
    cells = [np.pad(c, ((0, 0), (0, width - c.shape[1]), (0, 0))) for c in cells]
    while len(cells) % columns:
        cells.append(np.zeros_like(cells[0]))
    grid = np.concatenate([np.concatenate(cells[r : r + columns], axis=1) for r in range(0, len(cells), columns)])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv.imencode(".png", grid)
    if not ok:
        raise InputError(f"{out}: cannot encode the contact sheet")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data.tobytes())
    os.replace(tmp, out)
    return out
