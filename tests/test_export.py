"""Model pack export: the ONNX graph and the torch.export program compute the model's step."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from rtik.formats import bvh  # noqa: E402
from rtik.models import modelpack  # noqa: E402
from train.data import CM, mocap_root, normalized_positions  # noqa: E402
from train.export import export_pack, pack_meta  # noqa: E402
from train.model import IKModel, ModelConfig  # noqa: E402

SAMPLE = "dataset-2_wave-left-hand_elderly_020.bvh"


@pytest.fixture(scope="module")
def clip():
    m = bvh.read(mocap_root() / "sample" / SAMPLE)
    skel = m.skeleton.scaled(CM)
    pos, _, _ = normalized_positions(skel, m.positions() * CM)
    return skel, pos


@pytest.fixture(scope="module")
def pack(clip, tmp_path_factory):
    skel, _ = clip
    torch.manual_seed(0)
    model = IKModel(skel, ModelConfig(hidden=64, layers=2, den_hidden=32)).eval()
    with torch.no_grad():  # non-trivial heads, so the test exercises the whole graph
        for lin in (model.ik_head, model.den_head):
            lin.weight.normal_(0.0, 0.05)
    out = tmp_path_factory.mktemp("pack")
    logging.disable(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = export_pack(model, out, pack_meta(model, "test"))
    logging.disable(logging.NOTSET)
    return model, p


def _sequence(pos, B=3, T=100, seed=0):
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(pos) - T, size=B)
    P = np.stack([pos[s : s + T] for s in starts], 1)  # (T, B, Ji, 3)
    M = (rng.random(P.shape[:-1]) > 0.1).astype(np.float32)
    P = (P + rng.normal(0, 0.005, P.shape)).astype(np.float32) * M[..., None]
    return P, M


def test_pack_loads_with_contract(pack):
    model, p = pack
    loaded = modelpack.load(p.path)
    assert loaded.state_size == model.state_size
    assert loaded.input_joints == model.input_joints
    assert set(loaded.files) == {"onnx", "torch"}
    proto = onnx.load(str(loaded.file("onnx")))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 17
    assert not {n.op_type for n in proto.graph.node} & {"GRU", "Loop", "Scan"}
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert dims["pos"][1:] == [len(model.input_joints), 3] and isinstance(dims["pos"][0], str)
    assert dims["state"][1:] == [model.state_size]


def test_onnx_and_torch_program_match_model_over_100_frames(pack, clip):
    model, p = pack
    _, pos = clip
    sess = ort.InferenceSession(str(p.file("onnx")), providers=["CPUExecutionProvider"])
    prog = torch.export.load(str(p.file("torch"))).module()
    P, M = _sequence(pos)
    B = P.shape[1]
    s_ort = np.zeros((B, model.state_size), np.float32)
    s_ref = torch.zeros(B, model.state_size)
    s_pt2 = torch.zeros(B, model.state_size)
    worst = {"ort": 0.0, "pt2": 0.0}
    for t in range(len(P)):
        pt, mt = torch.from_numpy(P[t]), torch.from_numpy(M[t])
        with torch.no_grad():
            ref = model.step(pt, mt, s_ref)
            got_pt2 = prog(pt, mt, s_pt2)
        got_ort = sess.run(None, {"pos": P[t], "mask": M[t], "state": s_ort})
        s_ref, s_pt2, s_ort = ref[2], got_pt2[2], got_ort[2]
        for r, a, b in zip(ref, got_ort, got_pt2, strict=True):
            worst["ort"] = max(worst["ort"], float(np.abs(r.numpy() - a).max()))
            worst["pt2"] = max(worst["pt2"], float((r - b).abs().max()))
    assert worst["ort"] <= 1e-4, worst
    assert worst["pt2"] <= 1e-4, worst


def test_onnx_dynamic_batch(pack, clip):
    model, p = pack
    _, pos = clip
    sess = ort.InferenceSession(str(p.file("onnx")), providers=["CPUExecutionProvider"])
    for B in (1, 7):
        x = pos[:B].astype(np.float32)
        feeds = {"pos": x, "mask": np.ones(x.shape[:2], np.float32), "state": np.zeros((B, p.state_size), np.float32)}
        out = sess.run(None, feeds)
        assert [o.shape for o in out] == [(B, len(model.skeleton), 6), x.shape, (B, p.state_size)]


def test_mocap_path_resolves():
    assert (mocap_root() / "sample").is_dir()
    assert Path(__file__).resolve().parents[1].parent.joinpath("shared", "mocap").is_dir()
