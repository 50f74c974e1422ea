"""Engine builds: FP16 and INT8 ONNX variants, the INT8 drift report and its gate in the backend."""

from __future__ import annotations

import json

import numpy as np
import pytest
import steppack

from engines import build as eb
from rtik.errors import BackendError
from rtik.models.backends.base import engine_dir, open_backend
from rtik.models.convert import to_fp16


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RTIK_ENGINE_CACHE", str(tmp_path))
    return tmp_path


def _inputs(B=3):
    rng = np.random.default_rng(0)
    return (
        (rng.normal(size=(B, 21, 3)) * 0.3).astype(np.float32),
        np.ones((B, 21), np.float32),
        np.zeros((B, 64), np.float32),
    )


def test_fp16_copy_keeps_float32_io_and_runs(pack, tmp_path):
    pytest.importorskip("onnx")
    f16 = to_fp16(pack.file("onnx"), tmp_path / "step.fp16.onnx")
    from rtik.models.modelpack import onnx_signature

    sig = onnx_signature(f16)
    assert all(e == 1 for e, _ in sig["inputs"].values()) and all(e == 1 for e, _ in sig["outputs"].values())
    fp16 = open_backend(pack, "onnx", path=f16)
    ref = open_backend(pack, "onnx")
    for a, b in zip(fp16.step(*_inputs()), ref.step(*_inputs()), strict=True):
        np.testing.assert_allclose(a, b, atol=5e-3)


def test_int8_build_writes_drift_report_and_backend_opens(pack, cache, capsys):
    pytest.importorskip("onnx")  # ONNX Runtime's quantisation tools import it
    clips = [steppack.mocap_sample()]
    assert eb.main([str(pack.path), "--target", "onnx-int8", "--frames", "400", "--max-drift-deg", "5"] + sum(
        (["--clip", str(c)] for c in clips), []
    )) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "rot_deg_mean" in out and "accepted                   True" in out
    report = json.loads((engine_dir(pack) / "step.int8.drift.json").read_text())
    assert report["frames"] == 400 and report["digest"] == pack.digest()
    assert 0 < report["rot_deg_mean"] < 5 and report["rot_deg_max"] >= report["rot_deg_mean"]
    be = open_backend(pack, "onnx-int8")
    assert be.drift["frames"] == 400
    # measured tolerance: INT8 outputs stay near FP32 on one step
    ref = open_backend(pack, "onnx")
    a, b = be.step(*_inputs()), ref.step(*_inputs())
    assert np.abs(a[0] - b[0]).max() < 0.05


def test_int8_without_report_is_refused(pack, cache):
    from engines.convert import to_int8

    pytest.importorskip("onnx")
    to_int8(pack.file("onnx"), engine_dir(pack) / "step.int8.onnx")
    with pytest.raises(BackendError, match="no drift report"):
        open_backend(pack, "onnx-int8")
    (engine_dir(pack) / "step.int8.drift.json").write_text(json.dumps({"accepted": False, "rot_deg_mean": 9.0}))
    with pytest.raises(BackendError, match="drift report refuses it"):
        open_backend(pack, "onnx-int8")


def test_tensorrt_target_without_tensorrt(pack, cache, capsys):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    assert eb.main([str(pack.path), "--target", "tensorrt"]) == 1
    assert "TensorRT is not installed" in capsys.readouterr().err


def test_engine_cache_is_keyed_by_pack_content(pack, cache):
    d = engine_dir(pack)
    assert d.parent == cache and pack.digest() in d.name
