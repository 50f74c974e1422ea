"""sd_notify without systemd: datagrams to $NOTIFY_SOCKET, a no-op elsewhere."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from rtik.serve.sdnotify import Notifier, watchdog_interval

unix_only = pytest.mark.skipif(not hasattr(socket, "AF_UNIX") or sys.platform == "win32", reason="needs AF_UNIX")


def test_no_socket_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled and n.ready() is False and n.watchdog() is False


@unix_only
def test_messages_reach_the_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    n = Notifier()
    assert n.enabled and n.ready("serving") and n.watchdog() and n.stopping()
    assert server.recv(100) == b"READY=1\nSTATUS=serving"
    assert server.recv(100) == b"WATCHDOG=1" and server.recv(100) == b"STOPPING=1"
    n.close()
    server.close()


@unix_only
def test_abstract_socket_names(monkeypatch):
    if sys.platform != "linux":
        pytest.skip("abstract sockets are Linux-only")
    name = f"rtik-test-{os.getpid()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    server.settimeout(2)
    n = Notifier("@" + name)
    assert n.notify("STATUS=x") and server.recv(100) == b"STATUS=x"
    server.close()


def test_watchdog_interval(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 2.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # armed for another process
    assert watchdog_interval() is None or os.getpid() == 1
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval() is None
