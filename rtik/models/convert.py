"""An FP16 copy of a model pack's ONNX step, for strongly typed TensorRT networks (which run in the precision
the graph states). Needs the ``onnx`` package, imported when called."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtik.errors import BackendError


def import_onnx():
    """``(onnx, onnx.numpy_helper)``, or a :class:`BackendError` naming the install step."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:
        raise BackendError("building engines needs the onnx package: pip install onnx") from e
    return onnx, numpy_helper


def to_fp16(src: Path, dst: Path) -> Path:
    """Write an FP16 copy of the ONNX graph ``src`` to ``dst``: float32 weights, constants and casts become
    float16, while the graph's inputs and outputs stay float32 (a Cast at each boundary), so callers keep
    feeding float32. TensorRT 10+ strongly typed networks run in the precision the graph states."""
    onnx, nh = import_onnx()
    F32, F16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    m = onnx.load(str(src))
    g = m.graph
    for i, init in enumerate(g.initializer):
        if init.data_type == F32:
            g.initializer[i].CopyFrom(nh.from_array(nh.to_array(init).astype(np.float16), init.name))
    for node in g.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == F32:
                a.t.CopyFrom(nh.from_array(nh.to_array(a.t).astype(np.float16), a.t.name))
            if node.op_type == "Cast" and a.name == "to" and a.i == F32:
                a.i = F16
    inputs = [v.name for v in g.input if v.type.tensor_type.elem_type == F32]
    outputs = [v.name for v in g.output if v.type.tensor_type.elem_type == F32]
    rename = {n: n + "__fp16" for n in inputs + outputs}
    for node in g.node:
        node.input[:] = [rename.get(x, x) for x in node.input]
        node.output[:] = [rename.get(x, x) for x in node.output]
    head = [onnx.helper.make_node("Cast", [n], [rename[n]], to=F16, name=f"cast_in_{n}") for n in inputs]
    tail = [onnx.helper.make_node("Cast", [rename[n]], [n], to=F32, name=f"cast_out_{n}") for n in outputs]
    nodes = head + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    for vi in g.value_info:
        if vi.type.tensor_type.elem_type == F32:
            vi.type.tensor_type.elem_type = F16
    onnx.checker.check_model(m)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(dst))
    return dst
