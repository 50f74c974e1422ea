"""A daemon on loopback for the benchmarks: free ports, the sample clip, the model to use, ``rtik serve`` in a
subprocess, its counters and memory. Shared by ``e2e.py``, ``soak.py`` and ``fuzz.py``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtik.wire.client import Control, wait_for_daemon  # noqa: E402


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample_clip() -> Path:
    root = ROOT.parent / "shared" / "mocap"
    if not root.is_dir():
        root = Path(os.environ.get("RTIK_MOCAP", root))
    clips = sorted((root / "sample").glob("*.bvh"))
    if not clips:
        sys.exit(f"no sample clips under {root / 'sample'} (set RTIK_MOCAP)")
    return clips[0]


def model_path(arg: str | None) -> str:
    """``arg``, else the shipped default pack, else the test pack (built on first use)."""
    if arg:
        return str(Path(arg).resolve())
    from rtik.models import modelpack

    if (modelpack.DEFAULT_PACK / modelpack.META_FILE).is_file():
        return str(modelpack.DEFAULT_PACK)
    sys.path.insert(0, str(ROOT / "tests"))
    import steppack

    pack = steppack.cached_pack()
    if pack is None:
        sys.exit("no model: pass --model PACK (no default model and no mocap sample to build the test pack)")
    return str(pack.path)


def start_daemon(model: str, tmp: Path, extra: str = "", level: str = "warning", hwm: int = 1000,
                 max_streams: int = 64, kernels: str = "auto"):  # fmt: skip
    """``python -m rtik serve`` on loopback with ephemeral ports; ``(process, endpoints)``. ``extra`` is TOML
    appended to the config (more sections); ``hwm`` the ingest and feed queues (1000 = the default); ``kernels``
    the solver's pre/post-processing (``[model] kernels``). The daemon's log goes to ``$RTIK_DAEMON_LOG`` when
    set (kept after the run), else into ``tmp``."""
    ep = {k: f"tcp://127.0.0.1:{free_port()}" for k in ("in", "out", "ctl")}
    ep["osc"] = ("127.0.0.1", free_port(socket.SOCK_DGRAM))
    cfg = tmp / "rtik.toml"
    cfg.write_text(f"""
[model]
path = "{Path(model).as_posix()}"
kernels = "{kernels}"
[ingest.zmq]
bind = "{ep["in"]}"
hwm = {hwm}
[ingest.osc]
port = {ep["osc"][1]}
[output.zmq]
bind = "{ep["out"]}"
hwm = {hwm}
[output.osc]
port = {free_port(socket.SOCK_DGRAM)}
[output.vmc]
port = {free_port(socket.SOCK_DGRAM)}
[control]
bind = "{ep["ctl"]}"
[streams]
max_streams = {max_streams}
[recording]
folder = "{(tmp / "rec").as_posix()}"
[log]
level = "{level}"
{extra}
""")
    log_path = Path(os.environ.get("RTIK_DAEMON_LOG", tmp / "daemon.log"))
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "rtik", "serve", "--config", str(cfg)], cwd=tmp,
                            stdout=log, stderr=log)  # fmt: skip
    try:
        wait_for_daemon(ep["ctl"], timeout=120)
    except Exception:
        proc.kill()
        sys.exit("daemon did not start:\n" + log_path.read_text())
    return proc, ep


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` in MB (Linux; NaN elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def counters(ep: dict, name: str, prefix: str = "") -> dict:
    """The daemon's counter ``name`` summed by reason/kind, over streams starting with ``prefix`` (or none)."""
    with Control(ep["ctl"]) as ctl:
        out: dict[str, int] = {}
        for c in ctl.stats()["counters"]:
            lab = c["labels"]
            if c["name"] == name and (not prefix or lab.get("stream", "").startswith(prefix)):
                key = lab.get("reason") or lab.get("kind") or "all"
                out[key] = out.get(key, 0) + c["value"]
    return out


def load_note() -> str:
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average unknown"
