"""Models on disk and the engines that run them (imports :mod:`rtik.geometry` only).

- :mod:`~rtik.models.modelpack`: a model pack folder (``model.json`` + ``step.onnx`` [+ ``step.pt2``]) loaded and
  checked as a :class:`ModelPack`; :data:`DEFAULT_PACK` is the shipped one (``rtik/models/default``);
- :mod:`~rtik.models.normalize`: the input normalisation shared by training and runtime (:class:`NormSpec`);
- :mod:`~rtik.models.backends`: the per-frame step behind one interface (:class:`Backend`,
  :func:`open_backend`): ONNX Runtime, TensorRT, torch; each heavy runtime is imported when its backend opens;
- :mod:`~rtik.models.convert`: the FP16 ONNX copy a TensorRT FP16 plan is built from.
"""

from rtik.models import backends, modelpack, normalize
from rtik.models.backends import BACKENDS, Backend, open_backend
from rtik.models.modelpack import DEFAULT_PACK, ModelPack
from rtik.models.normalize import NormSpec

__all__ = [
    "BACKENDS",
    "DEFAULT_PACK",
    "Backend",
    "ModelPack",
    "NormSpec",
    "backends",
    "modelpack",
    "normalize",
    "open_backend",
]
