"""Inference backends behind one interface (see :mod:`rtik.models.backends.base`): ``onnx`` (default, CPU),
``onnx-int8``, ``onnx-cuda``, ``tensorrt``, ``tensorrt-fp16``, ``torch``, ``torch-cuda``. A backend module is imported
when its backend opens (:func:`open_backend`); :mod:`~rtik.models.backends.trt_plan` builds and caches TensorRT
plans."""

from rtik.models.backends.base import BACKENDS, Backend, open_backend

__all__ = ["BACKENDS", "Backend", "open_backend"]
