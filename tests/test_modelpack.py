"""Model pack loading and validation: metadata, the ONNX graph's opset and step signature."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from rtik.errors import ModelError
from rtik.models import modelpack


@pytest.fixture
def copy(pack, tmp_path):
    d = tmp_path / "pack"
    shutil.copytree(pack.path, d)
    return d


def _onnx(opset: int, pos_shape=("B", 21, 3), elem=1) -> bytes:
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    def vi(name, shape):
        return helper.make_tensor_value_info(name, elem, list(shape))

    ins = [vi("pos", pos_shape), vi("mask", ("B", 21)), vi("state", ("B", 64))]
    outs = [vi("rot6d", ("B", 22, 6)), vi("pos_clean", ("B", 21, 3)), vi("state_out", ("B", 64))]
    nodes = [
        helper.make_node("Identity", ["state"], ["state_out"]),
        helper.make_node("Identity", ["pos"], ["pos_clean"]),
    ]
    nodes.append(helper.make_node("Identity", ["mask"], ["rot6d"]))
    g = helper.make_graph(nodes, "step", ins, outs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    return m.SerializeToString() if onnx else b""


def test_load_reads_metadata_and_signature(pack):
    assert pack.state_size == 64
    assert len(pack.input_joints) == 21 and len(pack.skeleton) == 22
    assert pack.step_shapes()["rot6d"] == ("B", 22, 6)
    sig = modelpack.onnx_signature(pack.file("onnx"))
    assert sig["opset"] == 20
    assert sig["inputs"]["pos"] == (1, ("B", 21, 3))
    assert sig["outputs"]["state_out"] == (1, ("B", 64))


def test_signature_matches_the_onnx_package(pack):
    onnx = pytest.importorskip("onnx")
    m = onnx.load(str(pack.file("onnx")))
    for vi in list(m.graph.input) + list(m.graph.output):
        dims = tuple(d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim)
        sig = modelpack.onnx_signature(pack.file("onnx"))
        have = {**sig["inputs"], **sig["outputs"]}[vi.name]
        assert have == (vi.type.tensor_type.elem_type, dims)


def test_digest_is_stable_and_content_based(pack, copy):
    assert modelpack.load(copy).digest() == pack.digest()
    meta = json.loads((copy / "model.json").read_text())
    meta["name"] = "other"
    (copy / "model.json").write_text(json.dumps(meta))
    assert modelpack.load(copy).digest() != pack.digest()


def test_leaf_prior_is_read_and_checked(pack, copy):
    assert pack.leaf_prior == 0.0  # absent: the network's leaves as they are
    meta = json.loads((copy / "model.json").read_text())
    meta["leaf_prior"] = 0.75
    (copy / "model.json").write_text(json.dumps(meta))
    assert modelpack.load(copy).leaf_prior == 0.75
    meta["leaf_prior"] = 1.5
    (copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="leaf_prior must be within 0..1, got 1.5"):
        modelpack.load(copy)


def test_hinges_are_read_and_checked(pack, copy):
    assert pack.hinges == {}  # absent: no hinge limbs
    meta = json.loads((copy / "model.json").read_text())
    meta["hinges"] = {"LowerLeg_L": [2.0, 0.0, 0.0], "LowerArm_R": [0, 3, 4]}
    (copy / "model.json").write_text(json.dumps(meta))
    h = modelpack.load(copy).hinges
    np.testing.assert_allclose(h["LowerLeg_L"], [1, 0, 0])
    np.testing.assert_allclose(h["LowerArm_R"], [0, 0.6, 0.8])  # made unit
    for bad, msg in (
        ({"Knee": [1, 0, 0]}, "joint 'Knee' does not exist"),
        ({"LowerLeg_L": [0, 0, 0]}, "three finite numbers"),
        ({"LowerLeg_L": [1, 0]}, "three finite numbers"),
        ({"joint_Root": [1, 0, 0]}, "the root has no parent"),
        ([1, 0, 0], "must be a mapping"),
    ):
        meta["hinges"] = bad
        (copy / "model.json").write_text(json.dumps(meta))
        with pytest.raises(ModelError, match=msg):
            modelpack.load(copy)


def test_missing_onnx_file_is_named(copy):
    (copy / "step.onnx").unlink()
    with pytest.raises(ModelError, match="onnx file 'step.onnx' is missing"):
        modelpack.load(copy)


def test_missing_pack(tmp_path):
    with pytest.raises(ModelError, match="model.json not found"):
        modelpack.load(tmp_path)


def test_wrong_opset_is_refused(copy):
    (copy / "step.onnx").write_bytes(_onnx(9))
    with pytest.raises(ModelError, match=r"opset 9 is not supported; export with an opset in 13\.\.25"):
        modelpack.load(copy)


def test_mismatched_input_shape_is_refused(copy):
    (copy / "step.onnx").write_bytes(_onnx(17, pos_shape=("B", 20, 3)))
    with pytest.raises(ModelError, match=r"input 'pos' has shape \['B', 20, 3\], expected \['B', 21, 3\]"):
        modelpack.load(copy)


def test_fixed_batch_is_refused(copy):
    (copy / "step.onnx").write_bytes(_onnx(17, pos_shape=(1, 21, 3)))
    with pytest.raises(ModelError, match="input 'pos' has shape"):
        modelpack.load(copy)


def test_integer_inputs_are_refused(copy):
    (copy / "step.onnx").write_bytes(_onnx(17, elem=7))
    with pytest.raises(ModelError, match="element type 7"):
        modelpack.load(copy)


def test_garbage_onnx_is_refused(copy):
    (copy / "step.onnx").write_bytes(b"\xff\xff\xff\xff not a protobuf")
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        modelpack.load(copy)


def test_missing_output_lists_what_exists(copy):
    onnx = pytest.importorskip("onnx")
    m = onnx.load_from_string(_onnx(17))
    m.graph.output[0].name = "rotation"
    m.graph.node[2].output[0] = "rotation"
    (copy / "step.onnx").write_bytes(m.SerializeToString())
    with pytest.raises(ModelError, match="no output 'rot6d'; its outputs: rotation, pos_clean, state_out"):
        modelpack.load(copy)


def test_save_round_trip(pack, tmp_path):
    meta = {k: v for k, v in pack.meta.items() if k not in ("format", "format_version", "files")}
    p = modelpack.save(tmp_path / "p", meta, pack.file("onnx").read_bytes())
    assert p.input_joints == pack.input_joints
    np.testing.assert_allclose(p.prior_local, pack.prior_local)
    assert p.files == {"onnx": "step.onnx"}


def test_shipped_packs_load_by_name(tmp_path, monkeypatch):
    """``default`` and ``landmarks`` name the packs inside the package (what `--model landmarks` and
    `[model] path = "landmarks"` reach); the landmarks pack reads the leaf markers after the same 21 joints and
    solves a mediapipe33 frame; a folder of that name in the working directory wins over the shipped one."""
    from rtik.formats import markers
    from rtik.formats.layouts import MEDIAPIPE33
    from rtik.solve.solver import Solver

    default, land = modelpack.load("default"), modelpack.load("landmarks")
    assert default.path == modelpack.load(None).path and not default.markers
    assert land.name == "rtik-landmarks" and land.markers == markers.NAMES
    assert land.input_joints == default.input_joints
    rng = np.random.default_rng(0)
    s = Solver(land)
    s.open_stream("cam", layout="mediapipe33")
    frame = rng.normal(0, 0.3, (len(MEDIAPIPE33), 3)) + [0, 1, 0]
    s.push("cam", frame, 0.0)
    r = s.tick()["cam"]
    assert np.isfinite(r.local_quats).all() and np.isfinite(r.positions).all()
    s.close()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "landmarks").mkdir()
    with pytest.raises(ModelError, match="model.json not found"):
        modelpack.load("landmarks")
