"""TensorRT backend: the pack's step as a TensorRT engine on an NVIDIA GPU.

- The engine is built from the pack's ONNX by :mod:`rtik.models.backends.trt_plan` (an FP16 ONNX copy for
  ``precision="fp16"``, since TensorRT 10/11 networks are strongly typed) and cached per GPU name, TensorRT
  version and pack hash.
- The batch is dynamic through one optimisation profile; batches are padded up to buckets
  (:data:`rtik.models.backends.base.BATCH_BUCKETS`), each with its own execution context, fixed tensor addresses and
  captured CUDA graphs, so a frame costs one host->device copy, one graph launch and one device->host copy.
- The recurrent state stays on the device in ping-pong buffers: when the caller passes back the ``state_out``
  array this backend returned for the same batch, nothing is uploaded and the buffers swap roles.
- Work runs on a non-default CUDA stream with ``execute_async_v3``; host buffers are pinned.

tensorrt and cuda-python are imported when the backend opens; without them a :class:`BackendError` names the
install steps. This module follows NVIDIA's documented API; it has not been run here (see docs/gpu.md).
"""

from __future__ import annotations

import ctypes

import numpy as np

from rtik.errors import BackendError
from rtik.models.backends.base import Backend, bucket
from rtik.models.backends.trt_plan import build_engine, cuda_runtime, import_tensorrt
from rtik.models.modelpack import ModelPack

_INPUTS = ("pos", "mask", "state")
_OUTPUTS = ("rot6d", "pos_clean", "state_out")


def _check(result, what: str):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendError(f"CUDA error in {what}: {err}")
    return rest[0] if len(rest) == 1 else rest


class _Bucket:
    """Device buffers, pinned host buffers, one execution context and two CUDA graphs (one per ping-pong parity)
    for a padded batch size."""

    def __init__(self, be: TensorRTBackend, Bp: int):
        cu, shapes = be.cudart, be.pack.step_shapes()
        self.Bp, self.parity = Bp, 0
        self.shape = {n: (Bp, *(int(d) for d in shapes[n][1:])) for n in _INPUTS + _OUTPUTS}
        nbytes = {n: int(np.prod(s)) * 4 for n, s in self.shape.items()}
        self.dev = {n: _check(cu.cudaMalloc(nbytes[n]), "cudaMalloc") for n in ("pos", "mask", "rot6d", "pos_clean")}
        self.state = [_check(cu.cudaMalloc(nbytes["state"]), "cudaMalloc") for _ in range(2)]  # ping-pong
        self.nbytes = nbytes
        self.host = {}
        for n in _INPUTS + _OUTPUTS:
            ptr = _check(cu.cudaMallocHost(nbytes[n]), "cudaMallocHost")
            buf = (ctypes.c_float * (nbytes[n] // 4)).from_address(int(ptr))
            self.host[n] = (ptr, np.ctypeslib.as_array(buf).reshape(self.shape[n]))
        self.ctx = be.engine.create_execution_context()
        for n in _INPUTS:
            if not self.ctx.set_input_shape(n, self.shape[n]):
                raise BackendError(f"TensorRT rejected input shape {self.shape[n]} for {n!r}")
        for n in ("pos", "mask", "rot6d", "pos_clean"):
            self.ctx.set_tensor_address(n, int(self.dev[n]))
        self.graphs = [self._capture(be, p) for p in (0, 1)]

    def _capture(self, be: TensorRTBackend, parity: int):
        cu, s = be.cudart, be.stream
        self.ctx.set_tensor_address("state", int(self.state[parity]))
        self.ctx.set_tensor_address("state_out", int(self.state[1 - parity]))
        # one plain launch first: TensorRT finishes shape-dependent setup outside capture
        if not self.ctx.execute_async_v3(int(s)):
            raise BackendError("TensorRT execute_async_v3 failed")
        _check(cu.cudaStreamSynchronize(s), "cudaStreamSynchronize")
        _check(cu.cudaStreamBeginCapture(s, cu.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal), "capture")
        if not self.ctx.execute_async_v3(int(s)):
            raise BackendError("TensorRT execute_async_v3 failed during CUDA graph capture")
        graph = _check(cu.cudaStreamEndCapture(s), "cudaStreamEndCapture")
        return _check(cu.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")

    def free(self, cu):
        for p in list(self.dev.values()) + self.state:
            cu.cudaFree(p)
        for ptr, _ in self.host.values():
            cu.cudaFreeHost(ptr)


class TensorRTBackend(Backend):
    """Options: ``precision`` (``"fp32"`` or ``"fp16"``), ``plan`` (an explicit engine file)."""

    def __init__(self, pack: ModelPack, name="tensorrt", precision="fp32", plan=None):
        super().__init__(pack)
        self.name = name
        trt = import_tensorrt()
        self.trt, self.cudart = trt, cuda_runtime()
        self.plan = plan or build_engine(pack, precision)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        with open(self.plan, "rb") as f:
            self.engine = self.runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise BackendError(f"TensorRT cannot load the engine {self.plan} (built by another TensorRT or GPU?)")
        names = {self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)}
        if names != set(_INPUTS + _OUTPUTS):
            raise BackendError(f"engine {self.plan} has tensors {sorted(names)}, expected {_INPUTS + _OUTPUTS}")
        cu = self.cudart
        self.stream = _check(cu.cudaStreamCreateWithFlags(cu.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")
        self._buckets: dict[int, _Bucket] = {}
        self._last = None  # (B, the state_out array returned last)

    def step(self, pos, mask, state):
        cu = self.cudart
        B = self.check_inputs(pos, mask, state)
        Bp = bucket(B)
        b = self._buckets.get(Bp)
        if b is None:
            b = self._buckets[Bp] = _Bucket(self, Bp)
        h2d, d2h = cu.cudaMemcpyKind.cudaMemcpyHostToDevice, cu.cudaMemcpyKind.cudaMemcpyDeviceToHost
        carry = self._last is not None and self._last[0] == B and state is self._last[1]
        up = ["pos", "mask"] + ([] if carry else ["state"])
        for n, a in (("pos", pos), ("mask", mask), ("state", state)):
            if n in up:
                b.host[n][1][:B] = a
        for n in up:
            dst = b.state[b.parity] if n == "state" else b.dev[n]
            rows = B * b.nbytes[n] // b.Bp
            _check(cu.cudaMemcpyAsync(dst, b.host[n][0], rows, h2d, self.stream), "cudaMemcpyAsync")
        _check(cu.cudaGraphLaunch(b.graphs[b.parity], self.stream), "cudaGraphLaunch")
        b.parity = 1 - b.parity  # state_out of this frame is the next frame's state
        for n in _OUTPUTS:
            src = b.state[b.parity] if n == "state_out" else b.dev[n]
            rows = B * b.nbytes[n] // b.Bp
            _check(cu.cudaMemcpyAsync(b.host[n][0], src, rows, d2h, self.stream), "cudaMemcpyAsync")
        _check(cu.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        out = tuple(b.host[n][1][:B] for n in _OUTPUTS)
        self._last = (B, out[2])
        return out

    def describe(self) -> str:
        return f"{self.name} (TensorRT {self.trt.__version__}, {self.plan})"

    def close(self) -> None:
        for b in self._buckets.values():
            b.free(self.cudart)
        self._buckets.clear()


BACKEND_CLASS = TensorRTBackend
