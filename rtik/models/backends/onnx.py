"""ONNX Runtime backend (the default): CPU tuned for per-frame latency, or onnxruntime-gpu's CUDA provider.

Latency choices, measured on a 2-core machine (see DESIGN.md): one intra-op and one inter-op thread, sequential
execution, no spinning (``session.intra_op.allow_spinning = 0``), BLAS/OpenMP pinned to one thread, and
``run_with_iobinding`` over inputs and outputs preallocated per batch size (2.5 µs of call overhead instead of
7 µs for ``run``). No ``RunOptions`` is passed: in the 1.32 Python wrapper it costs 45 µs per call.

Variants: ``variant="int8"`` runs the dynamically quantised graph built by ``python -m engines.build PACK
--target onnx-int8``, and only if its drift report (accuracy over a long sequence vs FP32) exists beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rtik.errors import BackendError
from rtik.models.backends.base import Backend, engine_dir, pin_threads
from rtik.models.modelpack import ModelPack, check_onnx

INT8_FILE = "step.int8.onnx"
INT8_REPORT = "step.int8.drift.json"


class _Binding:
    """Preallocated inputs/outputs of one batch size, bound to the session once."""

    def __init__(self, sess, ort, B: int, Ji: int, J: int, S: int, device: str):
        self.pos = np.zeros((B, Ji, 3), np.float32)
        self.mask = np.zeros((B, Ji), np.float32)
        self.state = np.zeros((B, S), np.float32)
        self.rot6d = np.zeros((B, J, 6), np.float32)
        self.pos_clean = np.zeros((B, Ji, 3), np.float32)
        self.state_out = np.zeros((B, S), np.float32)
        self.io = sess.io_binding()
        self.gpu = device == "cuda"
        self._ov = {}
        for n in ("pos", "mask", "state"):
            a = getattr(self, n)
            if self.gpu:  # device copies, refreshed by update_inplace before each run
                self._ov[n] = ort.OrtValue.ortvalue_from_numpy(a, "cuda", 0)
            else:  # shares the numpy buffer: writing the array writes the input
                self._ov[n] = ort.OrtValue.ortvalue_from_numpy(a)
            self.io.bind_ortvalue_input(n, self._ov[n])
        for n in ("rot6d", "pos_clean", "state_out"):
            a = getattr(self, n)
            self._ov[n] = (
                ort.OrtValue.ortvalue_from_numpy(a, "cuda", 0) if self.gpu else ort.OrtValue.ortvalue_from_numpy(a)
            )
            self.io.bind_ortvalue_output(n, self._ov[n])

    def run(self, sess):
        if self.gpu:
            for n in ("pos", "mask", "state"):
                self._ov[n].update_inplace(getattr(self, n))
        sess.run_with_iobinding(self.io)
        if self.gpu:
            for n in ("rot6d", "pos_clean", "state_out"):
                getattr(self, n)[...] = self._ov[n].numpy()


class OnnxBackend(Backend):
    """ONNX Runtime session over the pack's step graph.

    Options: ``threads`` (intra-op threads, default 1), ``providers`` (default CPU; ``("CUDAExecutionProvider",)``
    for onnxruntime-gpu), ``variant`` (``"fp32"`` or ``"int8"``), ``path`` (an explicit ONNX file).
    """

    def __init__(self, pack: ModelPack, name="onnx", threads=1, providers=None, variant="fp32", path=None):
        super().__init__(pack)
        self.name = name
        pin_threads()
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendError("onnxruntime is not installed: pip install onnxruntime (or onnxruntime-gpu)") from e
        self._ort = ort
        model = Path(path) if path else self._model_file(variant)
        check_onnx(model, pack.step_shapes())
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        opts.log_severity_level = 3
        providers = tuple(providers or ("CPUExecutionProvider",))
        have = ort.get_available_providers()
        missing = [p for p in providers if p not in have]
        if missing:
            hint = (
                " (pip install onnxruntime-gpu, with a matching CUDA and cuDNN; see docs/gpu.md)"
                if any("CUDA" in p or "Tensorrt" in p for p in missing)
                else ""
            )
            raise BackendError(
                f"{name}: ONNX Runtime provider {', '.join(missing)} is not available{hint}; "
                f"available: {', '.join(have)}"
            )
        try:
            self.sess = ort.InferenceSession(str(model), sess_options=opts, providers=list(providers))
        except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            raise BackendError(f"{name}: ONNX Runtime cannot open {model}: {e}") from e
        self.model_file = model
        self.device = "cuda" if providers[0] == "CUDAExecutionProvider" else "cpu"
        self._bindings: dict[int, _Binding] = {}

    def _model_file(self, variant: str):
        if variant == "fp32":
            return self.pack.file("onnx")
        if variant != "int8":
            raise BackendError(f"unknown ONNX variant {variant!r}; valid variants: fp32, int8")
        d = engine_dir(self.pack)
        model, report = d / INT8_FILE, d / INT8_REPORT
        if not model.is_file():
            raise BackendError(
                f"no INT8 engine for model {self.pack.name!r} in {d}; "
                f"build it with: python -m engines.build {self.pack.path} --target onnx-int8"
            )
        if not report.is_file():
            raise BackendError(
                f"{model} has no drift report ({INT8_REPORT}): its accuracy over long sequences was never measured; "
                f"rebuild with: python -m engines.build {self.pack.path} --target onnx-int8"
            )
        try:
            self.drift = json.loads(report.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise BackendError(f"{report}: unreadable drift report: {e}") from e
        if not self.drift.get("accepted", False):
            raise BackendError(
                f"{model}: its drift report refuses it (mean rotation deviation {self.drift.get('rot_deg_mean')} deg "
                f"over {self.drift.get('frames')} frames, limit {self.drift.get('max_drift_deg')} deg)"
            )
        return model

    def binding(self, B: int) -> _Binding:
        """The preallocated binding for batch ``B`` (created on first use)."""
        b = self._bindings.get(B)
        if b is None:
            b = self._bindings[B] = _Binding(self.sess, self._ort, B, self.Ji, self.J, self.S, self.device)
        return b

    def step(self, pos, mask, state):
        B = pos.shape[0]
        b = self._bindings.get(B) or self.binding(self.check_inputs(pos, mask, state))
        try:
            b.pos[...] = pos
            b.mask[...] = mask
            b.state[...] = state
        except ValueError as e:
            self.check_inputs(pos, mask, state)
            raise BackendError(f"{self.name}: {e}") from e
        b.run(self.sess)
        return b.rot6d, b.pos_clean, b.state_out

    def describe(self) -> str:
        return (
            f"{self.name} (onnxruntime {self._ort.__version__}, {self.sess.get_providers()[0]}, {self.model_file.name})"
        )

    def close(self) -> None:
        self._bindings.clear()
        self.sess = None


BACKEND_CLASS = OnnxBackend
