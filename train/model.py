"""The network: a causal recurrent denoiser and a stateful GRU IK network, as one per-frame step.

Per frame (all in the normalised heading frame, see :mod:`rtik.normalize`):

1. **Denoiser** — GRU over ``[pos·mask, mask]``; ``pos_clean = pos·mask + head(h)`` (the head starts at zero, so
   an untrained denoiser passes observed joints through).
2. **Geometric frames** ``F_j`` of every input joint from ``pos_clean`` (see :mod:`train.rig`).
3. **IK** — features = clean positions, the mask, and each joint's neighbours, body axes and the up axis
   expressed in its own frame ``F_j``; an MLP and a multi-layer GRU predict a 6-D residual ``Δ_j`` per joint.
   The global rotation is ``G_j = F_j · Δ_j · C_j`` with ``C_j`` the mean offset between the frame and the joint
   (calibrated from data) and ``Δ_j`` starting at identity, so the untrained network is already a geometric
   solver. Local rotations ``L_j = G_parent(j)ᵀ G_j``; the motion root's is in the heading frame.

Training runs whole sequences through ``nn.GRU`` (:meth:`IKModel.forward`); the runtime step
(:meth:`IKModel.step`) does the same with GRUCell math on a flat state, weights shared 1:1, which exports to
loop-free Gemm/Sigmoid/Tanh graphs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from rtik.skeleton import Skeleton
from train import geometry as geo
from train.rig import build_rig

#: positions are multiplied by this before entering the networks (normalised bodies are ~0.5 units tall)
POS_SCALE = 4.0
#: vectors per joint: bone, bend pair (2), lateral, up, parent, child, grandchild
NUM_VECTORS = 8


@dataclass(frozen=True)
class ModelConfig:
    """Network sizes (stored with every checkpoint and in the model pack's metadata).

    Fields:
        hidden: width of the IK GRU (and of its input MLP).
        layers: number of IK GRU layers.
        den_hidden: width of the denoiser GRU.
        blend: weight of the body axis beside the bend normal in a limb's frame (see :mod:`train.rig`).
    """

    hidden: int = 192
    layers: int = 2
    den_hidden: int = 96
    blend: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)


def gru_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    """One GRU step with ``nn.GRU``'s equations and gate order (r, z, n; reset applied after ``W_hn h``)."""
    gi = nn.functional.linear(x, w_ih, b_ih)
    gh = nn.functional.linear(h, w_hh, b_hh)
    H = h.shape[-1]
    rz = torch.sigmoid(gi[..., : 2 * H] + gh[..., : 2 * H])
    r, z = rz[..., :H], rz[..., H:]
    n = torch.tanh(gi[..., 2 * H :] + r * gh[..., 2 * H :])
    return n + z * (h - n)


class IKModel(nn.Module):
    """Denoiser + IK network for one skeleton (offsets in metres)."""

    def __init__(self, skel: Skeleton, cfg: ModelConfig = ModelConfig()):
        super().__init__()
        self.cfg = cfg
        self.skeleton = skel
        self.rig = rig = build_rig(skel)
        Ji = rig.num_inputs
        self.num_inputs = Ji
        self.num_joints = len(skel)
        # per joint NUM_VECTORS vectors "to - from": bone a, bend pair u and v, lateral, up, parent, child, grandchild
        me = np.arange(Ji)
        to = np.stack([rig.a_to, rig.u_to, rig.v_to, rig.lat_l, rig.up_to, *rig.neighbours.T], -1)
        fr = np.stack([rig.a_from, rig.u_from, rig.v_from, rig.lat_r, rig.up_from, me, me, me], -1)
        self.register_buffer("ends", torch.as_tensor(np.concatenate([to.ravel(), fr.ravel()])), persistent=False)
        # parent index into [identity, G_0 .. G_{Ji-1}] (0 = the top joint's parent is the heading frame)
        self.register_buffer("par1", torch.as_tensor(rig.parent + 1), persistent=False)
        det = torch.as_tensor(rig.determined, dtype=torch.float32)
        # frame y axis = w_n * bend normal + w_body . (lateral, up); calibrated from data by calibrate()
        self.register_buffer("w_n", 1.0 - det)
        self.register_buffer("w_body", torch.stack([det + (1.0 - det) * cfg.blend, torch.zeros(Ji)], -1))
        self.register_buffer("C", torch.eye(3).repeat(Ji, 1, 1))
        H, Hd = cfg.hidden, cfg.den_hidden
        self.den_gru = nn.GRU(Ji * 4, Hd, 1, batch_first=True)
        self.den_head = nn.Linear(Hd, Ji * 3)
        n_feat = Ji * 3 + Ji + Ji * (NUM_VECTORS - 3) * 3 + Ji * 3
        self.ik_in = nn.Sequential(nn.Linear(n_feat, H), nn.SiLU())
        self.ik_gru = nn.GRU(H, H, cfg.layers, batch_first=True)
        self.ik_head = nn.Linear(2 * H, Ji * 6)  # reads [GRU output, MLP embedding]
        for lin in (self.den_head, self.ik_head):
            nn.init.zeros_(lin.weight)
        nn.init.zeros_(self.den_head.bias)
        with torch.no_grad():
            self.ik_head.bias.copy_(torch.tensor(geo.IDENTITY_6D).repeat(Ji))

    # ------------------------------------------------------------------------------------------ sizes
    @property
    def state_size(self) -> int:
        return self.cfg.den_hidden + self.cfg.layers * self.cfg.hidden

    @property
    def input_joints(self) -> tuple[str, ...]:
        return self.rig.input_joints

    # --------------------------------------------------------------------------------------- geometry
    def _vectors(self, P):
        """Unit vectors ``(..., Ji, K, 3)`` of every joint: bone, bend pair (u, v), lateral, up, neighbours."""
        X = torch.index_select(P, -2, self.ends).unflatten(-2, (2, self.num_inputs, NUM_VECTORS))
        return geo.normalize(X[..., 0, :, :, :] - X[..., 1, :, :, :])

    def _frames(self, V):
        """Geometric frames ``(..., Ji, 3, 3)`` from the joint vectors of :meth:`_vectors`."""
        n = geo.cross(V[..., 1, :], V[..., 2, :])
        b = self.w_n[:, None] * n + (self.w_body[:, :, None] * V[..., 3:5, :]).sum(-2)
        return geo.frame_from_vectors(V[..., 0, :], b)

    def frames(self, P):
        """Geometric frame of every input joint ``(..., Ji, 3, 3)`` from positions ``(..., Ji, 3)``."""
        return self._frames(self._vectors(P))

    def features(self, P, mask):
        """IK input ``(..., n_feat)`` and frames ``(..., Ji, 3, 3)`` from clean positions and the mask."""
        V = self._vectors(P)
        F = self._frames(V)
        local = V[..., 3:, :] @ F  # rows v^T F = (F^T v)^T: body axes and neighbours in each joint's frame
        up = F[..., 1, :]  # world up (+Y) in each joint's frame
        x = torch.cat([(P * POS_SCALE).flatten(-2), mask, local.flatten(-3), up.flatten(-2)], dim=-1)
        return x, F

    def decode(self, F, out6):
        """Global ``(..., Ji, 3, 3)`` and local ``(..., Ji, 3, 3)`` rotations from frames and the 6-D residuals."""
        D = out6.unflatten(-1, (self.num_inputs, 2, 3)).transpose(-1, -2)  # (..., Ji, 3, 2) columns of delta
        FD = F @ D
        G = geo.frame_from_vectors(FD[..., 0], FD[..., 1]) @ self.C
        eye = torch.zeros_like(G[..., :1, :, :]) + torch.eye(3, dtype=G.dtype)
        Gp = torch.index_select(torch.cat([eye, G], dim=-3), -3, self.par1)
        return G, Gp.transpose(-1, -2) @ G

    def rot6d(self, L):
        """Local rotations of the input joints ``(..., Ji, 3, 3)`` -> 6-D of every skeleton joint ``(..., J, 6)``
        (the dummy root, if any, is the identity)."""
        r6 = L[..., :2].transpose(-1, -2).flatten(-2)
        if self.rig.dummy_root < 0:
            return r6
        ident = torch.zeros_like(r6[..., :1, :]) + torch.tensor(geo.IDENTITY_6D, dtype=r6.dtype)
        return torch.cat([ident, r6], dim=-2)

    # ------------------------------------------------------------------------------------------ sequences
    def split_state(self, state):
        """Flat state ``(B, S)`` -> (denoiser ``(1, B, Hd)``, IK ``(layers, B, H)``)."""
        Hd, H, Lk = self.cfg.den_hidden, self.cfg.hidden, self.cfg.layers
        den = state[:, :Hd].unsqueeze(0).contiguous()
        ik = state[:, Hd:].reshape(-1, Lk, H).transpose(0, 1).contiguous()
        return den, ik

    def join_state(self, den, ik):
        return torch.cat([den[0], ik.transpose(0, 1).flatten(1)], dim=-1)

    def forward(self, pos, mask, state=None):
        """A whole sequence: ``pos (B, T, Ji, 3)``, ``mask (B, T, Ji)``, ``state (B, S)`` or None (zeros).

        Returns a dict: ``pos_clean (B, T, Ji, 3)``, ``G`` and ``L`` ``(B, T, Ji, 3, 3)`` (global in the heading
        frame, local), ``state (B, S)`` after the last frame.
        """
        B = pos.shape[0]
        if state is None:
            state = pos.new_zeros(B, self.state_size)
        den_h, ik_h = self.split_state(state)
        pm = pos * mask[..., None]
        hd, den_h = self.den_gru(torch.cat([(pm * POS_SCALE).flatten(-2), mask], dim=-1), den_h)
        clean = pm + self.den_head(hd).unflatten(-1, (self.num_inputs, 3))
        x, F = self.features(clean, mask)
        e = self.ik_in(x)
        hi, ik_h = self.ik_gru(e, ik_h)
        G, L = self.decode(F, self.ik_head(torch.cat([hi, e], dim=-1)))
        return {"pos_clean": clean, "G": G, "L": L, "state": self.join_state(den_h, ik_h)}

    # ------------------------------------------------------------------------------------------ one frame
    def step(self, pos, mask, state):
        """One frame, the runtime contract: ``pos (B, Ji, 3)``, ``mask (B, Ji)``, ``state (B, S)`` ->
        ``(rot6d (B, J, 6), pos_clean (B, Ji, 3), state_out (B, S))``. GRUCell math, no loops over time."""
        Hd, H = self.cfg.den_hidden, self.cfg.hidden
        pm = pos * mask[..., None]
        g = self.den_gru
        hd = gru_cell(
            torch.cat([(pm * POS_SCALE).flatten(-2), mask], dim=-1),
            state[:, :Hd], g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0,
        )  # fmt: skip
        clean = pm + self.den_head(hd).unflatten(-1, (self.num_inputs, 3))
        x, F = self.features(clean, mask)
        e = self.ik_in(x)
        h, outs = e, [hd]
        for k in range(self.cfg.layers):
            hk = state[:, Hd + k * H : Hd + (k + 1) * H]
            w = [getattr(self.ik_gru, f"{n}_l{k}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            h = gru_cell(h, hk, *w)
            outs.append(h)
        _, L = self.decode(F, self.ik_head(torch.cat([h, e], dim=-1)))
        return self.rot6d(L), clean, torch.cat(outs, dim=-1)

    # ---------------------------------------------------------------------------------------- calibration
    @torch.no_grad()
    def calibrate(self, positions, global_rot) -> None:
        """Fit the frame weights and offsets ``C`` to data.

        ``positions (N, Ji, 3)`` and the ground-truth global rotations ``(N, Ji, 3, 3)`` of the input joints, in
        one common world frame (any heading, any scale). For each non-determined joint, the body axis least
        parallel to its bone is blended with the bend normal, with the sign that agrees with it on average;
        ``C_j`` = the mean of ``F_jᵀ G_j`` projected onto a rotation.
        """
        P = torch.as_tensor(np.asarray(positions), dtype=torch.float32)
        Rg = torch.as_tensor(np.asarray(global_rot), dtype=torch.float32)
        V = self._vectors(P)  # (N, Ji, K, 3)
        n = geo.cross(V[..., 1, :], V[..., 2, :])
        for j in torch.nonzero(torch.as_tensor(~self.rig.determined)).flatten().tolist():
            parallel = (V[:, j, 0:1, :] * V[:, j, 3:5, :]).sum(-1).abs().mean(0)  # (2,) lateral, up
            k = int(torch.argmin(parallel))
            sign = 1.0 if float((n[:, j] * V[:, j, 3 + k]).sum(-1).mean()) >= 0 else -1.0
            self.w_body[j] = 0.0
            self.w_body[j, k] = self.cfg.blend * sign
        F = self._frames(V)
        M = (F.transpose(-1, -2) @ Rg).mean(0)  # (Ji, 3, 3)
        U, _, Vh = torch.linalg.svd(M)
        d = torch.sign(torch.det(U @ Vh))
        D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
        self.C.copy_(U @ D @ Vh)
