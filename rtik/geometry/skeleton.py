"""The skeleton: joint names, tree, rest offsets, channel layout, joint groups and the left/right mirror map.

Pure data and numpy: no I/O. Offsets are in the skeleton's own length unit (BVH files keep theirs; model packs
store metres). Joints are ordered so that every parent comes before its children (``parents[j] < j``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from rtik.errors import SkeletonError

#: joint groups, as ../docs define them: what joint positions can and cannot tell about a joint's rotation
DETERMINED = "determined"  # >= 2 child bones, not collinear: rotation fixed by positions
LIMB = "limb"  # one child bone direction: twist about it unobservable
LEAF = "leaf"  # no child bone: orientation unobservable
GROUPS = (DETERMINED, LIMB, LEAF)

_BONE_EPS = 1e-6  # offsets shorter than this (in the skeleton's unit) are not bones
#: the BVH channel names a joint may carry
CHANNEL_NAMES = tuple(f"{a}{k}" for k in ("position", "rotation") for a in "XYZ")
_SIDE_PATTERNS = (("_L", "_R"), ("Left", "Right"), ("left", "right"), (".L", ".R"), ("L_", "R_"), ("l_", "r_"))


@dataclass(frozen=True, eq=False)
class Skeleton:
    """A kinematic tree.

    Fields:
        names: joint names ``(J,)``, unique.
        parents: parent index per joint ``(J,)`` int, ``-1`` for the root; ``parents[j] < j``.
        offsets: rest translation of each joint in its parent's frame ``(J, 3)`` float64, skeleton units.
        channels: per joint, the BVH channel names in file order, e.g. ``("Xposition", ..., "Yrotation")``.
        end_sites: per joint, the End Site offset ``(3,)`` or ``None``.
    """

    names: tuple[str, ...]
    parents: np.ndarray
    offsets: np.ndarray
    channels: tuple[tuple[str, ...], ...] = ()
    end_sites: tuple[np.ndarray | None, ...] = ()
    _index: dict = field(default_factory=dict, repr=False, init=False, compare=False)

    def __post_init__(self):
        names = tuple(self.names)
        J = len(names)
        parents = np.asarray(self.parents, dtype=np.int64).reshape(-1)
        offsets = np.asarray(self.offsets, dtype=np.float64)
        if J == 0:
            raise SkeletonError("a skeleton needs at least one joint")
        bad_names = [n for n in names if not isinstance(n, str) or n.split() != [n]]
        if bad_names:
            raise SkeletonError(f"joint names must be non-empty strings without spaces, found {bad_names[0]!r}")
        if len(set(names)) != J:
            dup = sorted({n for n in names if names.count(n) > 1})
            raise SkeletonError(f"duplicate joint names: {', '.join(dup)}")
        if parents.shape != (J,):
            raise SkeletonError(f"parents has shape {parents.shape}, expected ({J},)")
        if offsets.shape != (J, 3):
            raise SkeletonError(f"offsets has shape {offsets.shape}, expected ({J}, 3)")
        if parents[0] != -1 or np.any(parents[1:] < 0) or np.any(parents[1:] >= np.arange(1, J)):
            raise SkeletonError(
                f"joints must be ordered parents first, with one root at index 0 (parents[0] == -1 and "
                f"0 <= parents[j] < j); got parents {parents.tolist()}"
            )
        if not np.all(np.isfinite(offsets)):
            bad = names[int(np.nonzero(~np.isfinite(offsets).all(axis=1))[0][0])]
            raise SkeletonError(f"offset of joint {bad!r} is not finite")
        channels = tuple(tuple(c) for c in self.channels) or tuple(() for _ in range(J))
        end_sites = tuple(None if e is None else np.asarray(e, dtype=np.float64) for e in self.end_sites)
        end_sites = end_sites or tuple(None for _ in range(J))
        if len(channels) != J or len(end_sites) != J:
            raise SkeletonError(
                f"channels and end_sites need one entry per joint ({J}), got {len(channels)} and {len(end_sites)}"
            )
        for n, ch in zip(names, channels, strict=True):
            wrong = [c for c in ch if c not in CHANNEL_NAMES]
            if wrong or len(set(ch)) != len(ch):
                what = f"unknown channel {wrong[0]!r}" if wrong else f"repeated channel in {' '.join(ch)}"
                raise SkeletonError(f"joint {n!r}: {what}; valid channels: {', '.join(CHANNEL_NAMES)}")
        for n, e in zip(names, end_sites, strict=True):
            if e is not None and (e.shape != (3,) or not np.all(np.isfinite(e))):
                raise SkeletonError(f"End Site of joint {n!r} must be 3 finite numbers, got {e.tolist()}")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "parents", parents)
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "end_sites", end_sites)
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names)})
        parents.flags.writeable = False
        offsets.flags.writeable = False

    # ------------------------------------------------------------------------------------------- lookup
    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_joints(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Index of joint ``name``; the error lists the valid names."""
        try:
            return self._index[name]
        except KeyError:
            raise SkeletonError(f"joint {name!r} does not exist. Available names: {', '.join(self.names)}") from None

    def indices(self, names) -> np.ndarray:
        """Indices ``(N,)`` of several joint names."""
        return np.array([self.index(n) for n in names], dtype=np.int64)

    def children(self, j: int) -> list[int]:
        return [int(c) for c in np.nonzero(self.parents == j)[0]]

    @property
    def root(self) -> int:
        return 0

    # ------------------------------------------------------------------------------------------ channels
    def rotation_order(self, j: int) -> str:
        """Euler order of joint ``j``'s rotation channels, e.g. ``"ZXY"`` ("" if it has none)."""
        return "".join(c[0].upper() for c in self.channels[j] if c.lower().endswith("rotation"))

    def has_position_channels(self, j: int) -> bool:
        return any(c.lower().endswith("position") for c in self.channels[j])

    @property
    def num_channels(self) -> int:
        return sum(len(c) for c in self.channels)

    # -------------------------------------------------------------------------------------------- groups
    def child_bones(self, j: int) -> list[np.ndarray]:
        """Rest directions of the bones leaving joint ``j`` (children and End Site with non-zero offset).

        The motion root under a dummy root is no bone: its offset is a world translation."""
        bones = [self.offsets[c] for c in self.bone_children(j)]
        e = self.end_sites[j]
        if e is not None and np.linalg.norm(e) > _BONE_EPS:
            bones.append(e)
        return bones

    def bone_children(self, j: int) -> list[int]:
        """Children of ``j`` joined to it by a rigid bone (non-zero offset, not the motion root)."""
        skip = self.motion_root() if self.dummy_root() is not None else -1
        return [c for c in self.children(j) if c != skip and np.linalg.norm(self.offsets[c]) > _BONE_EPS]

    def group(self, j: int) -> str:
        """:data:`DETERMINED`, :data:`LIMB` or :data:`LEAF` for joint ``j``."""
        bones = self.child_bones(j)
        if not bones:
            return LEAF
        dirs = np.array([b / np.linalg.norm(b) for b in bones])
        if len(dirs) >= 2 and np.linalg.norm(np.cross(dirs[0], dirs[1:]), axis=-1).max() > 1e-3:
            return DETERMINED
        return LIMB

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(self.group(j) for j in range(len(self)))

    def group_indices(self, group: str, exclude=()) -> np.ndarray:
        """Joints of ``group``, without those in ``exclude`` (indices)."""
        if group not in GROUPS:
            raise SkeletonError(f"unknown joint group {group!r}; valid groups: {', '.join(GROUPS)}")
        ex = set(int(e) for e in exclude)
        return np.array([j for j, g in enumerate(self.groups) if g == group and j not in ex], dtype=np.int64)

    def dummy_root(self) -> int | None:
        """Index of a static dummy root (a root with a zero offset whose only child carries the motion), or None.

        The Bandai Namco skeleton has one (``joint_Root``); metrics exclude it.
        """
        kids = self.children(0)
        if len(kids) == 1 and np.linalg.norm(self.offsets[0]) < _BONE_EPS and self.has_position_channels(kids[0]):
            return 0
        return None

    def motion_root(self) -> int:
        """The joint that carries the world translation: the dummy root's child, else the root."""
        return self.children(0)[0] if self.dummy_root() is not None else 0

    # -------------------------------------------------------------------------------------------- mirror
    def mirror_map(self) -> np.ndarray:
        """``(J,)`` index of each joint's left/right counterpart (itself for central joints)."""
        out = np.arange(len(self))
        for j, name in enumerate(self.names):
            for a, b in _SIDE_PATTERNS:
                for x, y in ((a, b), (b, a)):
                    if x in name:
                        other = _swap_side(name, x, y)
                        if other in self._index:
                            out[j] = self._index[other]
                            break
                else:
                    continue
                break
        return out

    # ------------------------------------------------------------------------------------------- helpers
    def scaled(self, factor: float) -> Skeleton:
        """The same skeleton with every offset (and End Site) multiplied by ``factor``."""
        return self.with_offsets(self.offsets * factor, factor)

    def with_offsets(self, offsets, end_site_scale: float = 1.0) -> Skeleton:
        """A copy with new ``offsets (J, 3)``; End Sites scaled by ``end_site_scale``."""
        ends = tuple(None if e is None else e * end_site_scale for e in self.end_sites)
        return Skeleton(self.names, self.parents.copy(), np.array(offsets, dtype=np.float64), self.channels, ends)

    def bone_lengths(self) -> np.ndarray:
        """Rest length of the bone from each joint's parent to the joint ``(J,)`` (0 for the root)."""
        return np.linalg.norm(self.offsets, axis=-1)

    def tree_lines(self) -> list[str]:
        """A readable tree, one joint a line, with its group."""
        depth = np.zeros(len(self), dtype=int)
        for j in range(1, len(self)):
            depth[j] = depth[self.parents[j]] + 1
        order: list[int] = []

        def visit(j):
            order.append(j)
            for c in self.children(j):
                visit(c)

        visit(0)
        dummy = self.dummy_root()
        return [f"{'  ' * depth[j]}{self.names[j]}  [{'dummy root' if j == dummy else self.group(j)}]" for j in order]

    def to_dict(self) -> dict:
        """JSON-ready description (used by model packs and the wire protocol)."""
        return {
            "names": list(self.names),
            "parents": self.parents.tolist(),
            "offsets": self.offsets.tolist(),
            "channels": [list(c) for c in self.channels],
            "end_sites": [None if e is None else e.tolist() for e in self.end_sites],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Skeleton:
        """The inverse of :meth:`to_dict`; a malformed description raises :class:`SkeletonError`."""
        if not isinstance(d, dict):
            raise SkeletonError(f"a skeleton description must be a dict, got {type(d).__name__}")
        missing = [k for k in ("names", "parents", "offsets") if k not in d]
        if missing:
            raise SkeletonError(f"skeleton description lacks {', '.join(missing)}; it needs names, parents, offsets")
        try:
            return cls(d["names"], d["parents"], d["offsets"], d.get("channels", ()), d.get("end_sites", ()))
        except (KeyError, TypeError, ValueError) as e:
            raise SkeletonError(f"invalid skeleton description: {e}") from e


def _swap_side(name: str, x: str, y: str) -> str:
    if x in ("L_", "R_", "l_", "r_"):
        return re.sub(rf"^{re.escape(x)}", y, name)
    return name.replace(x, y)
