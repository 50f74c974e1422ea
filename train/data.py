"""Training data: the clips of a BVH collection as arrays, split by take, cached as npz.

A *clip set* holds, for every clip, the local rotations of every joint (XYZW, the motion root's relative to the
dummy root, i.e. world) and the motion root's translation in metres, concatenated over clips, plus the clip
names, contents, styles and take numbers (``dataset-2_{content}_{style}_{take}.bvh``). Positions come from
forward kinematics when needed (after bone-length augmentation), so the cache stores rotations only.

    python -m train.data --data /path/to/bandai-namco-motion-2.tar.xz     # build the cache (progress bar)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtik.errors import InputError
from rtik.formats import bvh
from rtik.geometry.kinematics import forward_kinematics
from rtik.geometry.skeleton import Skeleton
from rtik.models import normalize as nz

CM = 0.01  # the Bandai Namco data is in centimetres
CACHE_DIR = Path(__file__).resolve().parents[1] / "cache"
_NAME_RE = re.compile(r"dataset-\d+_(?P<content>[a-z\-]+)_(?P<style>[a-z]+)_(?P<take>\d+)\.bvh$", re.IGNORECASE)
VAL_EVERY = 10  # clips whose take number is a multiple of this are the val split


def mocap_root() -> Path:
    """The shared mocap folder: ``../shared/mocap`` beside the repository, else ``$RTIK_MOCAP``."""
    p = Path(__file__).resolve().parents[1].parent / "shared" / "mocap"
    if p.is_dir():
        return p
    env = os.environ.get("RTIK_MOCAP")
    if env and Path(env).is_dir():
        return Path(env)
    raise InputError(f"mocap data not found at {p}; set RTIK_MOCAP to the folder holding the data")


def default_archive() -> Path:
    return mocap_root() / "bandai-namco-motion-2.tar.xz"


def read_skeleton(path) -> Skeleton:
    """The skeleton of a BVH file, offsets in metres."""
    return bvh.read(path).skeleton.scaled(CM)


def parse_name(name: str) -> tuple[str, str, int]:
    """``(content, style, take)`` of a clip file name; clips not following the pattern get ``("", "", -1)``."""
    m = _NAME_RE.search(Path(name).name)
    if not m:
        return "", "", -1
    return m["content"], m["style"], int(m["take"])


@dataclass(frozen=True, eq=False)
class ClipSet:
    """Clips as concatenated arrays.

    Fields:
        skeleton: the skeleton, offsets in metres.
        fps: frame rate (Hz).
        quats: ``(N, J, 4)`` float32 local rotations, XYZW.
        root: ``(N, 3)`` float32 motion-root translation, metres.
        starts: ``(C + 1,)`` int64 first frame of each clip (last = N).
        names, contents, styles: ``(C,)`` per clip; takes: ``(C,)`` int (-1 when unknown).
        sources: ``(C,)`` source (archive) of each clip, or ``()`` for one unnamed source.
        families: ``(C,)`` clip family (clips of one family are never split apart), or ``()``.
        clip_offsets: ``(C, J, 3)`` float32 rest offsets of each clip's body, metres, or ``None`` (every clip
            has ``skeleton``'s; a multi-source corpus has one body per performer).
        val: ``(C,)`` bool, the clips of the val split, or ``None`` (the take rule: take % 10 == 0).
    """

    skeleton: Skeleton
    fps: float
    quats: np.ndarray
    root: np.ndarray
    starts: np.ndarray
    names: tuple[str, ...]
    contents: tuple[str, ...]
    styles: tuple[str, ...]
    takes: np.ndarray
    sources: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    clip_offsets: np.ndarray | None = None
    val: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_frames(self) -> int:
        return int(self.starts[-1])

    def clip(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(quats (F, J, 4), root (F, 3))`` of clip ``i``."""
        a, b = self.starts[i], self.starts[i + 1]
        return self.quats[a:b], self.root[a:b]

    def subset(self, keep) -> ClipSet:
        """The clips where ``keep (C,)`` is true."""
        idx = np.nonzero(np.asarray(keep, dtype=bool))[0]
        parts = [self.clip(i) for i in idx]
        lens = [len(q) for q, _ in parts]
        return ClipSet(
            self.skeleton,
            self.fps,
            np.concatenate([q for q, _ in parts]) if parts else self.quats[:0],
            np.concatenate([r for _, r in parts]) if parts else self.root[:0],
            np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
            tuple(self.names[i] for i in idx),
            tuple(self.contents[i] for i in idx),
            tuple(self.styles[i] for i in idx),
            self.takes[idx],
            tuple(self.sources[i] for i in idx) if self.sources else (),
            tuple(self.families[i] for i in idx) if self.families else (),
            None if self.clip_offsets is None else self.clip_offsets[idx],
            None if self.val is None else self.val[idx],
        )

    def skeleton_of(self, i: int) -> Skeleton:
        """The body of clip ``i`` (offsets in metres): ``skeleton`` with the clip's own rest offsets if it has
        them."""
        if self.clip_offsets is None:
            return self.skeleton
        return self.skeleton.with_offsets(self.clip_offsets[i])

    def split(self, which: str, exclude_content=(), exclude_source=()) -> ClipSet:
        """``"train"`` (not val, without ``exclude_content`` and ``exclude_source``), ``"val"`` (the val clips:
        take % 10 == 0, or :attr:`val` where set; without the excluded), ``"heldout"`` (every clip of
        ``exclude_content`` or ``exclude_source``) or ``"all"``."""
        ex = set(exclude_content)
        unknown = ex - set(self.contents)
        if unknown:
            raise InputError(
                f"unknown content {', '.join(sorted(unknown))}; contents: {', '.join(sorted(set(self.contents)))}"
            )
        exs = set(exclude_source)
        unknown = exs - set(self.sources)
        if unknown:
            raise InputError(
                f"unknown source {', '.join(sorted(unknown))}; sources: {', '.join(sorted(set(self.sources))) or '-'}"
            )
        held = np.array([c in ex for c in self.contents], dtype=bool)
        if exs:
            held |= np.array([s in exs for s in self.sources], dtype=bool)
        val = (self.takes % VAL_EVERY) == 0 if self.val is None else np.asarray(self.val, dtype=bool)
        masks = {"train": ~val & ~held, "val": val & ~held, "heldout": held, "all": np.ones(len(self), bool)}
        if which not in masks:
            raise InputError(f"unknown split {which!r}; valid splits: {', '.join(masks)}")
        return self.subset(masks[which])

    def positions(self, i: int, skel: Skeleton | None = None) -> np.ndarray:
        """World positions ``(F, J, 3)`` metres of clip ``i`` by FK (with ``skel``'s bone lengths if given, else
        the clip's own body)."""
        q, r = self.clip(i)
        return forward_kinematics(skel or self.skeleton_of(i), q, root_pos=r)[0]


def _source_files(src: Path):
    """Yield ``(name, Motion | BVHError)`` from a folder of BVH files or a tar archive."""
    if src.is_dir():
        for p in sorted(src.rglob("*.bvh")):
            try:
                yield p.name, bvh.read(p)
            except bvh.BVHError as e:
                yield p.name, e
    else:
        yield from bvh.iter_archive(src)


def _cache_path(src: Path, cache_dir: Path) -> Path:
    st = src.stat()
    key = hashlib.sha1(f"{src.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:10]
    return cache_dir / f"clips-{src.stem.split('.')[0]}-{key}.npz"


def load_clips(src=None, cache: bool = True, progress: bool = True, cache_dir=None) -> ClipSet:
    """Every clip of ``src`` (a BVH folder or a ``.tar.xz``; default: the shared archive), cached as npz in
    ``cache_dir`` (default: the repository's git-ignored ``cache/``)."""
    src = Path(src) if src is not None else default_archive()
    if not src.exists():
        raise InputError(f"no mocap data at {src}: give a folder of .bvh files or a .tar.xz archive")
    path = _cache_path(src, Path(cache_dir) if cache_dir is not None else CACHE_DIR)
    if cache and path.is_file():
        return _read_cache(path)
    skel, fps, Q, R, lens, names = None, 30.0, [], [], [], []
    bar = None
    if progress:
        from tqdm import tqdm

        total = len(list(src.rglob("*.bvh"))) if src.is_dir() else None
        bar = tqdm(desc=f"parsing {src.name}", unit="clip", total=total)
    for name, m in _source_files(src):
        if bar is not None:
            bar.update()
        if isinstance(m, Exception):
            print(f"skipping {name}: {m}", file=sys.stderr)
            continue
        if skel is None:
            skel, fps = m.skeleton, m.fps
        elif m.skeleton.names != skel.names:
            print(f"skipping {name}: different skeleton", file=sys.stderr)
            continue
        Q.append(m.local_quats().astype(np.float32))
        R.append((m.local_positions()[:, m.skeleton.motion_root()] * CM).astype(np.float32))
        lens.append(m.num_frames)
        names.append(Path(name).name)
    if bar is not None:
        bar.close()
    if skel is None:
        raise InputError(f"no readable BVH clip in {src}")
    meta = [parse_name(n) for n in names]
    cs = ClipSet(
        skel.scaled(CM),
        float(fps),
        np.concatenate(Q),
        np.concatenate(R),
        np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
        tuple(names),
        tuple(m[0] for m in meta),
        tuple(m[1] for m in meta),
        np.array([m[2] for m in meta], dtype=np.int64),
    )
    if cache:
        _write_cache(cs, path)
    return cs


def _write_cache(cs: ClipSet, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        skeleton=json.dumps(cs.skeleton.to_dict()),
        fps=cs.fps,
        quats=cs.quats,
        root=cs.root,
        starts=cs.starts,
        names=np.array(cs.names),
        contents=np.array(cs.contents),
        styles=np.array(cs.styles),
        takes=cs.takes,
    )
    os.replace(tmp, path)


def _read_cache(path: Path) -> ClipSet:
    with np.load(path, allow_pickle=False) as z:
        return ClipSet(
            Skeleton.from_dict(json.loads(str(z["skeleton"]))),
            float(z["fps"]),
            z["quats"],
            z["root"],
            z["starts"],
            tuple(str(s) for s in z["names"]),
            tuple(str(s) for s in z["contents"]),
            tuple(str(s) for s in z["styles"]),
            z["takes"],
        )


def normalized_positions(skel: Skeleton, positions, spec: nz.NormSpec | None = None):
    """Network input from world positions of every skeleton joint ``(F, J, 3)`` metres.

    Returns ``(pos (F, Ji, 3) float32, yaw (F,) radians, size metres)``: the input joints (all but the dummy
    root) normalised as :func:`rtik.models.normalize.normalize` does at runtime, body size from the skeleton's bones.
    """
    spec = spec or nz.NormSpec()
    dummy = skel.dummy_root()
    keep = [j for j in range(len(skel)) if j != dummy]
    names = [skel.names[j] for j in keep]
    P = np.asarray(positions, dtype=np.float64)[:, keep]
    size = nz.body_size(spec, names, skel.bone_lengths()[keep])
    yaw, _ = nz.heading(spec, names, P)
    return nz.normalize(P, names.index(spec.root), yaw, size), yaw, size


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.data", description="Build the clip cache.")
    ap.add_argument("--data", type=Path, default=None, help="BVH folder or .tar.xz (default: the shared archive)")
    args = ap.parse_args(argv)
    cs = load_clips(args.data)
    tr, va = cs.split("train"), cs.split("val")
    print(f"{len(cs)} clips, {cs.num_frames} frames; train {len(tr)} clips / {tr.num_frames} frames, "
          f"val {len(va)} clips / {va.num_frames} frames")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
