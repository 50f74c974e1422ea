"""Rotation and vector helpers in torch, written with plain ops so that both ONNX exporters and ``torch.export``
turn them into loop-free graphs (no ``linalg`` calls, no data-dependent branches).

Conventions are those of :mod:`rtik.geometry.rotations`: matrices act on column vectors, 6-D = the first two COLUMNS
``[R[:, 0], R[:, 1]]``, quaternions XYZW. Shapes: ``...`` any batch.
"""

from __future__ import annotations

import torch

EPS = 1e-8
#: 6-D of the identity rotation
IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


_YZX = (1, 2, 0)
_ZXY = (2, 0, 1)


def cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cross product of ``(..., 3)`` vectors as two permutations and a difference (four Gathers, Mul, Sub)."""
    yzx, zxy = torch.tensor(_YZX, device=a.device), torch.tensor(_ZXY, device=a.device)
    return torch.index_select(a, -1, yzx) * torch.index_select(b, -1, zxy) - torch.index_select(
        a, -1, zxy
    ) * torch.index_select(b, -1, yzx)


def normalize(v: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Unit vectors ``(..., 3)``; zero vectors stay zero.

    The floor is a ``clamp_min`` (ONNX Clip), not ``+ eps``: the dynamo ONNX exporter's optimiser drops the
    addition of a tiny constant, which turned zero vectors into NaN in ONNX Runtime while torch stayed finite."""
    return v / torch.sqrt((v * v).sum(-1, keepdim=True).clamp_min(eps))


def frame_from_vectors(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Right-handed frame ``(..., 3, 3)`` whose columns are ``x = a/|a|``, ``y`` = ``b`` made orthogonal to ``x``,
    ``z = x × y`` (Gram-Schmidt)."""
    x = normalize(a)
    y = normalize(b - (b * x).sum(-1, keepdim=True) * x)
    z = cross(x, y)
    return torch.stack([x, y, z], dim=-1)


def frame_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The frame of :func:`frame_from_vectors` as rows ``(..., 3, 3)`` (its transpose), ``a, b (..., 3)``."""
    x = normalize(a)
    y = normalize(b - (b * x).sum(-1, keepdim=True) * x)
    return torch.stack([x, y, cross(x, y)], dim=-2)


def sixd_to_matrix(r6: torch.Tensor) -> torch.Tensor:
    """6-D ``(..., 6)`` -> rotation matrices ``(..., 3, 3)`` (columns by Gram-Schmidt)."""
    return frame_from_vectors(r6[..., :3], r6[..., 3:])


def matrix_to_sixd(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(..., 3, 3)`` -> 6-D ``(..., 6)``."""
    return torch.cat([R[..., :, 0], R[..., :, 1]], dim=-1)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``(..., 4)`` XYZW -> matrices ``(..., 3, 3)``."""
    x, y, z, w = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(q.shape[:-1] + (3, 3))  # fmt: skip


def geodesic(Ra: torch.Tensor, Rb: torch.Tensor) -> torch.Tensor:
    """Angle in radians ``(...)`` between rotation matrices, with a gradient that stays finite at zero."""
    tr = (Ra * Rb).sum((-1, -2))  # trace(Ra^T Rb)
    c = ((tr - 1) / 2).clamp(-1 + 1e-6, 1 - 1e-6)
    return torch.acos(c)
