"""Inference backends behind one interface (see :mod:`rtik.backends.base`): ``onnx`` (default, CPU),
``onnx-int8``, ``onnx-cuda``, ``tensorrt``, ``tensorrt-fp16``, ``torch``, ``torch-cuda``."""

from rtik.backends.base import BACKENDS, Backend, open_backend

__all__ = ["BACKENDS", "Backend", "open_backend"]
