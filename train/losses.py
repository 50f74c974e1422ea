"""Training losses (torch). Shapes: ``(B, T, Ji, ...)``; positions in normalised units (body sizes)."""

from __future__ import annotations

import torch

from train import geometry as geo


def fk_positions(G, offsets, parent) -> torch.Tensor:
    """Positions ``(B, T, Ji, 3)`` from global rotations ``G (B, T, Ji, 3, 3)`` and bone offsets
    ``(B, T, Ji, 3)`` down the tree ``parent (Ji,)`` (-1 = the top joint, placed at the origin)."""
    out = [None] * G.shape[-3]
    for j, p in enumerate(parent):
        if p < 0:
            out[j] = torch.zeros_like(offsets[..., j, :])
        else:
            out[j] = out[p] + (G[..., p, :, :] @ offsets[..., j, :, None])[..., 0]
    return torch.stack(out, dim=-2)


def losses(out: dict, batch: dict, parent, weights: dict | None = None) -> dict:
    """Named loss terms and their weighted ``total``: rotation errors (global and local), FK positions, denoised
    positions and their acceleration, rotation velocity.

    ``out``: the model's :meth:`~train.model.IKModel.forward` dict; ``batch``: tensors ``pos_gt``, ``G``, ``L``,
    ``offsets`` (see :class:`train.batches.ExampleMaker`)."""
    w = {"rot": 1.0, "local": 1.0, "fk": 10.0, "den": 10.0, "vel": 10.0, "den_acc": 10.0, **(weights or {})}
    G, L = out["G"], out["L"]
    terms = {
        "rot": ((G - batch["G"]) ** 2).sum((-1, -2)).mean(),
        "local": ((L - batch["L"]) ** 2).sum((-1, -2)).mean(),
        "den": (out["pos_clean"] - batch["pos_gt"]).norm(dim=-1).mean(),
    }
    fk = fk_positions(G, batch["offsets"], parent)
    top = [j for j, p in enumerate(parent) if p < 0][0]
    gt = batch["pos_gt"][..., : len(parent), :]  # the joints (markers, if any, follow them)
    terms["fk"] = (fk + gt[..., top : top + 1, :] - gt).norm(dim=-1).mean()
    dG, dGt = G[:, 1:] - G[:, :-1], batch["G"][:, 1:] - batch["G"][:, :-1]
    terms["vel"] = ((dG - dGt) ** 2).sum((-1, -2)).mean()
    # the denoised positions' acceleration against the truth's: jitter costs, following real motion does not
    c, g = out["pos_clean"], batch["pos_gt"]
    acc = (c[:, 2:] - 2 * c[:, 1:-1] + c[:, :-2]) - (g[:, 2:] - 2 * g[:, 1:-1] + g[:, :-2])
    terms["den_acc"] = acc.norm(dim=-1).mean()
    terms["total"] = sum(w[k] * v for k, v in terms.items())
    return terms


@torch.no_grad()
def angle_errors(G, L, batch) -> dict:
    """Mean geodesic errors in degrees: global and local rotations (per joint ``(Ji,)``)."""
    deg = 180.0 / torch.pi
    return {
        "global": (geo.geodesic(G, batch["G"]) * deg).flatten(0, -2).mean(0),
        "local": (geo.geodesic(L, batch["L"]) * deg).flatten(0, -2).mean(0),
    }
