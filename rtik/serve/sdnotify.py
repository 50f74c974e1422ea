"""systemd's notify protocol without a dependency: datagrams to ``$NOTIFY_SOCKET`` (``READY=1``, ``WATCHDOG=1``,
``STOPPING=1``, ``STATUS=...``). Outside systemd, or on a system without AF_UNIX, every call is a no-op."""

from __future__ import annotations

import os
import socket


class Notifier:
    """Talks to the service manager if one is listening (``Type=notify`` units set ``$NOTIFY_SOCKET``)."""

    def __init__(self, address: str | None = None):
        addr = os.environ.get("NOTIFY_SOCKET") if address is None else address
        self.address = None
        self.sock = None
        if not addr or not hasattr(socket, "AF_UNIX"):
            return
        if addr.startswith("@"):  # abstract namespace socket
            addr = "\0" + addr[1:]
        try:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        except OSError:
            return
        self.address = addr

    @property
    def enabled(self) -> bool:
        return self.sock is not None

    def notify(self, message: str) -> bool:
        """Send ``message`` (e.g. ``"READY=1"``); False if not under systemd or the send failed."""
        if self.sock is None:
            return False
        try:
            self.sock.sendto(message.encode(), self.address)
        except OSError:
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings (half of ``$WATCHDOG_USEC``), or None when no watchdog is armed for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2e6, 0.01)
    except ValueError:
        return None
