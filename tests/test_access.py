"""Access control: the loopback rule, CurveZMQ keys (an allowed key works, any other gets nothing through), the
OSC source allow-list, `rtik keys`, and recording names that never leave the recordings folder."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
import time

import pytest
import steppack
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st
from loopback import free_port

from rtik.commands import keys
from rtik.errors import ConfigError
from rtik.serve import config, security
from rtik.serve.recorder import RecordError, resolve
from rtik.wire import osc, protocol
from rtik.wire.client import Control, ControlError, Listener, Sender, wait_for_daemon

FPS = 30.0


@pytest.mark.parametrize(("endpoint", "local"), [
    ("tcp://127.0.0.1:7700", True), ("tcp://127.8.9.1:1", True), ("tcp://localhost:7700", True),
    ("tcp://[::1]:7700", True), ("ipc:///tmp/rtik", True), ("inproc://x", True),
    ("tcp://0.0.0.0:7700", False), ("tcp://*:7700", False), ("tcp://10.0.0.5:7700", False),
    ("tcp://eth0:7700", False), ("tcp://stage-pc.local:7700", False), ("tcp://[::]:7700", False),
    ("tcp://10.0.0.5;127.0.0.1:7700", True), ("udp://127.0.0.1:7700", False),
])  # fmt: skip
def test_loopback_endpoints(endpoint, local):
    assert security.is_loopback_endpoint(endpoint) is local


def _cfg(**sections) -> config.Config:
    return config.from_dict(sections)


def test_off_loopback_needs_keys_or_insecure(caplog):
    ctx = zmq.Context()
    try:
        with pytest.raises(ConfigError, match=r"refusing to bind off loopback .*\[control\] bind = 'tcp://0.0.0.0:7702'"
                                              r".*CurveZMQ.*--insecure"):  # fmt: skip
            security.Guard(_cfg(control={"bind": "tcp://0.0.0.0:7702"}), ctx)
        with pytest.raises(ConfigError, match=r"refusing OSC off loopback.*osc_allow"):
            security.Guard(_cfg(ingest={"osc": {"host": "0.0.0.0"}}), ctx)
        security.Guard(_cfg(ingest={"osc": {"host": "0.0.0.0"}}, security={"osc_allow": ["10.0.0.0/24"]}), ctx)
        with caplog.at_level(logging.WARNING, logger="rtik.serve.security"):
            security.Guard(_cfg(ingest={"zmq": {"bind": "tcp://*:7700"}}, security={"insecure": True}), ctx)
        assert "INSECURE: [ingest.zmq] bind = 'tcp://*:7700' without authentication" in caplog.text
    finally:
        ctx.term()
    with pytest.raises(ConfigError, match="server_key and clients go together"):
        _cfg(security={"server_key": "k"})
    with pytest.raises(ConfigError, match="osc_allow entry 'stage' is not an IP address"):
        _cfg(security={"osc_allow": ["stage"]})


def test_serve_refuses_a_network_bind_without_keys(tmp_path):
    pack = steppack.cached_pack()
    if pack is None:
        pytest.skip("mocap sample not found (the test model pack is built from it)")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[model]\npath = "{pack.path.as_posix()}"\n[output.zmq]\nbind = "tcp://0.0.0.0:{free_port()}"\n')
    out = subprocess.run([sys.executable, "-m", "rtik", "serve", "--config", str(cfg)], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 1
    assert "rtik serve: error: refusing to bind off loopback without authentication" in out.stderr
    assert "--insecure" in out.stderr and "rtik keys generate" in out.stderr


def test_keys_command(tmp_path, capsys):
    from rtik.cli import main

    assert main(["keys", "generate", str(tmp_path / "k")]) == 0
    pub = (tmp_path / "k" / "server.key").read_text()
    assert (tmp_path / "k" / "server.key_secret").stat().st_mode & 0o077 == 0  # private
    out = capsys.readouterr().out
    z85 = out.split()[2]
    assert len(z85) == 40 and z85 in pub
    assert main(["keys", "show", str(tmp_path / "k")]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert len(shown) == 2 and all(line.startswith(z85) for line in shown) and "(with secret key)" in shown[1]
    (tmp_path / "c.toml").write_text(f'[security]\nserver_key = "{tmp_path}/k/server.key_secret"\n'
                                     f'clients = "{tmp_path}/k"\n')  # fmt: skip
    assert main(["keys", "show", "--config", str(tmp_path / "c.toml")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3  # the server key, then the folder's two files
    assert main(["keys", "show"]) == 1
    assert "needs a key file or folder, or --config" in capsys.readouterr().err
    assert main(["keys", "generate", str(tmp_path / "k")]) == 1  # never overwrites
    assert "exists" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="neither a key file nor"):
        security.load_public("~" * 40)
    with pytest.raises(ConfigError, match="key file not-a-key not found"):
        security.load_public("not-a-key")
    with pytest.raises(ConfigError, match="holds no secret key"):
        security.load_keypair(tmp_path / "k" / "server.key")


# --------------------------------------------------------------------------------- CurveZMQ and OSC, live
@pytest.fixture(scope="module")
def secured(tmp_path_factory, sample_clips):
    """An in-process daemon with CurveZMQ on loopback (one allowed client key) and an OSC allow-list."""
    from rtik.commands.send import load_positions
    from rtik.serve.daemon import Daemon
    from rtik.solve.solver import Solver

    pack = steppack.cached_pack()
    if pack is None:
        pytest.skip("mocap sample not found (the test model pack is built from it)")
    tmp = tmp_path_factory.mktemp("curve")
    keys.generate(tmp / "server")
    keys.generate(tmp / "friend", "friend")
    keys.generate(tmp / "stranger", "stranger")
    (tmp / "clients").mkdir()
    shutil.copy(tmp / "friend" / "friend.key", tmp / "clients")
    ep = {k: f"tcp://127.0.0.1:{free_port()}" for k in ("in", "out", "ctl")}
    osc_port = free_port(socket.SOCK_DGRAM)
    cfg = config.from_dict({
        "ingest": {"zmq": {"bind": ep["in"]}, "osc": {"port": osc_port}},
        "output": {"zmq": {"bind": ep["out"]}, "osc": {"enabled": False}, "vmc": {"enabled": False}},
        "control": {"bind": ep["ctl"]}, "streams": {"fps": FPS},
        "security": {"server_key": str(tmp / "server" / "server.key_secret"), "clients": str(tmp / "clients"),
                     "osc_allow": ["127.0.0.2"]},
    })  # fmt: skip
    d = Daemon(cfg, Solver(pack))
    d.start()
    server = tmp / "server" / "server.key"
    friend = security.client_keys(server, tmp / "friend" / "friend.key_secret")
    stranger = security.client_keys(server, tmp / "stranger" / "stranger.key_secret")
    try:
        wait_for_daemon(ep["ctl"], timeout=30, curve=friend)
        yield {"d": d, "ep": ep, "osc": osc_port, "friend": friend, "stranger": stranger,
               "clip": load_positions(sample_clips[2])[0][:20]}  # fmt: skip
    finally:
        d.stop()


def test_an_allowed_key_gets_through(secured):
    ep, friend, clip = secured["ep"], secured["friend"], secured["clip"]
    with Listener(ep["out"], ["friend"], curve=friend) as rx, Sender("friend", ep["in"], curve=friend) as tx:
        time.sleep(0.3)
        seqs = []
        for i in range(5):
            tx.send(clip[i], timestamp=i / FPS)
            p = rx.recv(timeout=10)
            seqs.append(p.seq if p else None)
    assert seqs == [1, 2, 3, 4, 5]
    with Control(ep["ctl"], curve=friend) as ctl:
        assert ctl.status()["streams"] >= 1


@pytest.mark.parametrize("who", ["stranger", "no key"])
def test_any_other_client_gets_nothing_through(secured, who):
    ep, friend, clip, d = secured["ep"], secured["friend"], secured["clip"], secured["d"]
    curve = secured["stranger"] if who == "stranger" else None
    with pytest.raises(ControlError, match="no reply"):
        with Control(ep["ctl"], timeout=1.0, curve=curve) as ctl:
            ctl.status()
    name = "intruder" if curve else "plain"
    with Sender(name, ep["in"], curve=curve) as tx, Listener(ep["out"], curve=curve) as spy, \
            Sender("friend2", ep["in"], curve=friend) as ok, \
            Listener(ep["out"], ["friend2"], curve=friend) as rx:  # fmt: skip
        time.sleep(0.3)
        for i in range(10):
            tx.send(clip[i], timestamp=i / FPS)
            ok.send(clip[i], timestamp=i / FPS)
            assert rx.recv(timeout=10) is not None  # the allowed client is served meanwhile
        assert spy.recv(timeout=0.5) is None  # the feed gives the other client nothing
    assert d.stats.total("frames_in", stream=name) == 0 and name not in d.streams


def test_osc_from_unlisted_sources_is_dropped_and_counted(secured):
    d, clip = secured["d"], secured["clip"]
    before = d.stats.total("dropped", reason="not_allowed")
    dgrams = [osc.encode_frame(protocol.make_frame("osc1", i + 1, i / FPS, clip[i])) for i in range(5)]
    for source in ("127.0.0.1", "127.0.0.2"):  # the allow-list holds 127.0.0.2 only
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((source, 0))
            for g in dgrams:
                s.sendto(g, ("127.0.0.1", secured["osc"]))
                time.sleep(0.02)
    deadline = time.monotonic() + 5
    while d.stats.total("frames_in", stream="osc1") < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert d.stats.total("dropped", reason="not_allowed", transport="osc") - before == 5
    assert d.stats.total("frames_in", stream="osc1", transport="osc") == 5  # those from 127.0.0.2


def test_source_filter():
    f = security.SourceFilter(["10.0.0.0/24", "192.168.1.7", "fd00::/8"])
    assert f.allows("10.0.0.99") and f.allows("192.168.1.7") and f.allows("fd00::1") and f.allows("::ffff:10.0.0.3")
    assert not f.allows("10.0.1.1") and not f.allows("192.168.1.8") and not f.allows("not an ip")


# ------------------------------------------------------------------------------------ recordings folder
NAMES = st.text(max_size=40) | st.sampled_from(["..", "../x", "/etc/passwd", "a/../../b", "~/x", "C:\\x", "a\0b",
                                                ".hidden", "a" * 200, "con", "x.bvh/..", " "])  # fmt: skip


@settings(max_examples=300, deadline=None, derandomize=True)
@given(NAMES)
def test_recording_names_never_leave_the_folder(tmp_path_factory, name):
    root = tmp_path_factory.getbasetemp() / "recs"
    try:
        p = resolve(root, name)
    except RecordError as e:
        assert "invalid recording name" in str(e) or "leaves the recordings folder" in str(e)
        return
    assert p.parent == root.resolve() and p.name.endswith(".bvh") and "/" not in name and ".." not in name


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    (tmp_path / "recs").mkdir()
    (tmp_path / "recs" / "evil.bvh").symlink_to(tmp_path / "outside.bvh")
    with pytest.raises(RecordError, match="leaves the recordings folder"):
        resolve(tmp_path / "recs", "evil")
    assert not (tmp_path / "outside.bvh").exists()


def test_metrics_off_loopback_needs_an_allow_list_or_insecure(caplog):
    """[metrics] follows the loopback rule like the live view: a host off loopback needs [metrics] allow (or
    `insecure`, logged); the server answers listed clients and gives others 403, over real HTTP."""
    import urllib.error
    import urllib.request

    from rtik.serve.stats import Stats, serve_metrics

    ctx = zmq.Context()
    try:
        with pytest.raises(ConfigError, match=r"refusing /metrics off loopback.*\[metrics\] allow.*--insecure"):
            security.Guard(_cfg(metrics={"enabled": True, "host": "0.0.0.0"}), ctx)
        g = security.Guard(_cfg(metrics={"enabled": True, "host": "0.0.0.0", "allow": ["10.0.0.0/24"]}), ctx)
        assert g.metrics_allow.allows("10.0.0.9") and not g.metrics_allow.allows("127.0.0.1")
        with caplog.at_level(logging.WARNING, logger="rtik.security"):
            g = security.Guard(_cfg(metrics={"enabled": True, "host": "0.0.0.0"}, security={"insecure": True}), ctx)
        assert g.metrics_allow is None and "INSECURE: /metrics on 0.0.0.0" in caplog.text
        assert security.Guard(_cfg(metrics={"enabled": True}), ctx).metrics_allow is None  # loopback: anyone local
    finally:
        ctx.term()
    with pytest.raises(ConfigError, match="metrics\\] allow entry 'scraper' is not an IP address"):
        _cfg(metrics={"allow": ["scraper"]})
    stats = Stats()
    for allow, code in ((["127.0.0.1"], 200), (["10.0.0.0/24"], 403)):
        port = free_port()
        server = serve_metrics(stats, "127.0.0.1", port, security.SourceFilter(allow))
        try:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    got, body = r.status, r.read()
            except urllib.error.HTTPError as e:
                got, body = e.code, b""
            assert got == code
            assert (b"rtik_" in body) == (code == 200)
        finally:
            server.shutdown()
            server.server_close()
