"""Evaluation clips of the multi-source corpus: every source mapped onto the model's 22-joint body.

The corpus is built by ``python -m train.corpus`` (``train/corpus.py``, docs/training.md "The corpus"), which
writes one cache per source into the repository's ``cache/``: ``corpus-<source>-<key>.npz`` (body local rotations
XYZW at the clip's native rate, the hips' position in metres, per-clip body rest offsets in metres, frame rates,
clip names and families, the body skeleton) beside a report ``.json``. ``rtik`` never imports ``train/``
(docs/architecture.md), so this module *reads those files*; it does not build them.

Splits (:class:`rtik.eval.evaluation.Split`):

- ``val``: the fixed val part of every source, as ``train.corpus`` chooses it (:func:`val_flags`): Bandai's take
  rule (take % 10 == 0), elsewhere the :data:`VAL_PERCENT` % of a source's clip families (at least one) whose
  key hashes lowest;
- ``source:NAME[,NAME]``: every clip of those sources (what a leave-source-out model never saw).

The *training clips* of a split (for the baselines' mean pose) are the other sources' non-val clips, and the
named sources' non-val clips for ``val``.

**Joints a rig lacks.** Where a rig has no spine, neck or clavicle joint, the mapping puts a *virtual* joint on
the chain that turns with its parent: its local rotation is the identity on every frame. Such a joint (a
``Spine``, ``Neck`` or ``Shoulder_*`` whose local rotation stays within :data:`VIRTUAL_DEG` of the identity over
the whole clip; a real one that never moves counts as absent too) is no input and is not scored
(:attr:`SourceClip.present`).
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtik.errors import InputError
from rtik.eval import baselines
from rtik.geometry import kinematics as kin
from rtik.geometry import rotations as rot
from rtik.geometry.skeleton import Skeleton

BANDAI = "bandai-namco-motion-2"
VAL_PERCENT = 10  # share of a source's families in val (train.corpus.VAL_PERCENT)
VAL_EVERY = 10  # Bandai: takes that are multiples of this are val (train.data.VAL_EVERY)
#: body joints a rig may lack (virtual in its mapping): scored and fed only where the clip turns them
MAYBE_VIRTUAL = ("Spine", "Neck", "Shoulder_L", "Shoulder_R")
VIRTUAL_DEG = 1e-3  # degrees: a local rotation this close to the identity on every frame marks a virtual joint
_CACHE_NAME = re.compile(r"corpus-(?P<source>.+)-(?P<key>[0-9a-f]{10})\.npz$")
_TAKE = re.compile(r"dataset-\d+_[a-z\-]+_[a-z]+_(?P<take>\d+)\.bvh$", re.IGNORECASE)


@dataclass(frozen=True, eq=False)
class SourceClip:
    """A ground-truth clip in the body, metres.

    Fields:
        name: the clip's file name; ``source``: its source (archive) name.
        skeleton: the clip's body (22 joints, its own rest offsets in metres, T-pose rest, Y up).
        local_quats: ``(F, 22, 4)`` body local rotations, XYZW.
        positions: ``(F, 22, 3)`` FK of the body, metres.
        fps: native frame rate (Hz).
        present: ``(22,)`` bool, the joints the clip's rig has (not virtual, not the static dummy root): the
            input joints, and the joints scored.
        tips: ``(K, 3)`` where the rig's head, hand and toe tips sit in their body joints' frames, metres, for
            the leaf markers :data:`rtik.formats.markers.NAMES` (NaN where the rig has none; all NaN from a corpus
            cache that predates them).
    """

    name: str
    source: str
    skeleton: Skeleton
    local_quats: np.ndarray
    positions: np.ndarray
    fps: float
    present: np.ndarray
    tips: np.ndarray | None = None


def cache_files(cache_dir) -> dict[str, Path]:
    """``{source: npz}`` of every corpus cache in ``cache_dir`` (the newest file where a source has several)."""
    d = Path(cache_dir)
    found: dict[str, Path] = {}
    for p in sorted(d.glob("corpus-*.npz"), key=lambda p: p.stat().st_mtime):
        m = _CACHE_NAME.match(p.name)
        if m:
            found[m["source"]] = p
    if not found:
        raise InputError(
            f"no corpus cache (corpus-<source>-<key>.npz) in {d}; build it with `python -m train.corpus` "
            "(or pass --corpus DIR)"
        )
    return dict(sorted(found.items()))


def val_flags(source: str, names, families) -> np.ndarray:
    """``(C,)`` bool: the clips in the fixed val part of ``source`` (the rule of ``train.corpus.val_flags``)."""
    if source == BANDAI:
        takes = [_TAKE.search(Path(n).name) for n in names]
        return np.array([m is not None and int(m["take"]) % VAL_EVERY == 0 for m in takes], dtype=bool)
    keys = sorted(set(families), key=lambda f: hashlib.sha1(f.encode()).hexdigest())
    chosen = set(keys[: max(1, round(len(keys) * VAL_PERCENT / 100))]) if len(keys) > 1 else set()
    return np.array([f in chosen for f in families], dtype=bool)


def present_joints(skel: Skeleton, local_quats) -> np.ndarray:
    """``(J,)`` bool: the joints of a body clip ``local_quats (F, J, 4)`` that its rig has (see the module
    docstring); the static dummy root is not one."""
    present = np.ones(len(skel), dtype=bool)
    dummy = skel.dummy_root()
    if dummy is not None:
        present[dummy] = False
    angle = np.degrees(rot.quat_angle(np.asarray(local_quats, dtype=np.float64))).max(axis=0)  # (J,)
    for name in MAYBE_VIRTUAL:
        if name in skel.names and angle[skel.index(name)] < VIRTUAL_DEG:
            present[skel.index(name)] = False
    return present


def _read(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _tips(a: dict, i: int) -> np.ndarray:
    """Clip ``i``'s tip offsets in the order of :data:`rtik.formats.markers.NAMES` (NaN where unknown)."""
    from rtik.formats.markers import NAMES

    out = np.full((len(NAMES), 3), np.nan)
    if "tips" in a and "markers" in a:
        col = {str(n): k for k, n in enumerate(a["markers"])}
        for k, n in enumerate(NAMES):
            if n in col:
                out[k] = a["tips"][i, col[n]]
    return out


def _window(n: int, max_frames: int | None, rng: np.random.Generator) -> slice:
    if max_frames is None or n <= max_frames:
        return slice(None)
    start = int(rng.integers(0, n - max_frames + 1))
    return slice(start, start + max_frames)


def load_split(
    split,
    cache_dir,
    *,
    limit: int | None = None,
    max_frames: int | None = None,
    seed: int = 0,
    need_prior: bool = False,
    log: Callable[[str], None] | None = None,
) -> tuple[list[SourceClip], np.ndarray | None]:
    """The test clips of ``split`` (kind ``val`` or ``source``) from the corpus caches in ``cache_dir`` and, if
    ``need_prior``, the body's mean local rotations ``(22, 4)`` over the split's training clips.

    ``limit``: at most this many clips *per source*, drawn without replacement (generator seeded from ``seed``
    and the source name), kept in corpus order. ``max_frames``: a window of at most this many frames per clip at
    a seeded random start (seed and clip name). Clips keep their native frame rate.
    """
    log = log or (lambda s: None)
    files = cache_files(cache_dir)
    if split.kind == "source":
        unknown = [s for s in split.sources if s not in files]
        if unknown:
            raise InputError(f"no corpus source {', '.join(unknown)} in {cache_dir}; sources: {', '.join(files)}")
        tested = list(split.sources)
    elif split.kind == "val":
        tested = list(files)
    else:
        raise InputError(f"split {split} is not a corpus split; corpus splits: val, source:NAME[,NAME...]")
    clips: list[SourceClip] = []
    acc = baselines.PriorAccumulator(22) if need_prior else None
    for source, path in files.items():
        if source not in tested and acc is None:
            continue
        a = _read(path)
        names = [str(n) for n in a["names"]]
        val = val_flags(source, names, [str(f) for f in a["families"]])
        test = val if split.kind == "val" else np.full(len(names), source in tested)
        starts = a["starts"]
        if acc is not None:
            for i in np.nonzero(~test & ~val)[0]:
                acc.add(a["quats"][starts[i] : starts[i + 1]])
        idx = np.nonzero(test)[0]
        if len(idx) == 0:
            continue
        if limit is not None and len(idx) > limit:
            rng = np.random.default_rng([seed, zlib.crc32(source.encode())])
            idx = np.sort(rng.choice(idx, size=limit, replace=False))
        body = Skeleton.from_dict(json.loads(str(a["body"])))
        for i in idx:
            rng = np.random.default_rng([seed, zlib.crc32(names[i].encode())])
            sl = _window(int(starts[i + 1] - starts[i]), max_frames, rng)
            q = a["quats"][starts[i] : starts[i + 1]][sl].astype(np.float64)
            root = a["root"][starts[i] : starts[i + 1]][sl].astype(np.float64)
            skel = body.with_offsets(a["offsets"][i].astype(np.float64))
            P = kin.forward_kinematics(skel, q, root_pos=root)[0]
            tips = _tips(a, i)
            clips.append(SourceClip(names[i], source, skel, q, P, float(a["fps"][i]), present_joints(skel, q), tips))
        log(f"{source}: {len(idx)} clips ({path.name})")
    if not clips:
        raise InputError(f"no clip of split {split} in the corpus caches of {cache_dir}")
    prior = None
    if acc is not None:
        prior = acc.result()
        log(f"the body's mean local rotations from {acc.frames} training frames")
    return clips, prior
