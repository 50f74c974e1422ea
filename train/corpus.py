"""The training corpus: every mocap source mapped onto the model's body, one cache and one report per source.

A *source* is one ``.tar.xz`` archive of BVH files: Bandai Namco dataset 2 and every archive in ``extra/`` of the
shared mocap folder. Each clip is read straight from its archive, mapped onto the 22-joint body through
:class:`rtik.formats.rig.Rig` (one rig per distinct skeleton of a source, its up axis read from the motion and
its twist aligned on the source's clips of that rig, as :meth:`Rig.from_motion` does for one clip) and kept as
body local rotations (XYZW), the hips' position in metres, the body's rest offsets in metres (bodies differ:
children, seven adult subjects), its native frame rate, and its *family*.

A clip that cannot be read or mapped is reported with the reason and skipped. Per source, the cache
``cache/corpus-<source>-<key>.npz`` and its report ``.json`` (clips, frames, minutes, frame rates, rigs, joints
mapped, clips refused and why) are rebuilt when the archive's size or time, :data:`CODE_VERSION` or the rig
mapping's ``MAPPING_VERSION`` changes.

**Frame rates.** Clips are cached at their native rate (24, 30, 60 or 120 Hz) and resampled to the training
rate on load (slerp for rotations, linear for the root; :func:`train.augment.resample`).

**Splits** never cut a family apart. Bandai keeps its take rule (take % 10 == 0 is val); every other source puts
a family in val when a hash of its key falls in the first :data:`VAL_PERCENT` per cent. Leave-source-out:
``ClipSet.split(..., exclude_source=[name])``.

    python -m train.corpus                                  # build every source (progress bars, reports)
    python -m train.corpus --sources snu-vsports,mpi-poseprior --rebuild
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from rtik.errors import InputError, RtikError
from rtik.formats import bvh
from rtik.formats.markers import NAMES as MARKER_NAMES
from rtik.geometry.skeleton import Skeleton
from train.augment import resample
from train.data import CACHE_DIR, VAL_EVERY, ClipSet, mocap_root, parse_name

CODE_VERSION = "2"  # bump when what a cache holds changes; a cache of another version is rebuilt
BANDAI = "bandai-namco-motion-2"
VAL_PERCENT = 10  # share of each source's families (by hash) in val; Bandai keeps its take rule
FIT_FRAMES = 3000  # frames per rig used to read its up axis and align its twist
TRAIN_FPS = 30.0  # the default pack's rate (rtik/models/default/model.json)

#: per source, file-name decorations that are not part of the motion: folders and rig names (snu-ys2010 saved
#: some takes for two rigs under two folders) and edit marks
_DECORATIONS = {
    "snu-ys2010": r"(?:^|_)(?:balancing|physics2|picking|samsung_boxing|samsung|videomotion|walking|motion_edit"
    r"|wd2|woddy2|lastmotion|rawmotion)(?=_|$)",
    "animated-drawings": r"(?:^|_)(?:first\d+|short|clean|autolabel)(?=_|$)",
}
_SPELLING = {"stright": "straight", "strock": "stroke", "ponit": "point"}


def archives(root=None) -> dict[str, Path]:
    """``{source: archive}`` of every source under the mocap folder ``root`` (default: the shared one)."""
    root = Path(root) if root is not None else mocap_root()
    found = {}
    for p in [root / f"{BANDAI}.tar.xz", *sorted((root / "extra").glob("*.tar.xz"))]:
        if p.is_file():
            found[p.name[: -len(".tar.xz")]] = p
    if not found:
        raise InputError(f"no mocap archive (*.tar.xz) in {root} or {root / 'extra'}")
    return found


def family_key(source: str, name: str) -> str:
    """The family of clip ``name`` of ``source``: its file stem without folder and rig decorations, take
    numbers and suffixes (``walk1``, ``_001``, ``lar2b``), split into words (camel case too), spelling
    normalised, words sorted — so that the same take saved for two rigs or folders, or under reordered words,
    gets one key. A trailing all-digit word is a take number; earlier numbers (subjects, motions) stay."""
    stem = Path(name).name
    stem = stem[: -len(".bvh")] if stem.lower().endswith(".bvh") else stem
    if source == BANDAI:
        return f"{source}:{stem}"
    s = stem
    if source in _DECORATIONS:
        s = re.sub(_DECORATIONS[source], "_", s, flags=re.IGNORECASE)
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", s)  # camelCase -> camel_Case
    words = [w for w in re.split(r"[_\-.\s]+", s.lower()) if w]
    if len(words) > 1 and words[-1].isdigit():
        words = words[:-1]
    out = set()
    for w in words:
        if not w.isdigit():
            w = re.sub(r"(?<=[a-z])\d+[a-z]?$", "", w)
        out.add(_SPELLING.get(w, w))
    return f"{source}:{'-'.join(sorted(out)) or stem.lower()}"


def val_flags(source: str, names, families) -> np.ndarray:
    """``(C,)`` bool: the clips in the fixed val part of their source. Bandai: take % 10 == 0. Others: the
    :data:`VAL_PERCENT` per cent of the source's families (at least one) whose key hashes lowest, so that the
    choice depends on the family keys alone and a small source still has a val part."""
    if source == BANDAI:
        return np.array([parse_name(n)[2] % VAL_EVERY == 0 for n in names], dtype=bool)
    keys = sorted(set(families), key=lambda f: hashlib.sha1(f.encode()).hexdigest())
    chosen = set(keys[: max(1, round(len(keys) * VAL_PERCENT / 100))]) if len(keys) > 1 else set()
    return np.array([f in chosen for f in families], dtype=bool)


def rig_signature(skel: Skeleton) -> str:
    """A short name of a rig: joint count and a hash of the joint names, e.g. ``22j-3f9a1c``."""
    return f"{len(skel)}j-{hashlib.sha1('|'.join(skel.names).encode()).hexdigest()[:6]}"


#: what a clip's mapping may raise: rtik's errors, and numeric failures of a rig that fits badly (reported as
#: such, with their type, never skipped silently)
_FAILURES = (RtikError, ValueError, KeyError, IndexError, FloatingPointError, np.linalg.LinAlgError)


def _reason(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}"[:300]


def _sample(parts, n: int):
    """At most ``n`` frames spread over clips ``[(quats, root)]``, as a list of clip pieces."""
    total = sum(len(q) for q, _ in parts)
    step = max(1, total // n)
    return [(q[::step], r[::step]) for q, r in parts if len(q[::step]) > 0]


def build_source(source: str, path: Path, progress: bool = True) -> tuple[dict, dict]:
    """Read and map every clip of one archive. Returns ``(arrays, report)``; arrays as cached (see
    :func:`load_source`)."""
    from rtik.formats.rig import Rig, clip_arrays

    t0 = time.time()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc=f"{source}: reading", unit="clip")
    refused: list[dict] = []
    motions = []  # (name, (skeleton, local quats, root translation))
    for name, m in bvh.iter_archive(path):
        if bar is not None:
            bar.update()
        clip = Path(name).name
        if isinstance(m, Exception):
            refused.append({"clip": clip, "reason": _reason(m)})
        elif m.num_frames < 2 or not m.fps > 0:
            refused.append({"clip": clip, "reason": f"too short ({m.num_frames} frames, {m.fps:g} fps)"})
        else:
            motions.append((clip, clip_arrays(m), m.fps))
    if bar is not None:
        bar.close()
    groups = defaultdict(list)  # one rig per skeleton (names and offsets); twist fitted over its names' clips
    for k, (_, (skel, _, _), _) in enumerate(motions):
        groups[skel.names].append(k)
    rigs, rig_report = {}, {}
    for names, idx in groups.items():
        sig = rig_signature(motions[idx[0]][1][0])
        sample = _sample([motions[k][1][1:] for k in idx[:64]], FIT_FRAMES)
        by_offsets = defaultdict(list)
        for k in idx:
            by_offsets[np.round(motions[k][1][0].offsets, 4).tobytes()].append(k)
        info = {"joints": len(names), "clips": len(idx), "skeletons": len(by_offsets), "names": list(names)}
        for ks in by_offsets.values():
            try:
                skel = motions[ks[0]][1][0]
                rig = Rig.from_skeleton(skel)
                up = rig.motion_up(*_join(sample))
                if up != rig.up:
                    rig = Rig.from_skeleton(skel, up=up)
                rig.fit(sample)
            except _FAILURES as e:
                rig = e
            for k in ks:
                rigs[k] = rig
            if "mapped" not in info and not isinstance(rig, Exception):
                info.update(up=rig.up, mapped=len(rig.mapping), mapping=dict(rig.mapping))
        rig_report[sig] = info
    Q, R, offsets, fps, names, families, rig_of, tips = [], [], [], [], [], [], [], []
    body = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(motions), desc=f"{source}: mapping", unit="clip")
    for k, (clip, (skel, lq, lr), clip_fps) in enumerate(motions):
        if bar is not None:
            bar.update()
        rig = rigs[k]
        try:
            if isinstance(rig, Exception):
                raise rig
            q, root = rig.to_body(lq, lr)
            units = _units(rig, clip)
            off = rig.body.offsets * units
            tip = rig.tip_offsets(lq, lr)
            tip = np.array([tip.get(m, np.full(3, np.nan)) for m in MARKER_NAMES]) * units
            root = np.asarray(root) * units
            if not (np.all(np.isfinite(q)) and np.all(np.isfinite(root)) and np.all(np.isfinite(off))):
                raise InputError("non-finite values after mapping")
        except _FAILURES as e:
            refused.append({"clip": clip, "reason": _reason(e)})
            continue
        if body is None:
            body = rig.body.scaled(units)
        Q.append(np.asarray(q, dtype=np.float32))
        R.append(root.astype(np.float32))
        offsets.append(off.astype(np.float32))
        tips.append(tip.astype(np.float32))
        fps.append(clip_fps)
        names.append(clip)
        families.append(family_key(source, clip))
        rig_of.append(rig_signature(skel))
    if bar is not None:
        bar.close()
    lens = [len(q) for q in Q]
    frames = int(sum(lens))
    report = {
        "source": source,
        "archive": str(path),
        "clips": len(names),
        "frames": frames,
        "minutes": round(float(sum(n / f for n, f in zip(lens, fps, strict=True))) / 60.0, 2),
        "fps": {f"{f:g}": c for f, c in sorted(Counter(round(f, 2) for f in fps).items())},
        "families": len(set(families)),
        "val_clips": int(val_flags(source, names, families).sum()),
        "rigs": {s: {**v, "clips_kept": rig_of.count(s)} for s, v in rig_report.items()},
        "refused": len(refused),
        "refused_why": dict(Counter(r["reason"].split(":")[0] for r in refused)),
        "refused_clips": refused,
        "seconds": round(time.time() - t0, 1),
    }
    if body is None:
        raise InputError(f"{source}: no clip could be read and mapped ({len(refused)} refused); see the report")
    arrays = {
        "quats": np.concatenate(Q),
        "root": np.concatenate(R),
        "starts": np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
        "offsets": np.stack(offsets),
        "tips": np.stack(tips),
        "markers": np.array(MARKER_NAMES),
        "fps": np.array(fps, dtype=np.float64),
        "names": np.array(names),
        "families": np.array(families),
        "body": np.array(json.dumps(body.to_dict())),
    }
    return arrays, report


def _join(parts):
    return np.concatenate([q for q, _ in parts]), np.concatenate([r for _, r in parts])


def _units(rig, clip: str) -> float:
    """Metres per file unit: the rig's guess, else the unit (m, cm, mm, inch, CMU's 0.45 inch) that puts the
    body's hips nearest 0.9 m above its toes in the T-pose."""
    guess = getattr(rig, "units_guess", None)
    if guess is not None:
        return float(guess())
    from rtik.geometry import rotations as rot
    from rtik.geometry.kinematics import forward_kinematics

    P = forward_kinematics(rig.body, rot.quat_identity((1, len(rig.body))))[0][0]
    h = P[rig.body.index("Hips"), 1] - P[:, 1].min()
    if not h > 0:
        raise InputError(f"cannot tell the length unit of {clip} (hips {h:.3g} units above the toes)")
    return float(min(_UNITS, key=lambda u: abs(np.log(h * u / 0.9))))


_UNITS = (1.0, 0.01, 0.001, 0.0254, 0.0254 / 0.45)  # metres per m, cm, mm, inch, CMU ASF unit


def _rig_code() -> str:
    """The rig mapping's version, so that a change to what the mapping makes rebuilds the caches."""
    from rtik.formats.rig import MAPPING_VERSION

    return f"rig{MAPPING_VERSION}"


def cache_paths(source: str, path: Path, cache_dir=None) -> tuple[Path, Path]:
    """``(npz, report json)`` of a source's cache, keyed by the archive's size and time and the code version."""
    st = path.stat()
    raw = f"{source}|{st.st_size}|{int(st.st_mtime)}|{CODE_VERSION}|{_rig_code()}"
    key = hashlib.sha1(raw.encode()).hexdigest()[:10]
    base = Path(cache_dir) if cache_dir is not None else CACHE_DIR
    return base / f"corpus-{source}-{key}.npz", base / f"corpus-{source}-{key}.json"


def load_source(source: str, path: Path, cache_dir=None, progress=True, rebuild=False) -> tuple[dict, dict]:
    """``(arrays, report)`` of one source from its cache, built first if missing or stale. Arrays: ``quats
    (N, 22, 4)`` float32 body local rotations, ``root (N, 3)`` hips in metres, ``starts (C + 1,)``, ``offsets
    (C, 22, 3)`` body rest offsets in metres, ``tips (C, K, 3)`` where the rig's head, hand and toe tips sit in
    their body joints' frames (metres, NaN where a rig has none; ``markers (K,)`` names them, see
    :meth:`rtik.formats.rig.Rig.tip_offsets`), ``fps (C,)`` native rates, ``names``, ``families``, ``body``."""
    npz, rep = cache_paths(source, path, cache_dir)
    if npz.is_file() and rep.is_file() and not rebuild:
        with np.load(npz, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}, json.loads(rep.read_text())
    arrays, report = build_source(source, path, progress)
    npz.parent.mkdir(parents=True, exist_ok=True)
    for old in npz.parent.glob(f"corpus-{source}-*"):
        if old not in (npz, rep) and ".tmp" not in old.suffixes:  # another process may be writing its own
            old.unlink(missing_ok=True)
    # two processes (two training runs started together) may build the same cache at once: each writes its own
    # temporary files and moves them into place whole, so a reader never sees a half-written one
    _write_whole(npz, lambda f: np.savez(f, **arrays))
    _write_whole(rep, lambda f: f.write((json.dumps(report, indent=1) + "\n").encode()))
    return arrays, report


def _write_whole(path: Path, write) -> None:
    """``write(file)`` into a temporary file of its own beside ``path`` (``NAME.*.tmp``), then move it onto
    ``path`` in one step."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.stem}.", suffix=f".tmp{path.suffix}")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_corpus(sources=None, exclude_source=(), root=None, fps: float = TRAIN_FPS, cache_dir=None,
                progress: bool = True, rebuild: bool = False) -> ClipSet:  # fmt: skip
    """Every clip of ``sources`` (names; default: all under ``root``) except ``exclude_source``, resampled to
    ``fps``, as one :class:`ClipSet` with per-clip bodies, sources, families and the val flag."""
    found = archives(root)
    chosen = list(found) if not sources else list(sources)
    unknown = sorted(set(chosen) - set(found)) + sorted(set(exclude_source) - set(found))
    if unknown:
        raise InputError(f"unknown source {', '.join(unknown)}; sources: {', '.join(found)}")
    chosen = [s for s in chosen if s not in set(exclude_source)]
    if not chosen:
        raise InputError("every source is excluded: nothing to train on")
    Q, R, lens, offsets, names, srcs, fams, body = [], [], [], [], [], [], [], None
    for s in chosen:
        a, _ = load_source(s, found[s], cache_dir, progress, rebuild)
        if body is None:
            body = Skeleton.from_dict(json.loads(str(a["body"])))
        st = a["starts"]
        for i in range(len(st) - 1):
            q, r = a["quats"][st[i] : st[i + 1]], a["root"][st[i] : st[i + 1]]
            if abs(float(a["fps"][i]) - fps) > 1e-3 * fps:
                q, r = resample(q, r, factor=fps / float(a["fps"][i]))
            Q.append(q)
            R.append(r)
            lens.append(len(q))
        offsets.append(a["offsets"])
        names += [str(n) for n in a["names"]]
        fams += [str(f) for f in a["families"]]
        srcs += [s] * (len(st) - 1)
    meta = [parse_name(n) if s == BANDAI else ("", "", -1) for n, s in zip(names, srcs, strict=True)]
    val = [val_flags(s, [n for n, x in zip(names, srcs, strict=True) if x == s],
                     [f for f, x in zip(fams, srcs, strict=True) if x == s]) for s in chosen]  # fmt: skip
    off = np.concatenate(offsets)
    return ClipSet(
        body.with_offsets(np.median(off, axis=0)),
        float(fps),
        np.concatenate(Q).astype(np.float32),
        np.concatenate(R).astype(np.float32),
        np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
        tuple(names),
        tuple(m[0] for m in meta),
        tuple(m[1] for m in meta),
        np.array([m[2] for m in meta], dtype=np.int64),
        tuple(srcs),
        tuple(fams),
        off,
        np.concatenate(val),
    )


def format_report(r: dict) -> str:
    """A few readable lines of a source's report."""
    fps = ", ".join(f"{k} Hz x {v}" for k, v in r["fps"].items())
    lines = [f"{r['source']}: {r['clips']} clips, {r['frames']:,} frames, {r['minutes']:.1f} min ({fps}); "
             f"{r['families']} families, {r['val_clips']} val clips; {r['refused']} refused"]  # fmt: skip
    for sig, v in r["rigs"].items():
        mapped = f"{v['mapped']} of 21 body joints mapped, up {v['up']}" if "mapped" in v else "not mapped"
        lines.append(f"  rig {sig}: {v['joints']} joints, {v['clips']} clips ({v['clips_kept']} kept), "
                     f"{v['skeletons']} skeletons; {mapped}")  # fmt: skip
    for why, n in r["refused_why"].items():
        lines.append(f"  refused {n}: {why}")
    for x in r["refused_clips"][:20]:
        lines.append(f"    {x['clip']}: {x['reason']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.corpus", description="Build the multi-source corpus cache.")
    ap.add_argument("--mocap", type=Path, default=None, help="mocap folder (default: ../shared/mocap or $RTIK_MOCAP)")
    ap.add_argument("--sources", default="", help="comma-separated sources (default: every archive)")
    ap.add_argument("--exclude-source", default="", help="comma-separated sources left out")
    ap.add_argument("--cache", type=Path, default=None, help="cache folder (default: the repository's cache/)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the caches even when up to date")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    found = archives(args.mocap)
    chosen = [s for s in args.sources.split(",") if s] or list(found)
    excluded = {s for s in args.exclude_source.split(",") if s}
    unknown = sorted((set(chosen) | excluded) - set(found))
    if unknown:
        raise SystemExit(f"unknown source {', '.join(unknown)}; sources: {', '.join(found)}")
    total = Counter()
    for s in chosen:
        if s in excluded:
            continue
        t0 = time.time()
        _, rep = load_source(s, found[s], args.cache, not args.no_progress, args.rebuild)
        print(format_report(rep), flush=True)
        print(f"  ({time.time() - t0:.0f} s; report {cache_paths(s, found[s], args.cache)[1]})", flush=True)
        total.update(clips=rep["clips"], frames=rep["frames"], refused=rep["refused"])
    print(f"total: {total['clips']} clips, {total['frames']:,} frames, {total['refused']} refused")
    return 0


if __name__ == "__main__":
    sys.exit(main())
