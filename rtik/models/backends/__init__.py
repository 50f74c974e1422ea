"""Inference backends behind one interface (see :mod:`rtik.models.backends.base`): ``onnx`` (default, CPU),
``onnx-int8``, ``onnx-cuda``, ``tensorrt``, ``tensorrt-fp16``, ``torch``, ``torch-cuda``."""

from rtik.models.backends.base import BACKENDS, Backend, open_backend

__all__ = ["BACKENDS", "Backend", "open_backend"]
