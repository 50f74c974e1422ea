"""A small model pack that follows the per-frame step contract, for backend and solver tests.

Two GRU cells written as GRUCell-style math (Gemm/Sigmoid/Tanh, no ONNX ``GRU`` op), like the real model: a
denoiser cell whose output corrects ``pos`` (and fills missing joints), and an IK cell that emits the 6-D local
rotations. Weights are random (seeded); the state is ``[h_denoise, h_ik]``.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from rtik.formats import bvh
from rtik.geometry import kinematics
from rtik.models import modelpack
from rtik.models.normalize import NormSpec


def _step_module(Ji: int, J: int, H: int, seed: int):
    import torch
    from torch import nn

    class Cell(nn.Module):
        def __init__(self, n_in: int):
            super().__init__()
            self.w_ih = nn.Linear(n_in, 3 * H)
            self.w_hh = nn.Linear(H, 3 * H)

        def forward(self, x, h):
            ir, iz, inn = self.w_ih(x).chunk(3, dim=1)
            hr, hz, hn = self.w_hh(h).chunk(3, dim=1)
            r = torch.sigmoid(ir + hr)
            z = torch.sigmoid(iz + hz)
            n = torch.tanh(inn + r * hn)
            return (1.0 - z) * n + z * h

    class Step(nn.Module):
        def __init__(self):
            super().__init__()
            self.den = Cell(Ji * 4)
            self.ik = Cell(Ji * 3 + H)
            self.fix = nn.Linear(H, Ji * 3)
            self.rot = nn.Linear(H, J * 6)
            self.register_buffer("eye6", torch.tensor([1.0, 0, 0, 0, 1, 0]).repeat(J))

        def forward(self, pos, mask, state):
            B = pos.shape[0]
            h1, h2 = state[:, :H], state[:, H:]
            h1n = self.den(torch.cat([pos.reshape(B, Ji * 3), mask], dim=1), h1)
            m = mask.unsqueeze(-1)
            clean = pos + 0.01 * torch.tanh(self.fix(h1n)).reshape(B, Ji, 3) * m + (1 - m) * 0.1
            h2n = self.ik(torch.cat([clean.reshape(B, Ji * 3), h1n], dim=1), h2)
            r6 = (self.eye6 + 0.3 * torch.tanh(self.rot(h2n))).reshape(B, J, 6)
            return r6, clean, torch.cat([h1n, h2n], dim=1)

    torch.manual_seed(seed)
    return Step().eval()


def build(out: Path, skeleton_bvh: Path, hidden: int = 32, seed: int = 0, opset: int = 20) -> modelpack.ModelPack:
    """Write a random-weight pack to ``out`` with the skeleton (and mean pose) of ``skeleton_bvh`` in metres."""
    import torch

    motion = bvh.read(skeleton_bvh)
    skel = motion.skeleton.scaled(0.01)
    J = len(skel)
    inputs = list(skel.names[1:])
    Ji, S = len(inputs), 2 * hidden
    mod = _step_module(Ji, J, hidden, seed)
    args = (torch.zeros(2, Ji, 3), torch.ones(2, Ji), torch.zeros(2, S))
    Bd = torch.export.Dim("B", min=1, max=4096)
    dyn = ({0: Bd}, {0: Bd}, {0: Bd})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(mod, args, dynamic_shapes=dyn)
        buf = io.BytesIO()
        torch.export.save(ep, buf)
        prog = torch.onnx.export(
            mod, args, input_names=["pos", "mask", "state"], output_names=["rot6d", "pos_clean", "state_out"],
            dynamic_shapes=dyn, dynamo=True, opset_version=opset, verbose=False,
        )  # fmt: skip
    onnx_bytes = prog.model_proto.SerializeToString()
    meta = {
        "name": f"test-random-h{hidden}",
        "created": "test",
        "skeleton": skel.to_dict(),
        "input_joints": inputs,
        "state_size": S,
        "normalization": NormSpec().to_dict(),
        "prior_local": kinematics.mean_local_rotations(motion.local_quats()).tolist(),
        "fps": 30.0,
        "licence": "test weights",
    }
    return modelpack.save(out, meta, onnx_bytes, {"torch": buf.getvalue()})


def reference_step(pack: modelpack.ModelPack, pos, mask, state) -> tuple[np.ndarray, ...]:
    """Run the pack's torch program on numpy inputs (float64 compare helper)."""
    import torch

    ep = torch.export.load(str(pack.file("torch")))
    with torch.inference_mode():
        out = ep.module()(*(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in (pos, mask, state)))
    return tuple(o.numpy() for o in out)


def mocap_sample() -> Path | None:
    """A sample clip from ``../shared/mocap`` (or ``$RTIK_MOCAP``), or None where the data is absent."""
    import os

    root = Path(__file__).resolve().parents[1].parent / "shared" / "mocap"
    if not root.is_dir():
        root = Path(os.environ.get("RTIK_MOCAP", root))
    clips = sorted((root / "sample").glob("*.bvh"))
    return clips[0] if clips else None


BUILD_NEEDS = ("torch", "onnx", "onnxscript")  # torch.onnx.export(dynamo=True) needs all three


def cached_pack(hidden: int = 32) -> modelpack.ModelPack | None:
    """The test pack, built once into the git-ignored ``cache/`` (keyed by this file's content); None without
    the mocap sample (tests then skip). Building needs the ``train`` extra's torch, onnx and onnxscript: where
    one is absent and no pack is cached, the calling test is skipped with the reason."""
    import hashlib
    import importlib.util
    import os
    import shutil

    clip = mocap_sample()
    if clip is None:
        return None
    key = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:10]
    out = Path(__file__).resolve().parents[1] / "cache" / "test-packs" / f"h{hidden}-{key}"
    if (out / "model.json").is_file():
        return modelpack.load(out)
    missing = [m for m in BUILD_NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        import pytest

        pytest.skip(f"the test model pack is built with {', '.join(missing)} (not installed; see README, Test)")
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")  # concurrent test runs each build their own
    shutil.rmtree(tmp, ignore_errors=True)
    build(tmp, clip, hidden=hidden)
    try:
        tmp.rename(out)
    except OSError:  # another run finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return modelpack.load(out)


def hinged(pack: modelpack.ModelPack) -> modelpack.ModelPack:
    """``pack`` with hinge axes measured on the mocap sample (its knees and elbows, :mod:`train.hinges`)."""
    import dataclasses

    from train.hinges import hinge_axes

    axes, _ = hinge_axes(bvh.read(mocap_sample()).local_quats(), pack.skeleton)
    return dataclasses.replace(pack, hinges={k: np.array(v) for k, v in axes.items()})


def twisted(pack: modelpack.ModelPack) -> modelpack.ModelPack:
    """``pack`` with the shipped recipe's mean-pose twists (:data:`train.hinges.TWIST_PRIOR`) and hinge axes."""
    import dataclasses

    from train.hinges import twist_joints

    return dataclasses.replace(hinged(pack), twist_prior=tuple(twist_joints(pack.skeleton)))


def chain():
    """A straight three-joint limb hanging down (bones along -Y): root -> upper -> lower -> end."""
    from rtik.geometry.skeleton import Skeleton

    return Skeleton(
        ("root", "upper", "lower", "end"), np.array([-1, 0, 1, 2]),
        np.array([[0, 0, 0], [0, -0.4, 0], [0, -0.4, 0], [0, -0.1, 0]], dtype=np.float64),
    )  # fmt: skip
