"""Backends: every accelerated path equals the torch reference; unavailable backends fail clearly."""

from __future__ import annotations

import numpy as np
import pytest

from rtik.errors import BackendError
from rtik.models.backends.base import BACKENDS, bucket, open_backend


def _inputs(B: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    mask = (rng.random((B, 21)) > 0.2).astype(np.float32)
    pos = (rng.normal(size=(B, 21, 3)) * 0.3).astype(np.float32) * mask[..., None]
    state = (rng.normal(size=(B, 64)) * 0.3).astype(np.float32)
    return pos, mask, state


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def reference(pack):
    pytest.importorskip("torch")
    with open_backend(pack, "torch") as be:
        yield be


@pytest.mark.parametrize("B", [1, 3, 16, 17])
def test_onnx_matches_torch(pack, reference, B):
    with open_backend(pack, "onnx") as be:
        ins = _inputs(B, seed=B)
        for got, want in zip(be.step(*ins), reference.step(*ins), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_onnx_carries_state_like_torch_over_a_sequence(pack, reference):
    be = open_backend(pack, "onnx")
    sa = sb = np.zeros((2, 64), np.float32)
    for i in range(50):
        pos, mask, _ = _inputs(2, seed=100 + i)
        _, _, sa = be.step(pos, mask, sa)
        _, _, sb = reference.step(pos, mask, sb)
        sa, sb = sa.copy(), sb.copy()
    np.testing.assert_allclose(sa, sb, atol=1e-4)


def test_onnx_outputs_are_preallocated_and_reused(pack):
    be = open_backend(pack, "onnx")
    a = be.step(*_inputs(4, 1))
    b = be.step(*_inputs(4, 2))
    assert all(x is y for x, y in zip(a, b, strict=True))
    assert all(o.dtype == np.float32 for o in a)
    assert a[0].shape == (4, 22, 6) and a[1].shape == (4, 21, 3) and a[2].shape == (4, 64)


def test_wrong_input_shape_is_named(pack):
    be = open_backend(pack, "onnx")
    pos, mask, state = _inputs(2)
    with pytest.raises(BackendError, match=r"input state has shape \(2, 63\), expected \(2, 64\)"):
        be.step(pos, mask, state[:, :63])
    with pytest.raises(BackendError, match="input mask has shape"):
        be.step(pos, mask[:1], state)


def test_unknown_backend_lists_valid_ones(pack):
    with pytest.raises(BackendError, match="unknown backend 'tpu'; valid backends: onnx, onnx-int8"):
        open_backend(pack, "tpu")
    assert set(BACKENDS) >= {"onnx", "onnx-cuda", "onnx-int8", "tensorrt", "tensorrt-fp16", "torch", "torch-cuda"}


def test_tensorrt_without_tensorrt_names_install_steps(pack):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    with pytest.raises(BackendError, match=r"TensorRT is not installed.*pypi\.nvidia\.com.*docs/gpu\.md"):
        open_backend(pack, "tensorrt")


def test_onnx_cuda_without_provider_is_clear(pack):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    with pytest.raises(BackendError, match="CUDAExecutionProvider is not available.*onnxruntime-gpu"):
        open_backend(pack, "onnx-cuda")


def test_int8_without_engine_says_how_to_build(pack, tmp_path, monkeypatch):
    monkeypatch.setenv("RTIK_ENGINE_CACHE", str(tmp_path))
    with pytest.raises(BackendError, match="python -m engines.build .* --target onnx-int8"):
        open_backend(pack, "onnx-int8")


def test_torch_cuda_without_gpu_is_clear(pack):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(BackendError, match="CUDA is not available"):
        open_backend(pack, "torch-cuda")


def test_buckets():
    assert [bucket(n) for n in (1, 2, 3, 5, 16, 17, 64, 65, 200)] == [1, 2, 4, 8, 16, 32, 64, 128, 256]


@pytest.mark.gpu
@pytest.mark.skipif(not _has_cuda(), reason="needs an NVIDIA GPU with CUDA torch")
@pytest.mark.parametrize("B", [1, 5, 16])
def test_torch_cuda_graphs_match_cpu(pack, reference, B):
    with open_backend(pack, "torch-cuda") as be:
        ins = _inputs(B, seed=B)
        for _ in range(2):  # second call replays the captured graph
            got = be.step(*ins)
        for g, w in zip(got, reference.step(*ins), strict=True):
            np.testing.assert_allclose(g, w, atol=1e-4, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not _has_cuda(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("name", ["tensorrt", "tensorrt-fp16", "onnx-cuda"])
def test_gpu_backends_match_torch(pack, reference, name):
    try:
        be = open_backend(pack, name)
    except BackendError as e:
        pytest.skip(str(e))
    tol = 2e-2 if name.endswith("fp16") else 1e-3
    ins = _inputs(8, seed=3)
    for g, w in zip(be.step(*ins), reference.step(*ins), strict=True):
        np.testing.assert_allclose(g, w, atol=tol, rtol=0)
    # carrying state: pass state_out back (device-resident ping-pong for tensorrt)
    out = be.step(*ins)
    ref = reference.step(ins[0], ins[1], reference.step(*ins)[2].copy())
    out2 = be.step(ins[0], ins[1], out[2])
    np.testing.assert_allclose(out2[2], ref[2], atol=tol * 2, rtol=0)
    be.close()
