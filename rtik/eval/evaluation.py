"""Accuracy evaluation: select clips of a split, corrupt their input, solve with each method, measure.

A *source* is the mocap archive (``.tar``/``.tar.xz``) or a folder of BVH files. Clip names follow the Bandai
Namco dataset, ``dataset-2_{content}_{style}_{take}.bvh``. Splits (see :class:`Split`): ``val`` (take % 10 == 0),
``content:run,wave-left-hand`` (every take and style of those contents), ``all``. The train split (take % 10 != 0)
without the evaluated clips is a split's *training* set: the ``analytic_prior`` baselines take their mean local
rotations from it, unless a model pack supplies its own ``prior_local``.

Every method sees the same corrupted input for a given (clip, condition): the generator is seeded from
``(seed, crc32(clip name), condition index)``, so results do not depend on clip order, ``limit`` or which other
methods and conditions run. Errors are measured against the clean ground truth (:mod:`rtik.eval.metrics`).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtik.errors import BVHError, InputError
from rtik.eval import baselines, metrics
from rtik.eval.conditions import ALL_CONDITIONS, CONDITIONS, apply_condition
from rtik.formats import bvh
from rtik.geometry.skeleton import Skeleton

CLIP_NAME = re.compile(r"dataset-2_(?P<content>[a-z-]+)_(?P<style>[a-z]+)_(?P<take>\d+)\.bvh$", re.IGNORECASE)
#: motion contents of the dataset (``content:`` splits are checked against these)
CONTENTS = (
    "walk", "walk-turn-left", "walk-turn-right", "run", "wave-both-hands", "wave-left-hand", "wave-right-hand",
    "raise-up-both-hands", "raise-up-left-hand", "raise-up-right-hand",
)  # fmt: skip
METHODS = ("model", *baselines.BASELINES)


@dataclass(frozen=True)
class Split:
    """Which clips are evaluated (``test``) and which are the training clips (the train split, take % 10 != 0,
    without the evaluated ones: what a model of that fold is trained on).

    Fields: ``kind`` (``"val"``, ``"content"``, ``"all"`` or ``"source"``), ``contents`` (for ``"content"``),
    ``sources`` (for ``"source"``: every clip of those sources of the multi-source corpus, see
    :mod:`rtik.eval.sources`; ``val`` is a corpus split too when no Bandai archive is given)."""

    kind: str
    contents: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Split:
        text = text.strip()
        if text in ("val", "all"):
            return cls(text)
        if text.startswith("content:"):
            names = tuple(sorted({c.strip() for c in text[len("content:") :].split(",") if c.strip()}))
            bad = [c for c in names if c not in CONTENTS]
            if not names or bad:
                raise InputError(f"unknown content {', '.join(bad) or '(none)'}; valid contents: {', '.join(CONTENTS)}")
            return cls("content", names)
        if text.startswith("source:"):
            names = tuple(dict.fromkeys(s.strip() for s in text[len("source:") :].split(",") if s.strip()))
            if not names:
                raise InputError("split source: names no source; e.g. source:snu-vsports,mpi-poseprior")
            return cls("source", sources=names)
        raise InputError(
            f"unknown split {text!r}; valid splits: val, all, content:NAME[,NAME...], source:NAME[,NAME...]"
        )

    def __str__(self) -> str:
        if self.kind == "source":
            return f"source:{','.join(self.sources)}"
        return f"content:{','.join(self.contents)}" if self.kind == "content" else self.kind

    def is_test(self, name: str) -> bool:
        if self.kind == "source":
            return False
        if self.kind == "all":
            return True
        m = CLIP_NAME.search(name)
        if m is None:
            return False
        if self.kind == "val":
            return int(m["take"]) % 10 == 0
        return m["content"].lower() in self.contents

    def is_train(self, name: str) -> bool:
        """The training split (take % 10 != 0) without the evaluated clips; nothing for ``all``."""
        m = CLIP_NAME.search(name)
        return self.kind in ("val", "content") and m is not None and int(m["take"]) % 10 != 0 and not self.is_test(name)


@dataclass(frozen=True, eq=False)
class Clip:
    """A ground-truth clip in metres. Fields: ``name``; ``skeleton`` (offsets in metres); ``local_quats``
    ``(F, J, 4)`` XYZW; ``positions`` ``(F, J, 3)`` metres (FK); ``fps`` Hz."""

    name: str
    skeleton: Skeleton
    local_quats: np.ndarray
    positions: np.ndarray
    fps: float


def clip_from_motion(name: str, motion: bvh.Motion, scale: float, max_frames: int | None = None) -> Clip:
    """A :class:`Clip` from a BVH motion in units of ``1 / scale`` metres (``scale`` = 0.01 for centimetres)."""
    sl = slice(None, max_frames)
    q = motion.local_quats()[sl]
    p = motion.positions()[sl] * scale
    return Clip(Path(name).name, motion.skeleton.scaled(scale), q, p, motion.fps)


def _members(path: Path) -> Iterator[tuple[str, Callable[[], bvh.Motion]]]:
    """``(name, read)`` for every BVH in an archive (one forward pass) or a folder (sorted by name)."""
    if path.is_dir():
        for f in sorted(path.rglob("*.bvh")):
            yield f.name, (lambda f=f: bvh.read(f))
        return
    try:
        with tarfile.open(path, "r|*") as tar:
            for m in tar:
                if m.isfile() and m.name.lower().endswith(".bvh"):
                    yield Path(m.name).name, (lambda m=m: bvh.read(tar.extractfile(m), name=f"{path}:{m.name}"))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise BVHError(f"{path}: cannot read archive: {e}") from e


def _prior_cache_file(path: Path, split: Split, cache_dir: Path | None) -> Path | None:
    if cache_dir is None or not path.is_file():
        return None
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{split}|v2"
    return cache_dir / f"prior-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npy"


def load_clips(
    path,
    split: Split,
    *,
    scale: float = 0.01,
    limit: int | None = None,
    max_frames: int | None = None,
    need_prior: bool = True,
    cache_dir=None,
    log: Callable[[str], None] | None = None,
) -> tuple[list[Clip], np.ndarray | None]:
    """Read the test clips of ``split`` from ``path`` (the first ``limit`` in source order) and, if
    ``need_prior``, the mean local rotations ``(J, 4)`` of its training clips (cached in ``cache_dir`` for
    archives). One pass over the source; a malformed training clip is skipped with a message, a malformed test
    clip is an error."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no mocap data at {path} (expected a .tar.xz archive or a folder of .bvh files)")
    log = log or (lambda s: None)
    cache = _prior_cache_file(path, split, Path(cache_dir) if cache_dir is not None else None)
    prior = np.load(cache) if need_prior and cache is not None and cache.is_file() else None
    acc = None
    clips: list[Clip] = []
    for name, read in _members(path):
        want_test = split.is_test(name) and (limit is None or len(clips) < limit)
        want_train = need_prior and prior is None and split.is_train(name)
        if not (want_test or want_train):
            if (limit is not None and len(clips) >= limit) and (not need_prior or prior is not None):
                break
            continue
        try:
            motion = read()
        except BVHError as e:
            if want_test:
                raise
            log(f"skipping {name}: {e}")
            continue
        if want_test:
            clips.append(clip_from_motion(name, motion, scale, max_frames))
            if len(clips) % 25 == 0:
                log(f"read {len(clips)} clips")
        else:
            acc = acc or baselines.PriorAccumulator(len(motion.skeleton))
            acc.add(motion.local_quats())
    if not clips:
        raise InputError(f"no clip of split {split} in {path}")
    if need_prior and prior is None:
        if acc is None:
            raise InputError(
                f"split {split} leaves no training clips in {path} to take the mean local rotations from; "
                "pass a model pack (its prior_local is used) or choose the methods: analytic"
            )
        prior = acc.result()
        log(f"mean local rotations from {acc.frames} training frames")
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp.npy")
            np.save(tmp, prior)
            os.replace(tmp, cache)
    return clips, prior


# ----------------------------------------------------------------------------------------------- running
#: a method: (clip, input positions (F, J, 3) with nan where missing, mask (F, J)) -> (local (F, J, 4), FK (F, J, 3))
Method = Callable[[Clip, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def baseline_method(name: str, prior_local: np.ndarray | None) -> Method:
    """A baseline of :mod:`rtik.eval.baselines` as a :data:`Method`."""

    def run(clip: Clip, positions: np.ndarray, mask: np.ndarray):
        sol = baselines.solve(name, clip.skeleton, positions, clip.fps, mask, prior_local)
        return sol.local_quats, sol.positions

    return run


def corrupted_input(clip: Clip, condition: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The input of ``clip`` under ``condition``: positions ``(F, J, 3)`` metres (``nan`` where missing) and mask
    ``(F, J)``. A static dummy root stays exact and observed (its place is known, it is no input joint)."""
    skel = clip.skeleton
    dummy = skel.dummy_root()
    inputs = np.array([j for j in range(len(skel)) if j != dummy])
    rng = np.random.default_rng([seed, zlib.crc32(clip.name.encode()), ALL_CONDITIONS.index(condition)])
    P_in, m_in = apply_condition(condition, clip.positions[:, inputs], clip.fps, rng)
    P = clip.positions.copy()
    mask = np.ones(P.shape[:2], dtype=bool)
    P[:, inputs] = P_in
    mask[:, inputs] = m_in
    return P, mask


def evaluate(
    clips: list[Clip],
    methods: dict[str, Method],
    conditions=CONDITIONS,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict[str, metrics.Errors]]:
    """``{method: {condition: Errors}}`` over ``clips``; every method gets the same corrupted input."""
    log = log or (lambda s: None)
    sums: dict[str, dict[str, list[metrics.Errors]]] = {m: {c: [] for c in conditions} for m in methods}
    for i, clip in enumerate(clips):
        for cond in conditions:
            P, mask = corrupted_input(clip, cond, seed)
            for name, run in methods.items():
                local, pos = run(clip, P, mask)
                e = metrics.clip_errors(clip.skeleton, local, pos, clip.local_quats, clip.positions, clip.fps)
                sums[name][cond].append(e)
        if (i + 1) % 10 == 0 or i + 1 == len(clips):
            log(f"evaluated {i + 1}/{len(clips)} clips")
    return {m: {c: metrics.combine(v) for c, v in per.items()} for m, per in sums.items()}


def stderr_log(msg: str) -> None:
    print(f"rtik eval: {msg}", file=sys.stderr, flush=True)


def model_method(pack, backend: str = "onnx", options=None) -> Method:
    """The learned solver as a :data:`Method`: :func:`rtik.solve.solver.solve_sequence`, the runtime's per-frame path
    fed one frame at a time, its bone lengths calibrated over the clip's observed input (as the baselines are).
    Joints are matched by name. ``options``: the solver's :class:`~rtik.solve.solver.SolverOptions`."""
    from rtik.solve.solver import Solver, solve_sequence

    solver = Solver(pack, backend=backend, options=options)
    out_names = tuple(solver.skeleton.names)
    in_names = tuple(pack.input_joints)

    def run(clip: Clip, positions: np.ndarray, mask: np.ndarray):
        skel = clip.skeleton
        in_idx = skel.indices(in_names)  # (Ji,) clip joint of each model input
        missing = [n for n in skel.names if n not in out_names]
        if missing:
            raise InputError(f"the model's skeleton lacks the clip's joints: {', '.join(missing)}")
        out_idx = np.array([out_names.index(n) for n in skel.names])  # model joint of each clip joint
        res = solve_sequence(solver, positions[:, in_idx], clip.fps, mask[:, in_idx], layout="rtik", units="m")
        local = res["local_quats"][:, out_idx].astype(np.float64)
        return local, res["positions"][:, out_idx].astype(np.float64)

    return run
