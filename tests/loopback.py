"""Loopback helpers shared by the transport, daemon and hardening tests."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path


def free_port(kind=socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that is free right now (TCP by default, ``socket.SOCK_DGRAM`` for UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def endpoints() -> dict[str, str]:
    """ZeroMQ endpoints ``in``, ``out`` and ``ctl`` on free loopback ports."""
    return {k: f"tcp://127.0.0.1:{free_port()}" for k in ("in", "out", "ctl")}


def start_daemon(tmp: Path, config_text: str, ctl: str, cwd: Path | None = None, timeout: float = 90):
    """``python -m rtik serve`` on ``config_text`` (written to ``tmp/rtik.toml``, its log to ``tmp/daemon.log``),
    waited for on its control endpoint ``ctl``; the process. A daemon that does not come up is killed and its log
    raised as the failure."""
    from rtik.wire.client import wait_for_daemon

    cfg = tmp / "rtik.toml"
    cfg.write_text(config_text)
    with open(tmp / "daemon.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "rtik", "serve", "--config", str(cfg)], stdout=log,
                                stderr=log, cwd=cwd)  # fmt: skip
    try:
        wait_for_daemon(ctl, timeout=timeout)
    except Exception:
        proc.kill()
        proc.wait(10)
        raise AssertionError((tmp / "daemon.log").read_text()) from None
    return proc


def stop_daemon(proc, timeout: float = 30) -> int:
    """SIGTERM (a clean shutdown), a kill if it does not end within ``timeout`` s; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)
