"""Export a model to a model pack: ``step.onnx`` (opset 17, dynamic batch), ``step.pt2`` (a ``torch.export``
program of the same step, for rtik's torch backend) and ``model.json`` via :func:`rtik.models.modelpack.save`.

    python -m train.export --random --out DIR [--hidden H] [--layers L] [--den-hidden H]   # random weights
                           [--arch gru|ff] [--ff-window K] [--no-denoiser]
    python -m train.export --checkpoint runs/NAME/last.pt --out DIR                          # a trained model
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from rtik.formats import markers
from rtik.geometry.skeleton import Skeleton
from rtik.models import modelpack
from rtik.models.normalize import NormSpec
from train.checkpoint import load_checkpoint
from train.model import ARCHS, IKModel, ModelConfig
from train.step import ExportStep

OPSET = 17
INPUT_NAMES = ("pos", "mask", "state")
OUTPUT_NAMES = ("rot6d", "pos_clean", "state_out")
#: licence of the Bandai Namco Research Motion Dataset 2, from which the shipped weights are learned
DATA_LICENCE = "CC BY-NC 4.0"


def example_inputs(model: IKModel, batch: int = 2, seed: int = 0):
    """Plausible random inputs ``(pos, mask, state)`` for tracing and parity checks."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(batch, model.num_rows, 3, generator=g) * 0.2
    mask = (torch.rand(batch, model.num_rows, generator=g) > 0.1).float()
    state = torch.randn(batch, model.state_size, generator=g) * 0.1
    return pos * mask[..., None], mask, state


def exported_program(model: IKModel) -> torch.export.ExportedProgram:
    """The step (:class:`train.step.ExportStep`) as a ``torch.export`` program with a dynamic batch."""
    step = ExportStep(model).eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        return torch.export.export(step, example_inputs(model), dynamic_shapes=({0: batch}, {0: batch}, {0: batch}))


def onnx_bytes(model: IKModel, program: torch.export.ExportedProgram | None = None) -> bytes:
    """The step as an ONNX graph (opset 17, dynamic batch), loop-free GRU math."""
    import onnx

    program = program if program is not None else exported_program(model)
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(d) / "step.onnx"
        torch.onnx.export(
            program,
            (),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            opset_version=OPSET,
            dynamo=True,
            optimize=True,
            verbose=False,
        )
        proto = onnx.load(str(path))
    if any(n.op_type in ("GRU", "Loop", "Scan") for n in proto.graph.node):
        raise RuntimeError("exported step contains a recurrent/loop op; the GRU must be cell math")
    return proto.SerializeToString()


def torch_program_bytes(model: IKModel, program: torch.export.ExportedProgram | None = None) -> bytes:
    """The step as a ``torch.export`` program (``.pt2``), dynamic batch."""
    buf = io.BytesIO()
    torch.export.save(program if program is not None else exported_program(model), buf)
    return buf.getvalue()


def pack_meta(model: IKModel, name: str, prior_local=None, fps: float = 30.0, **extra) -> dict:
    """``model.json`` content (without ``format``/``files``) for ``model``; ``extra`` keys are added verbatim
    (``training``, ``metrics``, ``licence``, ...)."""
    J = model.num_joints
    prior = np.tile([0.0, 0.0, 0.0, 1.0], (J, 1)) if prior_local is None else np.asarray(prior_local)
    return {
        "name": name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "skeleton": model.skeleton.to_dict(),
        "input_joints": list(model.input_joints),
        "markers": list(model.cfg.markers),
        "state_size": model.state_size,
        "normalization": NormSpec().to_dict(),
        "prior_local": prior.tolist(),
        "fps": float(fps),
        "architecture": {"type": f"rtik-{model.cfg.arch}-ik", **model.cfg.to_dict()},
        **extra,
    }


def export_pack(model: IKModel, out_dir, meta: dict) -> modelpack.ModelPack:
    """Write ``model`` as a model pack in ``out_dir`` with metadata ``meta`` (see :func:`pack_meta`)."""
    model = model.eval()
    program = exported_program(model)
    pt2_b = torch_program_bytes(model, program)
    onnx_b = onnx_bytes(model, program)
    meta = {**meta, "state_size": model.state_size, "input_joints": list(model.input_joints),
            "markers": list(model.cfg.markers)}  # fmt: skip
    return modelpack.save(out_dir, meta, onnx_b, {"torch": pt2_b})


def default_skeleton() -> Skeleton:
    """The training data's skeleton in metres, read from the first sample clip of the mocap folder."""
    from train.data import mocap_root, read_skeleton

    return read_skeleton(next(iter(sorted((mocap_root() / "sample").glob("*.bvh")))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.export", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--random", action="store_true", help="random weights (for testing the runtime)")
    src.add_argument("--checkpoint", type=Path, help="a training checkpoint (runs/NAME/last.pt)")
    ap.add_argument("--out", type=Path, required=True, help="folder to write the pack into")
    ap.add_argument("--hidden", type=int, default=ModelConfig.hidden, help="IK GRU width (--random only)")
    ap.add_argument("--layers", type=int, default=ModelConfig.layers, help="IK GRU layers (--random only)")
    ap.add_argument("--den-hidden", type=int, default=ModelConfig.den_hidden, help="denoiser width (--random)")
    ap.add_argument("--arch", choices=ARCHS, default=ModelConfig.arch, help="IK network (--random only)")
    ap.add_argument("--ff-window", type=int, default=ModelConfig.ff_window, help="frames seen by --arch ff")
    ap.add_argument("--no-denoiser", action="store_true", help="a pack without denoiser (--random only)")
    ap.add_argument("--markers", default="none", help="leaf markers of a --random pack: all, none or a comma list")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = ap.parse_args(argv)
    if args.random:
        torch.manual_seed(args.seed)
        try:
            marks = markers.NAMES if args.markers == "all" else tuple(m for m in args.markers.split(",") if m != "none")
            cfg = ModelConfig(args.hidden, args.layers, args.den_hidden, arch=args.arch, ff_window=args.ff_window,
                              denoiser=not args.no_denoiser, markers=marks)  # fmt: skip
        except ValueError as e:
            ap.error(str(e))
        model = IKModel(default_skeleton(), cfg)
        # random weights everywhere, small enough that outputs stay near the geometric solver
        with torch.no_grad():
            for lin in (model.ik_head, getattr(model, "den_head", None)):
                if lin is not None:
                    lin.weight.normal_(0.0, 0.01)
        meta = pack_meta(model, "random", training={"command": " ".join(["python -m train.export", *sys.argv[1:]])})
        meta["licence"] = "random weights, no data"
    else:
        model, meta = load_checkpoint(args.checkpoint)
    pack = export_pack(model, args.out, meta)
    print(f"wrote {pack.path} (state size {pack.state_size}, {len(pack.input_joints)} input joints)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
