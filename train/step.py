"""The per-frame step as it is exported: the same function as :meth:`train.model.IKModel.step`, laid out for
inference engines.

ONNX Runtime (and TensorRT) spend most of a small graph's time in kernels over tensors whose innermost axis is
3 (x, y, z): gathers of 3-float blocks, broadcasts over size-1 axes, batched 3x3 MatMuls that make one GEMM call
per joint. Here every geometric tensor is *coordinates first* — ``(B, 3, joints)``, innermost axis = joints — the
gathers of joint positions are one constant selection matrix (a single Gemm), and 3x3 products are broadcast
sums over the joint axis. The IK input features and head outputs come out in a different order than in the
training model; :class:`ExportStep` permutes the weights of ``ik_in`` and ``ik_head`` to match, so the function
is unchanged (``tests/test_export.py`` checks it against the training model's own step).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from train import geometry as geo
from train.model import NUM_VECTORS, POS_SCALE, IKModel, gru_cell, ik_step

_YZX = (1, 2, 0)
_ZXY = (2, 0, 1)


def _cross(a, b):
    """Cross product of coordinate-first vectors ``(B, 3, K)``."""
    yzx = torch.tensor(_YZX, device=a.device)
    zxy = torch.tensor(_ZXY, device=a.device)
    ay, az = torch.index_select(a, 1, yzx), torch.index_select(a, 1, zxy)
    by, bz = torch.index_select(b, 1, yzx), torch.index_select(b, 1, zxy)
    return ay * bz - az * by


def _normalize(v):
    # clamp_min, not "+ EPS": the dynamo exporter's optimiser drops the tiny addition (zero vectors -> NaN in ORT)
    return v / torch.sqrt((v * v).sum(1, keepdim=True).clamp_min(geo.EPS))


def _frame(a, b):
    """Gram-Schmidt frame of coordinate-first ``a, b (B, 3, K)`` -> columns ``(B, 3 [column], 3, K)``."""
    x = _normalize(a)
    y = _normalize(b - (b * x).sum(1, keepdim=True) * x)
    return torch.stack([x, y, _cross(x, y)], dim=1)


def feature_permutation(Ji: int, markers: int = 0) -> np.ndarray:
    """Index into the training model's feature vector for each feature of the export layout (``markers``: how
    many marker rows follow the ``Ji`` joints)."""
    K, Jm = NUM_VECTORS - 3, Ji + markers
    head = np.arange(3 * Jm + Jm)  # positions (j, c) and mask (j) of joints and markers: unchanged
    base = 4 * Jm
    local = [base + (j * K + k) * 3 + c for c in range(3) for k in range(K) for j in range(Ji)]
    base += Ji * K * 3
    up = [base + j * 3 + r for r in range(3) for j in range(Ji)]
    base += Ji * 3
    tail = np.arange(base, base + 3 * markers)  # markers in their parents' frames (c, k): unchanged
    return np.concatenate([head, local, up, tail]).astype(np.int64)


def output_permutation(Ji: int) -> np.ndarray:
    """Index into the training model's head outputs (``j*6 + column*3 + component``) for the export layout
    (``(column, component, j)``)."""
    return np.array([j * 6 + col * 3 + i for col in range(2) for i in range(3) for j in range(Ji)], dtype=np.int64)


class ExportStep(nn.Module):
    """``(pos (B, Ji + K, 3), mask (B, Ji + K), state (B, S)) -> (rot6d (B, J, 6), pos_clean (B, Ji + K, 3),
    state_out)``; ``K`` leaf markers follow the ``Ji`` joints (none in a model without markers)."""

    def __init__(self, model: IKModel):
        super().__init__()
        model = model.eval()
        Ji = self.Ji = model.num_inputs
        Km = self.Km = model.num_markers
        M = NUM_VECTORS * Ji
        self.cfg = model.cfg
        self.dummy = model.rig.dummy_root >= 0
        # positions (B, 3*Ji) in (j, c) order -> every vector "to - from", coordinate first: (B, 3*M)
        sel = np.zeros((3 * (Ji + Km), 3 * M), dtype=np.float32)  # marker rows select nothing
        to, fr = model.v_to.numpy(), model.v_from.numpy()
        for m in range(M):
            for c in range(3):
                sel[to[m] * 3 + c, c * M + m] += 1.0
                sel[fr[m] * 3 + c, c * M + m] -= 1.0
        self.register_buffer("sel", torch.from_numpy(sel))
        self.register_buffer("w_n", model.w_n.clone())
        self.register_buffer("w_lat", model.w_body[:, 0].clone())
        self.register_buffer("w_up", model.w_body[:, 1].clone())
        # C[j][i, col] arranged (col, i, 1, j) for the broadcast product G = G0 C
        self.register_buffer("Cw", model.C.permute(2, 1, 0).unsqueeze(2).contiguous())
        # parent rotations as one product with a selection matrix; the top joint's parent is the identity
        top = model.rig.parent < 0
        psel = np.zeros((Ji, Ji), dtype=np.float32)
        psel[model.rig.parent[~top], np.nonzero(~top)[0]] = 1.0
        self.register_buffer("psel", torch.from_numpy(psel))
        self.register_buffer("ptop", (torch.eye(3).reshape(1, 3, 3, 1) * torch.as_tensor(top, dtype=torch.float32)))
        self.register_buffer("ident6", torch.tensor(geo.IDENTITY_6D).reshape(1, 1, 6))
        if Km:
            # each marker minus its parent joint, coordinate first: positions (B, 3*(Ji+K)) -> (B, 3*K) (c, k)
            msel = np.zeros((3 * (Ji + Km), 3 * Km), dtype=np.float32)
            for k, p in enumerate(model.m_parent.tolist()):
                for c in range(3):
                    msel[(Ji + k) * 3 + c, c * Km + k] += 1.0
                    msel[p * 3 + c, c * Km + k] -= 1.0
            self.register_buffer("msel", torch.from_numpy(msel))
            self.register_buffer("m_parent", model.m_parent.clone())
        if self.cfg.denoiser:
            self.den_gru, self.den_head = model.den_gru, model.den_head
        if self.cfg.arch == "gru":
            self.ik_gru = model.ik_gru
        else:
            self.ik_ff = model.ik_ff
        lin = model.ik_in[0]
        self.ik_in = nn.Linear(lin.in_features, lin.out_features)
        self.ik_head = nn.Linear(model.ik_head.in_features, model.ik_head.out_features)
        with torch.no_grad():
            self.ik_in.weight.copy_(lin.weight[:, torch.from_numpy(feature_permutation(Ji, Km))])
            self.ik_in.bias.copy_(lin.bias)
            perm = torch.from_numpy(output_permutation(Ji))
            self.ik_head.weight.copy_(model.ik_head.weight[perm])
            self.ik_head.bias.copy_(model.ik_head.bias[perm])
        self.act = model.ik_in[1]

    def forward(self, pos, mask, state):
        Ji = self.Ji
        pm = (pos * mask.unsqueeze(-1)).flatten(1)  # (B, 3*Ji), (j, c) order
        if self.cfg.denoiser:
            den_s, ik_s = torch.split(state, [self.cfg.den_state, sum(self.cfg.ik_state)], dim=1)
            g = self.den_gru
            x = torch.cat([pm * POS_SCALE, mask], dim=-1)
            hd = gru_cell(x, den_s, g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0)
            clean = pm + self.den_head(hd)  # (B, 3*Ji)
            outs = [hd]
        else:
            ik_s, clean, outs = state, pm, []
        # geometry, coordinate first
        V = _normalize((clean @ self.sel).reshape(-1, 3, NUM_VECTORS * Ji))  # (B, 3, M)
        a, u, v, lat, up, nbs = torch.split(V, [Ji, Ji, Ji, Ji, Ji, 3 * Ji], dim=2)
        b = self.w_n * _cross(u, v) + self.w_lat * lat + self.w_up * up
        Fs = _frame(a, b)  # (B, 3 [column i], 3 [row], Ji)
        W = torch.cat([lat, up, nbs], dim=2).reshape(-1, 1, 3, NUM_VECTORS - 3, Ji)  # (B, 1, 3 i, K, Ji)
        local = (W * Fs.unsqueeze(3)).sum(2)  # (B, 3 [frame axis], K, Ji): each vector in each joint's frame
        parts = [clean * POS_SCALE, mask, local.flatten(1), Fs[:, :, 1].flatten(1)]
        if self.Km:
            d = (clean @ self.msel).reshape(-1, 1, 3, self.Km)  # (B, 1, 3 [row], K)
            Fp = torch.index_select(Fs, 3, self.m_parent)  # (B, 3 [column i], 3 [row], K)
            m = _normalize((Fp * d).sum(2)) * mask[:, Ji:].unsqueeze(1)  # (B, 3 [i], K): in the parent's frame
            parts.append(m.flatten(1))
        feats = torch.cat(parts, dim=-1)
        e = self.act(self.ik_in(feats))
        h, ik_out = ik_step(self, e, ik_s)
        D = self.ik_head(torch.cat([h, e], dim=-1)).reshape(-1, 2, 3, 1, Ji)  # (B, column, i, 1, Ji)
        FD = (D * Fs.unsqueeze(1)).sum(2)  # (B, 2, 3, Ji): F times the residual's two columns
        G0 = _frame(FD[:, 0], FD[:, 1])  # (B, 3 [column], 3 [row], Ji)
        G = (G0.unsqueeze(1) * self.Cw).sum(2)  # G0 C, (B, 3 [column], 3 [row], Ji)
        Gp = (G @ self.psel) + self.ptop  # parent's columns per joint (B, 3, 3, Ji)
        L = (G[:, :2].unsqueeze(2) * Gp.unsqueeze(1)).sum(3)  # columns 0, 1 of Gp^T G: (B, 2, 3, Ji)
        r6 = L.permute(0, 3, 1, 2).reshape(-1, Ji, 6)
        if self.dummy:
            r6 = torch.cat([r6[:, :1] * 0 + self.ident6, r6], dim=1)
        return r6, clean.reshape(-1, Ji + self.Km, 3), torch.cat([*outs, ik_out], dim=-1)
