"""The one small interface every inference backend implements, and :func:`open_backend`.

A backend runs the model pack's per-frame step (docs/architecture.md) on a batch of streams:
``step(pos (B, Ji, 3), mask (B, Ji), state (B, S)) -> (rot6d (B, J, 6), pos_clean (B, Ji, 3), state_out (B, S))``,
numpy float32 in and out. Backends preallocate per batch size, so the arrays they return are **reused by the
next call**: copy what must outlive it. Heavy imports (torch, tensorrt, CUDA) happen inside the backend that
needs them, never at module level.
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from rtik.errors import BackendError
from rtik.models.modelpack import ModelPack

#: backend name -> (module under rtik.models.backends, options passed to its class)
BACKENDS: dict[str, tuple[str, dict]] = {
    "onnx": ("onnx", {}),
    "onnx-int8": ("onnx", {"variant": "int8"}),
    "onnx-cuda": ("onnx", {"providers": ("CUDAExecutionProvider",)}),
    "tensorrt": ("tensorrt", {"precision": "fp32"}),
    "tensorrt-fp16": ("tensorrt", {"precision": "fp16"}),
    "torch": ("torch", {"device": "cpu"}),
    "torch-cuda": ("torch", {"device": "cuda"}),
}
#: batch sizes are rounded up to these buckets (one preallocated binding / CUDA graph each); larger batches
#: are rounded up to a multiple of the last bucket
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def bucket(n: int) -> int:
    """The preallocation bucket for a batch of ``n`` streams."""
    for b in BATCH_BUCKETS:
        if n <= b:
            return b
    last = BATCH_BUCKETS[-1]
    return -(-n // last) * last


def pin_threads() -> None:
    """Pin BLAS/OpenMP thread pools to one thread (set before those libraries start their pools). Two pools
    fighting over few cores gave 12-32 ms latency spikes; a per-frame step gains nothing from threads."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:  # numpy's BLAS may already be running: threadpoolctl limits it where installed
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass


def engine_cache_dir() -> Path:
    """Where compiled engines are cached: ``$RTIK_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/rtik/engines``
    (``~/.cache/rtik/engines``)."""
    env = os.environ.get("RTIK_ENGINE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rtik" / "engines"


def engine_dir(pack: ModelPack) -> Path:
    """Cache folder of one pack's engines (keyed by the pack's content hash)."""
    return engine_cache_dir() / f"{pack.name}-{pack.digest()}"


class Backend(ABC):
    """Runs a pack's step. Subclasses set :attr:`name` and implement :meth:`step`."""

    name: str = ""

    def __init__(self, pack: ModelPack):
        self.pack = pack
        self.Ji = len(pack.input_rows)  # step rows: input joints, then markers
        self.J = len(pack.skeleton)
        self.S = pack.state_size

    @abstractmethod
    def step(self, pos: np.ndarray, mask: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One frame for ``B`` streams; see the module docstring for shapes. Outputs are reused by the next call."""

    def check_inputs(self, pos, mask, state) -> int:
        """Validate shapes and return ``B`` (used by backends on their slow path and by tests)."""
        B = pos.shape[0] if getattr(pos, "ndim", 0) == 3 else -1
        want = {"pos": (B, self.Ji, 3), "mask": (B, self.Ji), "state": (B, self.S)}
        for n, a in (("pos", pos), ("mask", mask), ("state", state)):
            if B < 1 or getattr(a, "shape", None) != want[n]:
                raise BackendError(f"{self.name}: input {n} has shape {getattr(a, 'shape', None)}, expected {want[n]}")
        return B

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing to release
        """Release sessions and device memory (the backend is unusable afterwards)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def describe(self) -> str:
        """One line: the backend and where it runs (for logs and ``rtik bench``)."""
        return self.name


def available() -> tuple[str, ...]:
    """Every backend name (whether its libraries are installed or not)."""
    return tuple(BACKENDS)


def open_backend(pack: ModelPack, name: str = "onnx", **options) -> Backend:
    """Open backend ``name`` (see :data:`BACKENDS`) for ``pack``; ``options`` go to the backend's constructor
    (e.g. ``threads=1`` for onnx, ``device="cuda:1"`` for torch). Unknown names list the valid ones; a backend
    whose libraries are missing raises :class:`BackendError` naming the install steps."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}")
    module, defaults = BACKENDS[name]
    mod = importlib.import_module(f"rtik.models.backends.{module}")
    return mod.BACKEND_CLASS(pack, name=name, **{**defaults, **options})
