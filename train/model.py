"""The network: a causal recurrent denoiser and a stateful GRU IK network, as one per-frame step.

Per frame (all in the normalised heading frame, see :mod:`rtik.models.normalize`):

1. **Denoiser** — GRU over ``[pos·mask, mask]``; ``pos_clean = pos·mask + head(h)`` (the head starts at zero, so
   an untrained denoiser passes observed joints through).
2. **Geometric frames** ``F_j`` of every input joint from ``pos_clean`` (see :mod:`train.rig`).
3. **IK** — features = clean positions, the mask, and each joint's neighbours, body axes and the up axis
   expressed in its own frame ``F_j``; an MLP and a multi-layer GRU predict a 6-D residual ``Δ_j`` per joint.
   (Ablations: ``arch="ff"`` replaces the GRU by a feed-forward network over the embeddings of the last
   ``ff_window`` frames, kept in the state as a shift buffer; ``denoiser=False`` makes step 1 the identity.)
   The global rotation is ``G_j = F_j · Δ_j · C_j`` with ``C_j`` the mean offset between the frame and the joint
   (calibrated from data) and ``Δ_j`` starting at identity, so the untrained network is already a geometric
   solver. Local rotations ``L_j = G_parent(j)ᵀ G_j``; the motion root's is in the heading frame.

A model with leaf *markers* (:mod:`rtik.formats.markers`: head top, nose, eyes, ears, hand tips, knuckles, thumbs,
heels, toe tips) takes them as ``K`` more input rows after the ``Ji`` joints, masked when absent: the denoiser sees
all ``Ji + K`` rows, and the IK features get each present marker's offset from its parent joint expressed in that
joint's geometric frame ``F_parent`` as a unit direction (zero when absent): what turns a leaf, whatever the length
of a rig's end site.

Training runs whole sequences through ``nn.GRU`` (:meth:`IKModel.forward`); the runtime step
(:meth:`IKModel.step`) does the same with GRUCell math on a flat state, weights shared 1:1, which exports to
loop-free Gemm/Sigmoid/Tanh graphs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from rtik.formats import markers as mk
from rtik.geometry.skeleton import Skeleton
from train import geometry as geo
from train.rig import build_rig

#: positions are multiplied by this before entering the networks (normalised bodies are ~0.5 units tall)
POS_SCALE = 4.0
#: vectors per joint: bone, bend pair (2), lateral, up, parent, child, grandchild
NUM_VECTORS = 8
#: IK network kinds (:class:`ModelConfig` ``arch``)
ARCHS = ("gru", "ff")


@dataclass(frozen=True)
class ModelConfig:
    """Network sizes (stored with every checkpoint and in the model pack's metadata).

    Fields:
        hidden: width of the IK GRU (and of its input MLP).
        layers: number of IK GRU layers.
        den_hidden: width of the denoiser GRU.
        blend: weight of the body axis beside the bend normal in a limb's frame (see :mod:`train.rig`).
        arch: ``"gru"`` (the IK GRU) or ``"ff"`` (``layers`` feed-forward layers over the input embeddings of the
            last ``ff_window`` frames, oldest first; the state holds the previous ``ff_window - 1`` of them).
        ff_window: frames seen by the feed-forward network (``arch="ff"`` only), at least 2.
        denoiser: False = no denoiser: ``pos_clean = pos·mask`` and the state has no denoiser part.
        markers: names of the leaf markers the model takes after its input joints (:data:`rtik.formats.markers.NAMES`).
    """

    hidden: int = 192
    layers: int = 2
    den_hidden: int = 96
    blend: float = 0.3
    arch: str = "gru"
    ff_window: int = 8
    denoiser: bool = True
    markers: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "markers", tuple(self.markers))
        unknown = [m for m in self.markers if m not in mk.BY_NAME]
        if unknown:
            raise ValueError(f"unknown markers {unknown}; valid: {', '.join(mk.NAMES)}")
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; valid: {', '.join(ARCHS)}")
        if self.arch == "ff" and self.ff_window < 2:
            raise ValueError(f"ff_window must be at least 2, got {self.ff_window}")

    @property
    def den_state(self) -> int:
        """Width of the denoiser's part of the state (0 without a denoiser)."""
        return self.den_hidden if self.denoiser else 0

    @property
    def ik_state(self) -> list[int]:
        """Widths of the IK parts of the state: one per GRU layer, or the feed-forward window's buffer."""
        if self.arch == "ff":
            return [(self.ff_window - 1) * self.hidden]
        return [self.hidden] * self.layers

    def to_dict(self) -> dict:
        d = asdict(self)
        d["markers"] = list(self.markers)
        return d


def gru_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    """One GRU step with ``nn.GRU``'s equations and gate order (r, z, n; reset applied after ``W_hn h``)."""
    gi = nn.functional.linear(x, w_ih, b_ih)
    gh = nn.functional.linear(h, w_hh, b_hh)
    H = h.shape[-1]
    gi_rz, gi_n = torch.split(gi, [2 * H, H], dim=-1)
    gh_rz, gh_n = torch.split(gh, [2 * H, H], dim=-1)
    r, z = torch.split(torch.sigmoid(gi_rz + gh_rz), [H, H], dim=-1)
    n = torch.tanh(gi_n + r * gh_n)
    return n + z * (h - n)


def ik_step(model, e, ik_s):
    """One frame of the IK network (GRUCell math or the feed-forward window) on the embedding ``e (B, H)`` and
    the IK part of the flat state ``ik_s``; returns ``(output (B, H), new IK state)``."""
    if model.cfg.arch == "ff":
        win = torch.cat([ik_s, e], dim=-1)  # (B, K*H), oldest first
        return model.ik_ff(win), win[:, model.cfg.hidden :]
    h, outs = e, []
    for k, part in enumerate(torch.split(ik_s, model.cfg.ik_state, dim=1)):
        w = [getattr(model.ik_gru, f"{n}_l{k}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h = gru_cell(h, part, *w)
        outs.append(h)
    return h, torch.cat(outs, dim=-1)


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
        K = self.num_markers = len(cfg.markers)
        Jm = Ji + K  # input rows: joints, then markers
        m_par = [rig.input_joints.index(mk.BY_NAME[m].parent) for m in cfg.markers]
        self.register_buffer("m_parent", torch.as_tensor(m_par, dtype=torch.int64), persistent=False)
        # NUM_VECTORS blocks of Ji vectors "to - from": bone, bend pair u and v, lateral, up, parent, child, grandchild
        me = np.arange(Ji)
        to = np.concatenate([rig.a_to, rig.u_to, rig.v_to, rig.lat_l, rig.up_to, *rig.neighbours.T])
        fr = np.concatenate([rig.a_from, rig.u_from, rig.v_from, rig.lat_r, rig.up_from, me, me, me])
        self.register_buffer("v_to", torch.as_tensor(to), persistent=False)
        self.register_buffer("v_from", torch.as_tensor(fr), persistent=False)
        self.register_buffer("par0", torch.as_tensor(np.maximum(rig.parent, 0)), persistent=False)
        self.register_buffer("top", torch.as_tensor(rig.parent < 0)[:, None, None], persistent=False)
        self.register_buffer("ident6", torch.tensor(geo.IDENTITY_6D), persistent=False)
        det = torch.as_tensor(rig.determined, dtype=torch.float32)
        # frame y axis = w_n * bend normal + w_body . (lateral, up); calibrated from data by calibrate()
        self.register_buffer("w_n", 1.0 - det)
        self.register_buffer("w_body", torch.stack([det + (1.0 - det) * cfg.blend, torch.zeros(Ji)], -1))
        self.register_buffer("C", torch.eye(3).repeat(Ji, 1, 1))
        H, Hd = cfg.hidden, cfg.den_hidden
        if cfg.denoiser:
            self.den_gru = nn.GRU(Jm * 4, Hd, 1, batch_first=True)
            self.den_head = nn.Linear(Hd, Jm * 3)
            nn.init.zeros_(self.den_head.weight)
            nn.init.zeros_(self.den_head.bias)
        n_feat = Jm * 3 + Jm + Ji * (NUM_VECTORS - 3) * 3 + Ji * 3 + K * 3
        self.ik_in = nn.Sequential(nn.Linear(n_feat, H), nn.SiLU())
        if cfg.arch == "gru":
            self.ik_gru = nn.GRU(H, H, cfg.layers, batch_first=True)
        else:
            sizes = [cfg.ff_window * H] + [H] * cfg.layers
            layers = [(nn.Linear(sizes[i], sizes[i + 1]), nn.SiLU()) for i in range(cfg.layers)]
            self.ik_ff = nn.Sequential(*[m for pair in layers for m in pair])
        self.ik_head = nn.Linear(2 * H, Ji * 6)  # reads [GRU output, MLP embedding]
        nn.init.zeros_(self.ik_head.weight)
        with torch.no_grad():
            self.ik_head.bias.copy_(torch.tensor(geo.IDENTITY_6D).repeat(Ji))

    # ------------------------------------------------------------------------------------------ sizes
    @property
    def state_size(self) -> int:
        return self.cfg.den_state + sum(self.cfg.ik_state)

    @property
    def input_joints(self) -> tuple[str, ...]:
        return self.rig.input_joints

    @property
    def num_rows(self) -> int:
        """Input rows per frame: the joints, then the markers."""
        return self.num_inputs + self.num_markers

    # --------------------------------------------------------------------------------------- geometry
    # Written for small exported graphs: one gather per end of all vectors, slices instead of reshapes, frames
    # kept as rows (x, y, z). Shapes: N = batch (frames flattened), Ji input joints, K = NUM_VECTORS.
    def _vectors(self, P):
        """Unit vectors ``(N, K·Ji, 3)`` in blocks of ``Ji``: bone, bend pair u and v, lateral, up, parent, child,
        grandchild, from positions ``(N, Ji, 3)``."""
        return geo.normalize(torch.index_select(P, 1, self.v_to) - torch.index_select(P, 1, self.v_from))

    def _frame_rows(self, V):
        """Geometric frames as rows ``(N, Ji, 3, 3)`` (``F^T``) from the vectors of :meth:`_vectors`."""
        Ji = self.num_inputs
        n = geo.cross(V[:, Ji : 2 * Ji], V[:, 2 * Ji : 3 * Ji])
        b = (
            self.w_n[:, None] * n
            + self.w_body[:, :1] * V[:, 3 * Ji : 4 * Ji]
            + self.w_body[:, 1:] * V[:, 4 * Ji : 5 * Ji]
        )
        return geo.frame_rows(V[:, :Ji], b)

    def frames(self, P):
        """Geometric frame of every input joint ``(N, Ji, 3, 3)`` (columns x, y, z) from positions ``(N, Ji, 3)``."""
        return self._frame_rows(self._vectors(P)).transpose(-1, -2)

    def features(self, P, mask):
        """IK input ``(N, n_feat)`` and frames as rows ``(N, Ji, 3, 3)`` from clean positions ``(N, Ji + K, 3)``
        (joints, then markers) and the mask ``(N, Ji + K)``."""
        Ji = self.num_inputs
        V = self._vectors(P[:, :Ji])
        Ft = self._frame_rows(V)
        body = V[:, 3 * Ji :].reshape(-1, NUM_VECTORS - 3, Ji, 3).transpose(1, 2)  # (N, Ji, 5, 3)
        local = body @ Ft.transpose(-1, -2)  # rows v^T F: body axes and neighbours in each joint's frame
        up = Ft[..., 1]  # world up (+Y) in each joint's frame
        parts = [(P * POS_SCALE).flatten(1), mask, local.flatten(1), up.flatten(1)]
        if self.num_markers:
            d = P[:, Ji:] - torch.index_select(P, 1, self.m_parent)  # (N, K, 3)
            m = (torch.index_select(Ft, 1, self.m_parent) @ d.unsqueeze(-1))[..., 0]  # in the parent's frame
            m = m / torch.sqrt((m * m).sum(-1, keepdim=True).clamp_min(geo.EPS))  # a direction (tips differ in length)
            parts.append((m * mask[:, Ji:, None]).transpose(1, 2).flatten(1))  # (N, 3*K), (c, k)
        return torch.cat(parts, dim=-1), Ft

    def decode(self, Ft, out6):
        """Global ``(N, Ji, 3, 3)`` and transposed local ``(N, Ji, 3, 3)`` rotations from frame rows and the 6-D
        residuals ``(N, Ji·6)``."""
        FD = out6.reshape(-1, self.num_inputs, 2, 3) @ Ft  # rows (F d)^T of the residual's two columns
        G = geo.frame_rows(FD[:, :, 0], FD[:, :, 1]).transpose(-1, -2) @ self.C
        Gp = torch.index_select(G, 1, self.par0)
        Lt = G.transpose(-1, -2) @ Gp
        return G, torch.where(self.top, G.transpose(-1, -2), Lt)

    def rot6d(self, Lt):
        """Transposed local rotations ``(N, Ji, 3, 3)`` -> 6-D of every skeleton joint ``(N, J, 6)`` (the dummy
        root, if any, is the identity)."""
        r6 = Lt[:, :, :2].reshape(-1, self.num_inputs, 6)
        if self.rig.dummy_root < 0:
            return r6
        return torch.cat([r6[:, :1] * 0 + self.ident6, r6], dim=1)

    # ------------------------------------------------------------------------------------------ sequences
    def split_state(self, state):
        """Flat state ``(B, S)`` -> (denoiser ``(1, B, Hd)``, IK: GRU ``(layers, B, H)`` or feed-forward buffer
        ``(B, ff_window - 1, H)``)."""
        Hd, H, Lk = self.cfg.den_state, self.cfg.hidden, self.cfg.layers
        den = state[:, :Hd].unsqueeze(0).contiguous()
        if self.cfg.arch == "ff":
            return den, state[:, Hd:].reshape(len(state), -1, H)
        ik = state[:, Hd:].reshape(-1, Lk, H).transpose(0, 1).contiguous()
        return den, ik

    def join_state(self, den, ik):
        ik = ik.flatten(1) if self.cfg.arch == "ff" else ik.transpose(0, 1).flatten(1)
        return torch.cat([den[0], ik], dim=-1)

    def denoise(self, pm, mask, den_h):
        """A sequence's denoised positions ``(B, T, Ji, 3)`` and the denoiser state, from masked positions
        ``pm (B, T, Ji, 3)``; the identity without a denoiser."""
        if not self.cfg.denoiser:
            return pm, den_h
        hd, den_h = self.den_gru(torch.cat([(pm * POS_SCALE).flatten(-2), mask], dim=-1), den_h)
        return pm + self.den_head(hd).unflatten(-1, pm.shape[-2:]), den_h

    def ik_sequence(self, e, ik_h):
        """IK network outputs ``(B, T, H)`` and its state over a sequence of embeddings ``e (B, T, H)``."""
        if self.cfg.arch == "gru":
            return self.ik_gru(e, ik_h)
        seq = torch.cat([ik_h, e], dim=1)  # (B, K - 1 + T, H), oldest first
        win = seq.unfold(1, self.cfg.ff_window, 1).transpose(-1, -2).flatten(-2)  # (B, T, K*H)
        return self.ik_ff(win), seq[:, seq.shape[1] - (self.cfg.ff_window - 1) :]

    def forward(self, pos, mask, state=None):
        """A whole sequence: ``pos (B, T, Ji + K, 3)``, ``mask (B, T, Ji + K)``, ``state (B, S)`` or None (zeros).

        Returns a dict: ``pos_clean (B, T, Ji + K, 3)``, ``G`` and ``L`` ``(B, T, Ji, 3, 3)`` (global in the
        heading frame, local), ``state (B, S)`` after the last frame.
        """
        B, T, Jm = pos.shape[:3]
        Ji = self.num_inputs
        if state is None:
            state = pos.new_zeros(B, self.state_size)
        den_h, ik_h = self.split_state(state)
        clean, den_h = self.denoise(pos * mask[..., None], mask, den_h)
        x, Ft = self.features(clean.reshape(B * T, Jm, 3), mask.reshape(B * T, Jm))
        e = self.ik_in(x.reshape(B, T, -1))
        hi, ik_h = self.ik_sequence(e, ik_h)
        G, Lt = self.decode(Ft, self.ik_head(torch.cat([hi, e], dim=-1)).reshape(B * T, -1))
        G, L = G.reshape(B, T, Ji, 3, 3), Lt.transpose(-1, -2).reshape(B, T, Ji, 3, 3)
        return {"pos_clean": clean, "G": G, "L": L, "state": self.join_state(den_h, ik_h)}

    # ------------------------------------------------------------------------------------------ one frame
    def step(self, pos, mask, state):
        """One frame, the runtime contract: ``pos (B, Ji + K, 3)``, ``mask (B, Ji + K)``, ``state (B, S)`` ->
        ``(rot6d (B, J, 6), pos_clean (B, Ji + K, 3), state_out (B, S))``. GRUCell math, no loops over time."""
        cfg = self.cfg
        den_s, ik_s = torch.split(state, [cfg.den_state, sum(cfg.ik_state)], dim=1)
        pm = pos * mask[..., None]
        outs = []
        if cfg.denoiser:
            g = self.den_gru
            x = torch.cat([(pm * POS_SCALE).flatten(1), mask], dim=-1)
            hd = gru_cell(x, den_s, g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0)
            clean = pm + self.den_head(hd).reshape(-1, self.num_rows, 3)
            outs.append(hd)
        else:
            clean = pm
        x, Ft = self.features(clean, mask)
        e = self.ik_in(x)
        h, ik_out = ik_step(self, e, ik_s)
        _, Lt = self.decode(Ft, self.ik_head(torch.cat([h, e], dim=-1)))
        return self.rot6d(Lt), clean, torch.cat([*outs, ik_out], dim=-1)

    # ------------------------------------------------------------------------------------------ warm start
    @torch.no_grad()
    def load_without_markers(self, state: dict) -> None:
        """Start from the weights ``state`` of a model of the same sizes that reads no markers (a warm start):
        every weight is copied, the denoiser's and the IK input's columns for the markers start at zero, so the
        model computes exactly what the old one did until training teaches it to use them."""
        Ji, K = self.num_inputs, self.num_markers
        Jm = Ji + K
        # denoiser input [pos (rows*3), mask (rows)], joint rows first: the old mask columns move behind the
        # markers' positions
        den_cols = np.concatenate([np.arange(3 * Ji), 3 * Jm + np.arange(Ji)])
        # IK input [pos, mask, local, up] (+ marker directions): pos and mask as above, the rest shifted
        rest = (NUM_VECTORS - 3) * 3 * Ji + 3 * Ji
        ik_cols = np.concatenate([den_cols, 4 * Jm + np.arange(rest)])
        own = self.state_dict()
        for name, value in state.items():
            if name not in own:
                raise ValueError(f"warm start: unknown weight {name!r}")
            target = own[name]
            want = {  # the old shape each grown weight must have
                "den_gru.weight_ih_l0": (target.shape[0], len(den_cols)),
                "den_head.weight": (3 * Ji, *target.shape[1:]),
                "den_head.bias": (3 * Ji,),
                "ik_in.0.weight": (target.shape[0], len(ik_cols)),
            }.get(name, tuple(target.shape))
            if tuple(value.shape) != want:
                raise ValueError(f"warm start: {name} has shape {tuple(value.shape)}, expected {want}")
            if target.shape == value.shape:
                target.copy_(value)
            elif name == "den_gru.weight_ih_l0":
                target.zero_()
                target[:, torch.from_numpy(den_cols)] = value
            elif name.startswith("den_head."):
                target.zero_()
                target[: 3 * Ji] = value
            else:  # ik_in.0.weight
                target.zero_()
                target[:, torch.from_numpy(ik_cols)] = value

    # ---------------------------------------------------------------------------------------- calibration
    @torch.no_grad()
    def calibrate(self, positions, global_rot, blends=(0.1, 0.3, 1.0)) -> dict:
        """Fit each joint's frame recipe and offset ``C`` to data; returns ``{joint: (recipe, error_deg)}``.

        ``positions (N, Ji, 3)`` and the ground-truth global rotations ``(N, Ji, 3, 3)`` of the input joints, in
        one common world frame (any heading, any scale). A non-determined joint may use the bend normal blended
        with the body axis least parallel to its bone (weights ``blends``, with the sign that agrees with the
        normal on average), or a body axis alone (joints that follow their parent, e.g. the clavicle, the
        spine); for each recipe ``C_j`` = the mean of ``F_jᵀ G_j`` projected onto a rotation, and the recipe
        whose ``F_j C_j`` is closest to the data wins.
        """
        P = torch.as_tensor(np.asarray(positions), dtype=torch.float32)
        Rg = torch.as_tensor(np.asarray(global_rot), dtype=torch.float32)
        Ji = self.num_inputs
        V = self._vectors(P).reshape(len(P), NUM_VECTORS, Ji, 3).transpose(1, 2)  # (N, Ji, K, 3)
        n = geo.cross(V[..., 1, :], V[..., 2, :])
        body = V[..., 3:5, :]  # lateral, up
        k = (V[..., 0:1, :] * body).sum(-1).abs().mean(0).argmin(-1)  # (Ji,) the less parallel body axis
        sign = torch.sign((n * body[torch.arange(len(P))[:, None], torch.arange(Ji), k]).sum(-1).mean(0))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        onehot = torch.nn.functional.one_hot(k, 2).float()
        recipes = {f"bend+{b:g}": (torch.ones(Ji), onehot * (b * sign)[:, None]) for b in blends}
        recipes["lateral"] = (torch.zeros(Ji), torch.tensor([1.0, 0.0]).repeat(Ji, 1))
        recipes["up"] = (torch.zeros(Ji), torch.tensor([0.0, 1.0]).repeat(Ji, 1))
        det = torch.as_tensor(self.rig.determined)
        best_err = torch.full((Ji,), float("inf"))
        chosen = [""] * Ji
        w_n, w_body, C = self.w_n.clone(), self.w_body.clone(), self.C.clone()
        for name, (wn, wb) in recipes.items():
            self.w_n.copy_(torch.where(det, 1.0 - det.float(), wn))
            self.w_body.copy_(torch.where(det[:, None], torch.tensor([1.0, 0.0]), wb))
            Ft = self._frame_rows(self._vectors(P))
            Cj = _project_rotation((Ft @ Rg).mean(0))  # mean F^T G, (Ji, 3, 3)
            err = geo.geodesic(Ft.transpose(-1, -2) @ Cj, Rg).mean(0)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            w_n = torch.where(better, self.w_n, w_n)
            w_body = torch.where(better[:, None], self.w_body, w_body)
            C = torch.where(better[:, None, None], Cj, C)
            chosen = [name if b else c for b, c in zip(better.tolist(), chosen, strict=True)]
        self.w_n.copy_(w_n)
        self.w_body.copy_(w_body)
        self.C.copy_(C)
        deg = best_err * 180.0 / torch.pi
        return {
            j: ("determined" if d else c, float(e))
            for j, c, d, e in zip(self.input_joints, chosen, det, deg, strict=True)
        }


def _project_rotation(M):
    """Nearest rotations ``(..., 3, 3)`` to matrices ``M`` (SVD)."""
    U, _, Vh = torch.linalg.svd(M)
    d = torch.sign(torch.det(U @ Vh))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    return U @ D @ Vh
