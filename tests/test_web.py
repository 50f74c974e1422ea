"""The live view's server end to end: `python -m rtik serve` with [web] on a free port, real WebSocket and HTTP
clients on raw sockets: the poses a browser gets (decimated, equal to the offline solve), commands and downloads
through the control handlers, and clients that freeze, vanish, or send huge, malformed or cross-site requests:
each is dropped while the solver and the other viewers go on. Plus the pieces on bare objects."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import threading
import time
import urllib.error
import urllib.request

import loopback
import numpy as np
import pytest
from loopback import endpoints, free_port

from rtik.commands.send import load_positions
from rtik.errors import ConfigError
from rtik.serve import config
from rtik.serve.web import jsonable, pack_poses, skeleton_message
from rtik.serve.webserver import accept_key, frame_header
from rtik.wire.client import Control, Listener, Sender

FPS = 30.0


# ------------------------------------------------------------------------------------------ a raw client
class WsClient:
    """A WebSocket client on a plain socket (RFC 6455), written for these tests: it can also misbehave."""

    def __init__(self, port: int, rcvbuf: int | None = None, origin: str | None = None, host: str | None = None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        host = host or f"127.0.0.1:{port}"
        req = (f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")  # fmt: skip
        if origin:
            req += f"Origin: {origin}\r\n"
        self.sock.sendall((req + "\r\n").encode())
        self.buf = b""
        head = self._until(b"\r\n\r\n").decode()
        self.status = int(head.split(" ")[1])
        if self.status == 101:
            assert f"Sec-WebSocket-Accept: {accept_key(key)}" in head

    def _until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        head, self.buf = self.buf.split(sep, 1)
        return head

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        """``(opcode, payload)`` of the next frame from the server."""
        b0, b1 = self._exact(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack(">H", self._exact(2))
        elif n == 127:
            (n,) = struct.unpack(">Q", self._exact(8))
        return b0 & 0x0F, self._exact(n)

    def next_json(self, kind: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            op, data = self.recv()
            if op == 1 and json.loads(data)["t"] == kind:
                return json.loads(data)
        raise AssertionError(f"no {kind!r} message")

    def next_poses(self, timeout: float = 10.0) -> tuple[dict, dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            op, data = self.recv()
            if op == 2:
                return decode_poses(data)
        raise AssertionError("no poses")

    def send_frame(self, opcode: int, payload: bytes, mask: bool = True, fin: bool = True, length=None) -> None:
        n = len(payload) if length is None else length
        b0 = (0x80 if fin else 0) | opcode
        if n < 126:
            head = bytes((b0, (0x80 if mask else 0) | n))
        elif n < 1 << 16:
            head = struct.pack(">BBH", b0, (0x80 if mask else 0) | 126, n)
        else:
            head = struct.pack(">BBQ", b0, (0x80 if mask else 0) | 127, n)
        if mask:
            m = os.urandom(4)
            payload = bytes(b ^ m[i % 4] for i, b in enumerate(payload))
            head += m
        self.sock.sendall(head + payload)

    def command(self, cmd: str, **args) -> dict:
        self.send_frame(1, json.dumps({"id": 7, "cmd": cmd, **args}).encode())
        return self.next_json("reply")

    def close_code(self, timeout: float = 10.0) -> int | None:
        """Read until the server's close frame; its status code (None if the socket just closed)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                op, data = self.recv()
                if op == 8:
                    return struct.unpack(">H", data[:2])[0]
        except (ConnectionError, OSError):
            return None
        raise AssertionError("not closed")

    def close(self) -> None:
        self.sock.close()


def decode_poses(data: bytes) -> tuple[dict, dict]:
    """The header and ``{stream: (positions (J, 3), inputs (I, 3))}`` of a binary poses message."""
    (n,) = struct.unpack("<I", data[:4])
    head = json.loads(data[4 : 4 + n])
    off = 4 + n + (-(4 + n) % 4)
    out = {}
    for s in head["streams"]:
        pos = np.frombuffer(data, "<f4", s["j"] * 3, off).reshape(-1, 3)
        off += s["j"] * 12
        inp = np.frombuffer(data, "<f4", s["i"] * 3, off).reshape(-1, 3)
        off += s["i"] * 12
        out[s["name"]] = (pos, inp)
    assert off == len(data)
    return head, out


def http(port: int, path: str, raw: bytes | None = None) -> tuple[int, bytes]:
    if raw is not None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(raw)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return (int(data.split(b" ")[1]) if data else 0), data
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def web_counters(port: int) -> dict:
    return json.loads(http(port, "/api/web")[1])


# --------------------------------------------------------------------------------------------- the daemon
def start_daemon(tmp, pack, web: str = "", extra: str = ""):
    """`python -m rtik serve` on free loopback ports with the test pack; ``web``: more [web] keys. A dict with
    the process, endpoints and the web port."""
    ep = endpoints()
    port = free_port()
    text = f"""
[model]
path = "{pack.path.as_posix()}"
[ingest.zmq]
bind = "{ep["in"]}"
[ingest.osc]
port = {free_port(socket.SOCK_DGRAM)}
[output.zmq]
bind = "{ep["out"]}"
[output.osc]
enabled = false
[output.vmc]
enabled = false
[control]
bind = "{ep["ctl"]}"
[web]
port = {port}
{web}
[streams]
fps = {FPS}
[recording]
folder = "{(tmp / "rec").as_posix()}"
{extra}
"""
    return {"proc": loopback.start_daemon(tmp, text, ep["ctl"]), "ep": ep, "port": port, "tmp": tmp}


def stop_daemon(d) -> None:
    loopback.stop_daemon(d["proc"], 15)


@pytest.fixture(scope="module")
def clip(sample_clips):
    pos, _, fps = load_positions(sample_clips[2])
    assert fps == pytest.approx(FPS, rel=1e-4)
    return pos[:40]


@pytest.fixture(scope="module")
def daemon(pack, tmp_path_factory):
    d = start_daemon(tmp_path_factory.mktemp("web"), pack, "rate = 10.0\nmax_buffer = 16384")
    yield d
    stop_daemon(d)


def lockstep(d, stream, clip):
    """Send each frame and wait for its pose; the poses in order."""
    out = []
    with Listener(d["ep"]["out"], [stream]) as rx, Sender(stream, d["ep"]["in"]) as tx:
        time.sleep(0.2)
        for i in range(len(clip)):
            tx.send(clip[i], timestamp=i / FPS, seq=i + 1)
            pose = rx.recv(timeout=10)
            assert pose is not None and pose.seq == i + 1, f"no pose for frame {i} of {stream}"
            out.append(pose)
    return out


# ------------------------------------------------------------------------------------------- bare objects
def test_websocket_handshake_and_frame_headers():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 section 1.3
    assert frame_header(1, 5) == b"\x81\x05"
    assert frame_header(2, 300) == b"\x82\x7e\x01\x2c"
    assert frame_header(2, 70000) == b"\x82\x7f" + (70000).to_bytes(8, "big")


def test_poses_message_round_trip(pack):
    pos = np.arange(22 * 3, dtype=np.float32).reshape(22, 3)
    inp = np.full((5, 3), np.nan, np.float32)
    inp[1] = (1, 2, 3)
    for name_len in range(1, 6):  # every padding of the header
        head = {"t": "poses", "time": 1.0, "streams": [{"name": "a" * name_len, "j": 22, "i": 5}]}
        got, arrays = decode_poses(pack_poses(head, [pos, inp]))
        assert got["streams"][0]["name"] == "a" * name_len
        np.testing.assert_array_equal(arrays["a" * name_len][0], pos)
        np.testing.assert_array_equal(arrays["a" * name_len][1], inp)
    assert jsonable({"x": float("inf"), "y": [np.float32(0.5), float("nan")]}) == {"x": None, "y": [0.5, None]}
    hello = skeleton_message(pack.skeleton, "live")
    root = pack.skeleton.motion_root()
    assert [root, pack.skeleton.parents[root]] not in hello["bones"]  # no line to the static dummy root
    assert len(hello["bones"]) == len(pack.skeleton) - 2 and root in hello["joints"]


def test_web_config_is_checked():
    assert config.from_dict({}).web.port == 7710 and config.from_dict({}).web.host == "127.0.0.1"
    with pytest.raises(ConfigError, match=r"\[web\] rate must be in 1..120"):
        config.from_dict({"web": {"rate": 500.0}})
    with pytest.raises(ConfigError, match=r"\[web\] allow entry 'nope'"):
        config.from_dict({"web": {"allow": ["nope"]}})
    with pytest.raises(ConfigError, match=r"\[web\] port must be in 1..65535"):
        config.from_dict({"web": {"port": 0}})
    cfg = config.from_dict({"web": {"rate": 60, "allow": ["10.0.0.0/24"]}})
    assert config.from_dict(__import__("tomllib").loads(config.to_toml(cfg))) == cfg


def test_the_view_refuses_off_loopback_without_an_allow_list(pack, tmp_path):
    """Like the other sockets: off loopback only with [web] allow or insecure; the start fails, naming both."""
    from rtik.serve.daemon import Daemon
    from rtik.solve.solver import Solver

    cfg = config.from_dict({
        "model": {"path": str(pack.path)}, "web": {"host": "0.0.0.0", "port": free_port()},
        "ingest": {"zmq": {"enabled": False}, "osc": {"enabled": False}},
        "output": {"zmq": {"enabled": False}, "osc": {"enabled": False}, "vmc": {"enabled": False}},
        "control": {"enabled": False},
    })  # fmt: skip
    d = Daemon(cfg, Solver(pack))
    with pytest.raises(ConfigError, match=r"refusing the live view off loopback.*\[web\] allow.*--insecure"):
        d.start()


# ------------------------------------------------------------------------------------------ the live view
def test_a_viewer_gets_the_skeleton_and_the_solved_poses(daemon, clip, pack):
    from rtik.solve.solver import Solver, solve_sequence

    ws = WsClient(daemon["port"])
    hello = ws.next_json("hello")
    assert hello["mode"] == "live" and hello["names"] == list(pack.skeleton.names) and hello["rate"] == 10.0
    lockstep(daemon, "viewed", clip)
    deadline, last = time.monotonic() + 10, None
    while time.monotonic() < deadline:  # the view sends the latest pose: wait for the clip's last frame
        head, poses = ws.next_poses()
        if "viewed" in poses:
            last = next(s for s in head["streams"] if s["name"] == "viewed"), poses["viewed"]
            if last[0]["seq"] == len(clip):
                break
    assert last is not None and last[0]["seq"] == len(clip)
    pos, inputs = last[1]
    solver = Solver(pack)
    try:
        offline = solve_sequence(solver, clip, FPS, calibrate=False)
    finally:
        solver.close()
    np.testing.assert_allclose(pos, offline["positions"][-1], atol=1e-5)  # the solved skeleton, metres
    np.testing.assert_array_equal(inputs, clip[-1].astype(np.float32))  # the input points as sent (metres)
    stats = ws.next_json("stats")
    row = next(s for s in stats["streams"] if s["stream"] == "viewed")
    assert row["frames_out"] == len(clip) and row["resets"] == 1 and row["rejected"] == 0
    assert row["latency_p50_ms"] > 0 and row["latency_p99_ms"] >= row["latency_p50_ms"]
    assert row["calibration"]["state"] in ("settled", "measuring") and row["calibration"]["scale"] > 0
    assert stats["status"]["model"] == pack.name and stats["status"]["web"]["clients"] >= 1
    ws.close()


def test_updates_are_decimated_server_side(daemon, clip):
    """Frames at 120 Hz, the view at 10 Hz: a viewer gets the latest pose about ten times a second, not every
    frame, and the sequence numbers it sees skip."""
    ws = WsClient(daemon["port"])
    ws.next_json("hello")
    seqs, n_frames = [], 240
    with Sender("fast", daemon["ep"]["in"]) as tx:
        t0 = time.monotonic()
        for i in range(n_frames):
            tx.send(clip[i % len(clip)], timestamp=i / 120, seq=i + 1)
            time.sleep(max(0.0, t0 + (i + 1) / 120 - time.monotonic()))
    ws.sock.settimeout(1.0)
    try:
        while True:
            op, data = ws.recv()
            if op == 2:
                head, _ = decode_poses(data)
                seqs += [s["seq"] for s in head["streams"] if s["name"] == "fast"]
                if seqs and seqs[-1] == n_frames:
                    break
    except (TimeoutError, OSError):
        pass
    ws.close()
    assert seqs and seqs == sorted(seqs)
    assert len(seqs) < n_frames / 4 and max(np.diff(seqs)) > 1


def test_commands_recordings_and_downloads_go_through_the_control_handlers(daemon, clip):
    ws = WsClient(daemon["port"])
    ws.next_json("hello")
    lockstep(daemon, "rec", clip[:5])
    started = ws.command("record_start", stream="rec", name="from-the-page")
    assert started["ok"] and started["result"]["path"].endswith("from-the-page.bvh")
    again = ws.command("record_start", stream="rec")
    assert not again["ok"] and "already recording" in again["error"]  # the same handler's refusal
    with Sender("rec", daemon["ep"]["in"]) as tx:
        for i in range(5, 20):
            tx.send(clip[i], timestamp=i / FPS, seq=i + 1)
            time.sleep(0.01)
    time.sleep(0.5)
    stopped = ws.command("record_stop", stream="rec")
    assert stopped["ok"] and stopped["result"]["frames"] > 0
    with Control(daemon["ep"]["ctl"]) as ctl:
        names = [r["name"] for r in ctl.recordings()]
    assert "from-the-page.bvh" in names
    listing = ws.next_json("recordings")
    assert any(r["name"] == "from-the-page.bvh" for r in listing["list"])
    status, body = http(daemon["port"], "/recordings/from-the-page.bvh")
    assert status == 200 and body == (daemon["tmp"] / "rec" / "from-the-page.bvh").read_bytes()
    assert body.startswith(b"HIERARCHY")
    assert http(daemon["port"], "/recordings/..%2Frtik.toml")[0] == 404  # only names of the listing
    assert http(daemon["port"], "/recordings/none.bvh")[0] == 404
    bad = ws.command("shutdown")
    assert not bad["ok"] and "unknown command 'shutdown'" in bad["error"]
    assert not ws.command("record_stop", stream="rec", bogus=1)["ok"]
    assert not ws.command("reset", stream="nobody")["ok"]
    ws.send_frame(1, b"{not json")
    assert "not JSON" in ws.next_json("reply")["error"]
    assert ws.command("status")["ok"]  # still connected after every refusal
    ws.close()


def test_frozen_and_closed_viewers_cost_the_solver_nothing(daemon, clip):
    """Viewers that never read (a frozen tab) are dropped once [web] max_buffer is queued for them; one that
    vanishes without a close frame is forgotten. Meanwhile every frame of a stream comes back from the solver and
    a viewer that reads goes on getting poses."""
    before = web_counters(daemon["port"])
    frozen = [WsClient(daemon["port"], rcvbuf=4096) for _ in range(3)]
    vanished = WsClient(daemon["port"])
    vanished.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    vanished.close()  # reset, no close frame
    good = WsClient(daemon["port"])
    good.next_json("hello")
    got, deadline = 0, time.monotonic() + 60
    with Sender("busy", daemon["ep"]["in"]) as tx:
        i = 0
        while web_counters(daemon["port"])["dropped"].get("slow", 0) < before["dropped"].get("slow", 0) + 3:
            assert time.monotonic() < deadline, f"frozen viewers not dropped: {web_counters(daemon['port'])}"
            for _ in range(30):
                tx.send(clip[i % len(clip)], timestamp=i / 120, seq=i + 1)
                i += 1
                time.sleep(1 / 120)
            while True:  # the reading viewer keeps up
                good.sock.settimeout(0.01)
                try:
                    op, _ = good.recv()
                except (TimeoutError, OSError):
                    break
                got += op == 2
    good.sock.settimeout(10)
    poses = lockstep(daemon, "after-frozen", clip)  # the solver answers every frame
    assert len(poses) == len(clip) and got > 0
    assert good.next_poses() and web_counters(daemon["port"])["clients"] == 1
    for f in frozen:
        f.close()
    good.close()


@pytest.mark.parametrize(
    "attack, code, reason",
    [
        (lambda ws: ws.send_frame(1, b"", length=1 << 40), 1009, "too_large"),  # a 1 TB message announced
        (lambda ws: ws.send_frame(1, b"x" * 70000), 1009, "too_large"),
        (lambda ws: ws.send_frame(1, b'{"cmd": "status"}', mask=False), 1002, "malformed"),  # clients must mask
        (lambda ws: ws.send_frame(0x3, b"??"), 1002, "malformed"),  # a reserved opcode
        (lambda ws: ws.send_frame(0, b"cont"), 1002, "malformed"),  # a continuation of nothing
        (lambda ws: ws.send_frame(9, b"p" * 200), 1002, "malformed"),  # a control frame over 125 bytes
        (lambda ws: ws.send_frame(1, b"\xff\xfe"), 1007, "malformed"),  # text that is not UTF-8
        (lambda ws: ws.send_frame(2, b"\x00\x01"), 1003, "malformed"),  # binary: the view speaks JSON
        (lambda ws: [ws.send_frame(9, b"") for _ in range(400)], 1008, "flood"),
    ],
    ids=["huge-header", "too-large", "unmasked", "opcode", "continuation", "control-size", "utf8", "binary", "flood"],
)
def test_a_hostile_viewer_is_dropped_and_nobody_else_notices(daemon, clip, attack, code, reason):
    good = WsClient(daemon["port"])
    good.next_json("hello")
    before = web_counters(daemon["port"])["dropped"].get(reason, 0)
    bad = WsClient(daemon["port"])
    bad.next_json("hello")
    try:
        attack(bad)
    except OSError:  # dropped while it was still sending
        pass
    assert bad.close_code() in (code, None)
    bad.close()
    assert web_counters(daemon["port"])["dropped"].get(reason, 0) == before + 1
    poses = lockstep(daemon, f"beside-{os.urandom(3).hex()}", clip[:10])  # a new stream each time
    assert len(poses) == 10
    head, _ = good.next_poses()
    assert good.command("status")["ok"]
    good.close()


def test_bad_http_requests_are_refused(daemon):
    port = daemon["port"]
    assert http(port, "", b"garbage\r\n\r\n")[0] == 400
    assert http(port, "", b"GET / HTTP/1.1\r\nX: " + b"a" * 10000 + b"\r\n\r\n")[0] == 431
    assert http(port, "", b"GET / HTTP/1.1\r\nHost: evil.example:80\r\n\r\n")[0] == 421  # DNS rebinding
    assert http(port, "", b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")[0] == 405
    assert http(port, "", b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")[0] == 426
    assert WsClient(port, origin="http://evil.example").status == 403  # another site's page
    assert WsClient(port, origin=f"http://127.0.0.1:{port}").status == 101
    status, body = http(port, "/")
    assert status == 200 and b'<script type="importmap">' in body
    status, body = http(port, "/vendor/three.module.min.js")
    assert status == 200 and b"Copyright 2010-2024 Three.js Authors" in body
    assert http(port, "/../pyproject.toml")[0] == 404


def test_a_stuck_web_thread_does_not_hold_up_the_solver(pack, clip):
    """The web thread blocked outright (as if encoding or a socket hung): the daemon, in this process, still
    solves and publishes every frame; the solver thread only leaves poses in the view's slots."""
    from rtik.serve.daemon import Daemon
    from rtik.solve.solver import Solver

    ep = {k: f"tcp://127.0.0.1:{free_port()}" for k in ("in", "out", "ctl")}
    cfg = config.from_dict({
        "model": {"path": str(pack.path)}, "web": {"port": free_port()}, "streams": {"fps": FPS},
        "ingest": {"zmq": {"bind": ep["in"]}, "osc": {"enabled": False}},
        "output": {"zmq": {"bind": ep["out"]}, "osc": {"enabled": False}, "vmc": {"enabled": False}},
        "control": {"bind": ep["ctl"]},
    })  # fmt: skip
    d = Daemon(cfg, Solver(pack))
    d.start()
    try:
        ws = WsClient(d.web.server.port)
        ws.next_json("hello")
        stuck, release, woke = threading.Event(), threading.Event(), threading.Event()
        d.web.server.call(lambda: (stuck.set(), release.wait(60), woke.set()))  # the web thread blocks
        assert stuck.wait(10)
        poses = lockstep({"ep": ep}, "while-stuck", clip)
        assert len(poses) == len(clip) and not woke.is_set()  # every frame solved while the web thread was stuck
        deadline = time.monotonic() + 10  # the slot is filled just after the pose is published
        while d.web.latest["while-stuck"][1].seq != len(clip) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert d.web.latest["while-stuck"][1].seq == len(clip) and not woke.is_set()  # the newest pose waits there
        release.set()
        head, got = ws.next_poses()  # and the viewer gets it once the thread goes on
        assert "while-stuck" in got
        ws.close()
    finally:
        d.stop()
