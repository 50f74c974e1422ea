"""Daemon configuration: defaults, TOML loading, strict validation with clear messages, print-config round trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rtik.errors import ConfigError
from rtik.serve import config
from rtik.serve.config import tomllib  # tomli on Python 3.10


def test_defaults_bind_loopback_on_the_documented_ports():
    c = config.Config()
    assert c.zmq_in.bind == "tcp://127.0.0.1:7700" and c.zmq_out.bind == "tcp://127.0.0.1:7701"
    assert c.control.bind == "tcp://127.0.0.1:7702"
    assert (c.osc_in.host, c.osc_in.port, c.osc_out.port, c.vmc.port) == ("127.0.0.1", 7703, 7704, 39539)
    assert c.metrics.port == 7709 and not c.metrics.enabled
    assert c.model.path == "" and c.model.backend == "onnx" and c.recording.units == "cm"


def test_load_none_is_the_defaults():
    assert config.load(None) == config.Config()


def test_load_file(tmp_path):
    p = tmp_path / "rtik.toml"
    p.write_text(
        """
[model]
backend = "torch"
[ingest.zmq]
bind = "tcp://127.0.0.1:17700"
connect = ["tcp://10.0.0.5:5555"]
[ingest.osc]
enabled = false
[output.vmc]
stream = "actor1"
bones = { Hips = "Hips" }
[streams]
max_streams = 4
fps = 120          # an int is accepted for a float
[recording]
folder = "/var/lib/rtik/recordings"
streams = ["*"]
"""
    )
    c = config.load(p)
    assert (
        c.model.backend == "torch" and c.zmq_in.bind.endswith(":17700") and c.zmq_in.connect == ["tcp://10.0.0.5:5555"]
    )
    assert not c.osc_in.enabled and c.osc_in.port == 7703  # untouched keys keep their defaults
    assert c.vmc.stream == "actor1" and c.vmc.bones == {"Hips": "Hips"}
    assert c.streams.max_streams == 4 and c.streams.fps == 120.0 and isinstance(c.streams.fps, float)
    assert c.recording.streams == ["*"]


@pytest.mark.parametrize(
    "text, words",
    [
        ("[modle]\npath = ''", r"unknown section \[modle\]; valid sections: \[model\]"),
        ("[model]\nbackend = 'cuda'", r"\[model\] backend = 'cuda' is not valid; choose one of: onnx, torch, tensorrt"),
        ("[model]\npaht = ''", r"unknown key 'paht' in \[model\]; valid keys: path, backend, kernels, smo"),
        ("[model]\nkernels = 'c'", r"\[model\] kernels = 'c' is not valid; choose one of: auto, numba, numpy"),
        ("[ingest.osc]\nport = 'x'", r"\[ingest.osc\] port must be a int"),
        ("[ingest.osc]\nport = 70000", r"port must be in 1..65535"),
        ("[output.zmq]\nbind = '127.0.0.1:7701'", "must look like tcp://HOST:PORT"),
        ("[streams]\nmax_streams = 0", "max_streams must be at least 1"),
        ("[streams]\nmax_streams = true", "max_streams must be a int"),
        ("[recording]\nunits = 'mm'", "units = 'mm' is not valid; choose one of: cm, m"),
        ("[recording]\nflush_interval = 5.0", r"flush_interval must be in \(0, 1\]"),
        ("[recording]\nrig = 'studio'", r"rig 'studio' is not one of \[recording\] rigs \(none\)"),
        ("[recording]\nrigs = { studio = 3 }", r"rigs must map rig names to BVH file paths"),
        ("[log]\nformat = 'xml'", "choose one of: text, json"),
        ("[output]\nvmc = 3", r"\[output.vmc\] must be a table"),
        ("model = 3", r"\[model\] must be a table"),
        ("[model\n", "invalid TOML"),
    ],
)
def test_invalid_configs(tmp_path, text, words):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=words):
        config.load(p)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        config.load(tmp_path / "nope.toml")


def test_to_toml_round_trip(tmp_path):
    c = config.from_dict({"streams": {"max_streams": 3}, "output": {"vmc": {"bones": {"Hips": "Hips"}}},
                          "recording": {"folder": 'C:\\rec "x"'}})  # fmt: skip
    p = tmp_path / "out.toml"
    p.write_text(config.to_toml(c))
    assert config.load(p) == c


def test_print_config_command(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[control]\nbind = 'tcp://127.0.0.1:17702'\n")
    out = subprocess.run([sys.executable, "-m", "rtik", "serve", "--config", str(p), "--print-config"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert 'bind = "tcp://127.0.0.1:17702"' in out.stdout and "[output.vmc]" in out.stdout
    q = tmp_path / "printed.toml"
    q.write_text(out.stdout)
    assert config.load(q) == config.load(p)


def test_bad_config_exits_with_a_clear_message(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[streams]\nmax_stream = 3\n")
    out = subprocess.run([sys.executable, "-m", "rtik", "serve", "--config", str(p)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 1 and "unknown key 'max_stream' in [streams]" in out.stderr


def test_shipped_systemd_files():
    root = Path(__file__).resolve().parents[1] / "systemd"
    c = config.load(root / "rtik.toml")
    assert c == config.from_dict(tomllib.loads((root / "rtik.toml").read_text()))
    assert c.recording.folder == "/var/lib/rtik/recordings" and c.log.format == "json"
    unit = (root / "rtik.service").read_text()
    settings = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert settings["Type"] == "notify" and int(settings["WatchdogSec"]) > 0
    assert settings["ExecStart"].endswith("rtik serve --config /etc/rtik/rtik.toml")
    assert settings["NoNewPrivileges"] == "yes" and settings["ProtectSystem"] == "strict"
    # the sandbox leaves no writable place beside the package: the compiled kernels are cached in CacheDirectory
    assert settings["CacheDirectory"] == "rtik" and "Environment=NUMBA_CACHE_DIR=/var/cache/rtik" in unit


def test_model_smooth_switches_the_solvers_output_smoothing(tmp_path):
    from rtik.serve.config import solver_options

    (tmp_path / "on.toml").write_text("[model]\nkernels = 'numpy'\n")
    (tmp_path / "off.toml").write_text("[model]\nsmooth = false\n")
    on, off = config.load(tmp_path / "on.toml"), config.load(tmp_path / "off.toml")
    assert solver_options(on.model).smooth is not None and solver_options(on.model).kernels == "numpy"
    assert solver_options(off.model).smooth is None
    assert solver_options(on.model).smooth.stages == 2
    (tmp_path / "three.toml").write_text("[model]\nsmooth_stages = 3\n")
    assert solver_options(config.load(tmp_path / "three.toml").model).smooth.stages == 3
    for bad in (0, 4):
        (tmp_path / "bad.toml").write_text(f"[model]\nsmooth_stages = {bad}\n")
        with pytest.raises(ConfigError, match=r"\[model\] smooth_stages must be in 1..3"):
            config.load(tmp_path / "bad.toml")
    opts = solver_options(on.model)
    assert (opts.gap_hold, opts.spike) == (1.0, 0.02)
    (tmp_path / "off2.toml").write_text("[model]\ngap_hold = 0\nspike = 0\n")
    opts = solver_options(config.load(tmp_path / "off2.toml").model)
    assert opts.gap_hold is None and opts.spike is None
    assert solver_options(on.model).hinge == (10.0, 25.0) and opts.hinge == (10.0, 25.0)
    (tmp_path / "nohinge.toml").write_text("[model]\nhinge = false\n")
    assert solver_options(config.load(tmp_path / "nohinge.toml").model).hinge is None
    assert solver_options(on.model).twist_prior == 1.0
    (tmp_path / "tw.toml").write_text("[model]\ntwist_prior = 0.0\n")
    assert solver_options(config.load(tmp_path / "tw.toml").model).twist_prior == 0.0
    (tmp_path / "bad.toml").write_text("[model]\ntwist_prior = 1.5\n")
    with pytest.raises(ConfigError, match=r"\[model\] twist_prior must be within 0..1"):
        config.load(tmp_path / "bad.toml")
    for key in ("gap_hold", "spike"):
        (tmp_path / "bad.toml").write_text(f"[model]\n{key} = -1.0\n")
        with pytest.raises(ConfigError, match=rf"\[model\] {key} must be a finite number >= 0"):
            config.load(tmp_path / "bad.toml")
