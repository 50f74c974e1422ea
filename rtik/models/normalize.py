"""Input normalisation shared by training and runtime: root-relative, heading-aligned, scaled by body size.

A frame of world positions ``p (Ji, 3)`` (metres, Y up) becomes ``R_y(-yaw) @ (p - p_root) / size``: the root
at the origin, the body facing +Z with its left side towards +X, and lengths in units of the performer's body
size, so one network serves performers of any height anywhere on the stage. The heading comes from the
left-minus-right vectors of the hips and shoulders projected on the floor, per frame (causal).

Numpy only. Shapes: ``...`` any batch, ``Ji`` input joints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rtik.errors import ModelError
from rtik.geometry import rotations as rot


@dataclass(frozen=True)
class NormSpec:
    """How a model normalises its input. Stored in the model pack.

    Fields:
        root: the joint that becomes the origin (the motion root).
        left: joints on the left side whose pairing with ``right`` gives the lateral axis.
        right: their right-side counterparts, same order.
        size_joints: joints whose bone lengths (to their parent) add up to the body size (metres).
        min_lateral: lateral vectors shorter than this fraction of the body size give no heading.
    """

    root: str = "Hips"
    left: tuple[str, ...] = ("UpperLeg_L", "UpperArm_L")
    right: tuple[str, ...] = ("UpperLeg_R", "UpperArm_R")
    size_joints: tuple[str, ...] = ("Spine", "Chest", "Neck", "Head", "LowerLeg_L", "Foot_L", "LowerLeg_R", "Foot_R")
    min_lateral: float = 0.02

    def __post_init__(self):
        object.__setattr__(self, "left", tuple(self.left))
        object.__setattr__(self, "right", tuple(self.right))
        object.__setattr__(self, "size_joints", tuple(self.size_joints))
        if len(self.left) != len(self.right) or not self.left:
            raise ModelError("NormSpec needs as many left joints as right joints, at least one pair")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NormSpec:
        try:
            return cls(**d)
        except TypeError as e:
            raise ModelError(f"invalid normalization spec: {e}") from e


def _idx(names, joint: str) -> int:
    try:
        return list(names).index(joint)
    except ValueError:
        raise ModelError(
            f"normalisation joint {joint!r} is not an input joint. Input joints: {', '.join(names)}"
        ) from None


def body_size(spec: NormSpec, names, lengths) -> float:
    """Body size in metres: the sum of the bone lengths ``lengths (J,)`` (bone ending at each joint of ``names``)
    over ``spec.size_joints``; missing (nan) bones are not counted and the sum is rescaled accordingly."""
    L = np.array([lengths[_idx(names, j)] for j in spec.size_joints], dtype=np.float64)
    ok = np.isfinite(L) & (L > 0)
    if not ok.any():
        raise ModelError("no bone of the body-size chain is measured; cannot scale the input")
    return float(L[ok].sum() * len(L) / ok.sum())


def heading(spec: NormSpec, names, positions, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """Yaw of the body about +Y, radians ``(...,)``, and whether it was observable ``(...,)`` bool.

    ``positions (..., Ji, 3)``; ``mask (..., Ji)`` (1 = observed). Yaw 0 means the left side points to +X.
    """
    P = np.asarray(positions, dtype=np.float64)
    li = [_idx(names, j) for j in spec.left]
    ri = [_idx(names, j) for j in spec.right]
    lat = P[..., li, :] - P[..., ri, :]  # (..., K, 3)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        ok = (m[..., li] & m[..., ri])[..., None]
        lat = np.where(ok, lat, 0.0)
    lat = lat.sum(axis=-2)
    lx, lz = lat[..., 0], lat[..., 2]
    yaw = np.arctan2(-lz, lx)
    return yaw, np.hypot(lx, lz) > 1e-6


def yaw_quat(yaw) -> np.ndarray:
    """Rotation about +Y by ``yaw (...)`` radians -> ``(..., 4)`` XYZW."""
    yaw = np.asarray(yaw, dtype=np.float64)
    return np.stack([np.zeros_like(yaw), np.sin(yaw / 2), np.zeros_like(yaw), np.cos(yaw / 2)], axis=-1)


def normalize(positions, root_index: int, yaw, size) -> np.ndarray:
    """``R_y(-yaw) @ (p - p_root) / size`` -> ``(..., Ji, 3)`` float32.

    ``positions (..., Ji, 3)`` metres, ``yaw (...)`` radians, ``size`` metres (scalar or ``(...)``).
    """
    P = np.asarray(positions, dtype=np.float64)
    rel = P - P[..., root_index : root_index + 1, :]
    q = rot.quat_conj(yaw_quat(yaw))[..., None, :]
    out = rot.quat_apply(np.broadcast_to(q, rel.shape[:-1] + (4,)), rel)
    return (out / np.asarray(size, dtype=np.float64)[..., None, None]).astype(np.float32)


def denormalize(norm_positions, root_pos, yaw, size) -> np.ndarray:
    """Inverse of :func:`normalize`: ``(..., Ji, 3)`` normalised -> world metres, given the root ``(..., 3)``."""
    Pn = np.asarray(norm_positions, dtype=np.float64) * np.asarray(size, dtype=np.float64)[..., None, None]
    q = yaw_quat(yaw)[..., None, :]
    return rot.quat_apply(np.broadcast_to(q, Pn.shape[:-1] + (4,)), Pn) + np.asarray(root_pos)[..., None, :]
