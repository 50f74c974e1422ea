"""A dynamically quantised INT8 copy of a model pack's ONNX step, for ONNX Runtime on CPU (build time only; the
FP16 copy for TensorRT is :func:`rtik.models.convert.to_fp16`)."""

from __future__ import annotations

from pathlib import Path

from rtik.errors import BackendError
from rtik.models.convert import import_onnx


def to_int8(src: Path, dst: Path) -> Path:
    """Dynamic INT8 quantisation of the weights (activations quantised per call) with ONNX Runtime's tools."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:
        raise BackendError("INT8 quantisation needs onnxruntime (with its quantization tools) and onnx") from e
    import_onnx()
    dst.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return dst
