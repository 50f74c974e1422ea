"""Build TensorRT engines (serialised plans) from a model pack's ONNX step, and find them in the cache; the
imports of tensorrt and cuda-python with their install hints. Used by the ``tensorrt`` backend (which builds a
missing plan when it opens) and by ``python -m engines.build``.

Written to NVIDIA's documented Python API (TensorRT 10/11: ``Builder``, ``create_network`` with the
``STRONGLY_TYPED`` flag where it exists, ``OnnxParser``, ``IBuilderConfig``, one ``IOptimizationProfile`` over the
dynamic batch, ``build_serialized_network``). Strongly typed networks take their precision from the graph, so
the FP16 engine is built from an FP16 copy of the ONNX (see :func:`rtik.models.convert.to_fp16`). A plan only runs on
the GPU model and TensorRT version that built it: the cache key holds both, plus the pack's content hash.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from rtik.errors import BackendError
from rtik.models.backends.base import engine_dir
from rtik.models.modelpack import ModelPack

INSTALL = (
    "TensorRT is not installed. It comes from NVIDIA's package index, not PyPI: "
    "pip install --extra-index-url https://pypi.nvidia.com tensorrt-cu12 cuda-python "
    "(see docs/gpu.md); or use --backend onnx-cuda (pip install onnxruntime-gpu) or torch-cuda"
)
#: dynamic batch range of the optimisation profile (min, opt, max streams)
BATCH_RANGE = (1, 16, 256)


def import_tensorrt():
    """``tensorrt``, or a :class:`BackendError` naming the install steps."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendError(INSTALL) from e
    return trt


def cuda_runtime():
    """cuda-python's runtime module (``cuda.bindings.runtime``, or ``cuda.cudart`` in older releases)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as e:
            raise BackendError(
                "the tensorrt backend needs cuda-python for device memory: pip install cuda-python (see docs/gpu.md)"
            ) from e
    return cudart


def gpu_name() -> str:
    """Name of CUDA device 0 (through cuda-python), for the cache key."""
    cudart = cuda_runtime()
    err, prop = cudart.cudaGetDeviceProperties(0)
    if int(err) != 0:
        raise BackendError(f"cannot query the CUDA device: {err}")
    name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
    return name.rstrip("\x00")


def plan_path(pack: ModelPack, precision: str, trt_version: str, gpu: str) -> Path:
    """``<engine cache>/<pack>/tensorrt-<precision>-trt<version>-<gpu>.plan``."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", gpu).strip("_")
    return engine_dir(pack) / f"tensorrt-{precision}-trt{trt_version}-{slug}.plan"


def build_engine(pack: ModelPack, precision: str = "fp32", batch=BATCH_RANGE, workspace_mb: int = 512) -> Path:
    """Build (or find in the cache) the pack's TensorRT plan; returns its path and writes a JSON report beside it."""
    if precision not in ("fp32", "fp16"):
        raise BackendError(f"unknown TensorRT precision {precision!r}; valid: fp32, fp16")
    trt = import_tensorrt()
    out = plan_path(pack, precision, trt.__version__, gpu_name())
    if out.is_file():
        return out
    onnx_file = pack.file("onnx")
    if precision == "fp16":
        from rtik.models.convert import to_fp16

        onnx_file = to_fp16(onnx_file, engine_dir(pack) / "step.fp16.onnx")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if flag is None else 1 << int(flag))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_file).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_file}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    profile = builder.create_optimization_profile()
    shapes = pack.step_shapes()
    lo, opt, hi = batch
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        rest = tuple(int(d) for d in shapes[name][1:])
        profile.set_shape(name, (lo, *rest), (opt, *rest), (hi, *rest))
    config.add_optimization_profile(profile)
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_file} (see its log above)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(bytes(plan))
    tmp.replace(out)
    report = {
        "pack": pack.name, "digest": pack.digest(), "precision": precision, "tensorrt": trt.__version__,
        "gpu": gpu_name(), "batch_range": list(batch), "build_s": round(time.perf_counter() - t0, 1),
        "onnx": str(onnx_file), "plan_bytes": out.stat().st_size,
    }  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    return out
