"""Ablation variants of the model: a feed-forward IK network over a window of past frames, no denoiser, no FK
loss. Each keeps the per-frame contract: the sequence forward equals stepping with the state carried, and the
exported pack (ONNX Runtime) computes the torch step."""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from rtik.formats import bvh  # noqa: E402
from rtik.models import modelpack  # noqa: E402
from train import fit  # noqa: E402
from train import geometry as geo  # noqa: E402
from train.checkpoint import load_checkpoint  # noqa: E402
from train.data import CM, mocap_root, normalized_positions  # noqa: E402
from train.export import export_pack, pack_meta  # noqa: E402
from train.model import IKModel, ModelConfig  # noqa: E402

SAMPLE = "dataset-2_wave-left-hand_elderly_020.bvh"
VARIANTS = {
    "ff": ModelConfig(hidden=32, layers=2, den_hidden=16, arch="ff", ff_window=4),
    "gru-no-denoiser": ModelConfig(hidden=32, layers=2, den_hidden=16, denoiser=False),
    "ff-no-denoiser": ModelConfig(hidden=32, layers=1, den_hidden=16, arch="ff", ff_window=3, denoiser=False),
}


@pytest.fixture(scope="module")
def clip():
    m = bvh.read(mocap_root() / "sample" / SAMPLE)
    skel = m.skeleton.scaled(CM)
    pos, _, _ = normalized_positions(skel, m.positions() * CM)
    return skel, pos


def _model(skel, cfg):
    torch.manual_seed(0)
    model = IKModel(skel, cfg)
    with torch.no_grad():  # non-trivial heads, so the whole graph is exercised
        for name, lin in model.named_children():
            if name in ("ik_head", "den_head"):
                lin.weight.normal_(0.0, 0.05)
    return model.eval()


def _sequence(pos, B=3, T=40, seed=0, missing=0.1):
    """``(T, B, Ji, 3)`` noisy positions with joints missing at rate ``missing`` (never the root), and the mask.
    Without a denoiser a missing joint stays at the origin, where bones of zero length make the geometry
    ill-conditioned: those variants are compared on complete frames."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(pos) - T, size=B)
    P = np.stack([pos[s : s + T] for s in starts], 1)  # (T, B, Ji, 3)
    M = (rng.random(P.shape[:-1]) >= missing).astype(np.float32)
    M[..., 0] = 1.0  # the root (hips) is always observed at the runtime
    P = (P + rng.normal(0, 0.005, P.shape)).astype(np.float32) * M[..., None]
    return P, M


@pytest.mark.parametrize("name", list(VARIANTS))
def test_state_sizes(clip, name):
    cfg = VARIANTS[name]
    model = _model(clip[0], cfg)
    den = cfg.den_hidden if cfg.denoiser else 0
    ik = (cfg.ff_window - 1) * cfg.hidden if cfg.arch == "ff" else cfg.layers * cfg.hidden
    assert model.state_size == den + ik
    assert hasattr(model, "den_gru") == cfg.denoiser
    assert hasattr(model, "ik_gru") == (cfg.arch == "gru") and hasattr(model, "ik_ff") == (cfg.arch == "ff")


@pytest.mark.parametrize("name", list(VARIANTS))
def test_sequence_forward_equals_carried_steps(clip, name):
    model = _model(clip[0], VARIANTS[name])
    P, M = _sequence(clip[1], T=12, missing=0.1 if VARIANTS[name].denoiser else 0.0)
    pos, mask = torch.from_numpy(P).transpose(0, 1), torch.from_numpy(M).transpose(0, 1)
    with torch.no_grad():
        a = model(pos[:, :5], mask[:, :5])  # two windows with the state carried, as in training
        b = model(pos[:, 5:], mask[:, 5:], a["state"])
        clean_seq = torch.cat([a["pos_clean"], b["pos_clean"]], dim=1)
        L_seq = torch.cat([a["L"], b["L"]], dim=1)
        state = torch.zeros(pos.shape[0], model.state_size)
        for t in range(pos.shape[1]):
            r6, clean, state = model.step(pos[:, t], mask[:, t], state)
            torch.testing.assert_close(clean, clean_seq[:, t], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(geo.sixd_to_matrix(r6[:, 1:]), L_seq[:, t], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(state, b["state"], atol=1e-5, rtol=1e-5)
    if not VARIANTS[name].denoiser:  # the identity
        torch.testing.assert_close(b["pos_clean"], pos[:, 5:])


def test_ff_output_depends_only_on_the_window(clip):
    model = _model(clip[0], ModelConfig(hidden=32, layers=2, arch="ff", ff_window=4, denoiser=False))
    P, M = _sequence(clip[1], T=10)
    pos, mask = torch.from_numpy(P).transpose(0, 1), torch.from_numpy(M).transpose(0, 1)
    changed = pos.clone()
    changed[:, 0] += 0.05  # frame 0 leaves the window after ff_window frames (no denoiser: no other memory)
    with torch.no_grad():
        a, b = model(pos, mask)["L"], model(changed, mask)["L"]
    assert (a[:, 1:4] - b[:, 1:4]).abs().max() > 1e-4  # inside the window: seen
    torch.testing.assert_close(a[:, 4:], b[:, 4:])  # outside: forgotten


@pytest.mark.parametrize("name", list(VARIANTS))
def test_exported_pack_matches_torch_step(clip, name, tmp_path):
    skel, pos = clip
    model = _model(skel, VARIANTS[name])
    logging.disable(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = export_pack(model, tmp_path / "pack", pack_meta(model, "test"))
    logging.disable(logging.NOTSET)
    loaded = modelpack.load(p.path)
    assert loaded.state_size == model.state_size
    arch = json.loads((p.path / "model.json").read_text())["architecture"]
    assert arch["type"] == f"rtik-{VARIANTS[name].arch}-ik" and arch["denoiser"] == VARIANTS[name].denoiser
    sess = ort.InferenceSession(str(loaded.file("onnx")), providers=["CPUExecutionProvider"])
    P, M = _sequence(pos, missing=0.1 if VARIANTS[name].denoiser else 0.0)
    B = P.shape[1]
    s_ort, s_ref = np.zeros((B, model.state_size), np.float32), torch.zeros(B, model.state_size)
    worst = 0.0
    for t in range(len(P)):
        with torch.no_grad():
            ref = model.step(torch.from_numpy(P[t]), torch.from_numpy(M[t]), s_ref)
        got = sess.run(None, {"pos": P[t], "mask": M[t], "state": s_ort})
        s_ref, s_ort = ref[2], got[2]
        worst = max(worst, *(float(np.abs(r.numpy() - g).max()) for r, g in zip(ref, got, strict=True)))
    assert worst <= 1e-4


def test_fit_options(tmp_path, mocap):
    src = tmp_path / "bvh"
    src.mkdir()
    for p in sorted((mocap / "sample").glob("*.bvh"))[:1]:
        (src / p.name).symlink_to(p)
    out = tmp_path / "run"
    args = ["--data", str(src), "--out", str(out), "--steps", "3", "--batch", "2", "--window", "8", "--workers",
            "0", "--hidden", "16", "--layers", "1", "--arch", "ff", "--ff-window", "3", "--no-denoiser",
            "--no-fk-loss", "--train-split", "all", "--augment", "none", "--no-export", "--no-progress"]  # fmt: skip
    assert fit.main(args) == 0
    model, meta = load_checkpoint(out / "last.pt")
    assert model.cfg.arch == "ff" and model.cfg.ff_window == 3 and not model.cfg.denoiser
    assert model.state_size == 2 * 16
    assert "--no-fk-loss" in meta["training"]["command"]
    with pytest.raises(SystemExit):
        fit.parse_args(["--out", str(out), "--ff-window", "1"])
    with pytest.raises(SystemExit):
        fit.parse_args(["--out", str(out), "--arch", "lstm"])


def test_fk_loss_weight_zero_removes_the_term():
    from train.losses import losses

    g = torch.Generator().manual_seed(0)
    B, T, Ji = 2, 5, 3
    R = torch.linalg.qr(torch.randn(B, T, Ji, 3, 3, generator=g))[0]
    out = {"G": R, "L": R, "pos_clean": torch.randn(B, T, Ji, 3, generator=g)}
    batch = {"G": R, "L": R, "pos_gt": out["pos_clean"], "offsets": torch.randn(B, T, Ji, 3, generator=g)}
    parent = [-1, 0, 1]
    full, nofk = losses(out, batch, parent), losses(out, batch, parent, {"fk": 0.0})
    assert float(full["fk"]) > 0
    torch.testing.assert_close(full["total"] - nofk["total"], 10.0 * full["fk"])


def test_random_export_takes_the_variant_options(tmp_path, capsys):
    """`python -m train.export --random` builds any variant (runtime tests of a feed-forward or denoiser-less pack
    need no training run); a bad combination is a usage error."""
    from rtik.solve.solver import Solver
    from train.export import main

    out = tmp_path / "ff-pack"
    args = ["--random", "--out", str(out), "--hidden", "16", "--layers", "1", "--arch", "ff", "--ff-window", "3"]
    assert main([*args, "--no-denoiser"]) == 0
    pack = modelpack.load(out)
    emb = 2 * 16  # the state holds the window's previous 2 input embeddings of width 16, and no denoiser part
    assert pack.state_size == emb
    m = bvh.read(mocap_root() / "sample" / SAMPLE)
    solver = Solver(pack)
    try:
        solver.open_stream("s", layout="bvh", units="cm", joints=m.skeleton.names)
        solver.push("s", m.positions()[0], 0.0)
        assert np.isfinite(solver.tick()["s"].local_quats).all()
    finally:
        solver.close()
    with pytest.raises(SystemExit):
        main(["--random", "--out", str(tmp_path / "bad"), "--arch", "ff", "--ff-window", "1"])
    assert "ff_window" in capsys.readouterr().err
