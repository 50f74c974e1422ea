"""A small HTTP/1.1 and WebSocket (RFC 6455) server on asyncio, in a thread of its own: the transport of the live
view (:mod:`rtik.serve.web`) and of ``rtik view`` (docs/view.md).

Nothing here ever blocks the thread that hands it data: :meth:`WebServer.call` only schedules work on the server's
own event loop, and a message broadcast to the browsers is queued on each connection without waiting. A browser
whose unsent bytes pass ``max_buffer`` (a frozen, hidden or too slow tab) is disconnected. Everything a client
sends is read under hard limits: the request head (:data:`MAX_HEADER_BYTES`, :data:`HEADER_TIMEOUT`), the size of
a WebSocket message (:data:`MAX_MESSAGE_BYTES`, checked before its payload is read) and the rate of frames; a
client that breaks the protocol is closed with the matching status code and counted in :attr:`WebServer.dropped`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import socket
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from rtik.serve.security import SourceFilter, TokenBucket, is_loopback_host

log = logging.getLogger("rtik.web")

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
MAX_HEADER_BYTES = 8192  # request line and headers, at most
HEADER_TIMEOUT = 10.0  # s a client has to send its whole request head
MAX_MESSAGE_BYTES = 65536  # largest WebSocket message (all its fragments) a browser may send
FRAME_RATE = 100.0  # WebSocket frames per second a browser may send on average (bursts of 200); more: dropped
CHUNK = 65536  # bytes per read when a file is sent

_REASONS = {200: "OK", 101: "Switching Protocols", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 421: "Misdirected Request", 426: "Upgrade Required",
            431: "Request Header Fields Too Large", 503: "Service Unavailable"}  # fmt: skip


@dataclass(frozen=True)
class Response:
    """An HTTP response: ``body`` bytes, or the file at ``path`` streamed (``Content-Disposition`` = attachment)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    path: Path | None = None


class Handler:
    """What a :class:`WebServer` serves; every method runs on the server's thread."""

    def get(self, path: str, query: str) -> Response | None:
        """The response to ``GET path?query``; None = 404."""
        return None

    def connected(self, client: Client) -> None:
        """A WebSocket client connected (``/ws``)."""

    def message(self, client: Client, text: str) -> None:
        """A text message from a WebSocket client."""

    def disconnected(self, client: Client) -> None:
        """A WebSocket client left or was dropped."""


class _Drop(Exception):
    """A client is closed: ``code`` (WebSocket close status) and ``reason`` (the counter it goes to)."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


class Client:
    """One WebSocket connection; :meth:`send` queues a message without waiting (server thread only)."""

    def __init__(self, server: WebServer, writer: asyncio.StreamWriter, peer: str):
        self.server = server
        self.writer = writer
        self.peer = peer
        self.open = True
        self.sent = 0  # messages queued

    def send(self, data: bytes | str) -> bool:
        """Queue one message (str = text, bytes = binary). A client whose unsent bytes already pass the server's
        ``max_buffer`` is dropped instead (``slow``); False when the message was not queued."""
        if not self.open:
            return False
        t = self.writer.transport
        if t.is_closing():
            self.server._forget(self, None)
            return False
        if t.get_write_buffer_size() > self.server.max_buffer:
            self.server._forget(self, "slow")
            t.abort()
            return False
        binary = isinstance(data, bytes | bytearray | memoryview)
        payload = bytes(data) if binary else data.encode("utf-8")
        t.write(frame_header(0x2 if binary else 0x1, len(payload)) + payload)
        self.sent += 1
        return True

    def close(self, code: int = 1000) -> None:
        if self.open:
            self.server._forget(self, None)
            try:
                self.writer.transport.write(frame_header(0x8, 2) + struct.pack(">H", code))
            finally:
                self.writer.transport.close()


def frame_header(opcode: int, n: int) -> bytes:
    """The header of an unmasked, final server frame of ``n`` payload bytes."""
    if n < 126:
        return bytes((0x80 | opcode, n))
    if n < 1 << 16:
        return struct.pack(">BBH", 0x80 | opcode, 126, n)
    return struct.pack(">BBQ", 0x80 | opcode, 127, n)


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def _unmask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    m = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")


class WebServer:
    """Serves ``handler`` on ``host:port`` (0 = any free port; :attr:`port` has the bound one) from a thread named
    ``name``. ``allow``: a :class:`~rtik.serve.security.SourceFilter` of the peers allowed (None = any);
    ``max_clients``: WebSocket connections at once; ``max_buffer``: unsent bytes per client before it is dropped.

    Bound on loopback, requests must name a loopback host (``Host``), which keeps other web sites out through DNS
    rebinding; a WebSocket upgrade whose ``Origin`` is not the page's own host is refused (cross-site)."""

    def __init__(self, handler: Handler, host: str, port: int, max_clients: int = 32, max_buffer: int = 1 << 20,
                 allow: SourceFilter | None = None, name: str = "rtik-web"):  # fmt: skip
        self.handler = handler
        self.host, self.port = host, port
        self.max_clients, self.max_buffer = max_clients, max_buffer
        self.allow = allow
        self.name = name
        self.loopback = is_loopback_host(host)
        self.clients: list[Client] = []
        self.dropped: dict[str, int] = {}  # reason -> clients dropped
        self.requests = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server = None
        self._tasks: set = set()

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Bind and start the thread; OSError when the address cannot be bound."""
        self.loop = asyncio.new_event_loop()
        ready, failed = threading.Event(), []

        def run():
            asyncio.set_event_loop(self.loop)
            try:
                self._server = self.loop.run_until_complete(
                    asyncio.start_server(
                        self._connection, self.host, self.port, limit=MAX_HEADER_BYTES, reuse_address=True
                    )  # fmt: skip
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except OSError as e:
                failed.append(e)
                ready.set()
                self.loop.close()
                return
            ready.set()
            try:
                self.loop.run_forever()
            finally:
                self.loop.run_until_complete(self._shutdown())
                self.loop.close()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            self._thread.join()
            raise failed[0]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def call(self, fn, *args) -> None:
        """Run ``fn(*args)`` on the server's thread, soon; never waits (any thread)."""
        if self.loop is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # closed between the check and the call
                pass

    def every(self, period: float, fn) -> None:
        """Run ``fn()`` on the server's thread every ``period`` seconds (call from the server's thread)."""

        due = self.loop.time() + period

        def tick():
            nonlocal due
            try:
                fn()
            except Exception:  # one failing update must not end the updates
                log.exception("web: periodic update failed")
            due = max(due + period, self.loop.time())  # on a fixed grid; a late one is not made up for
            self.loop.call_at(due, tick)

        self.loop.call_at(due, tick)

    def stop(self) -> None:
        """Close every connection and the listening socket; end the thread. Idempotent."""
        if self._thread is None:
            return
        if self.loop is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self.loop.stop)
            except RuntimeError:
                pass
        self._thread.join(timeout=5.0)
        self._thread = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for c in list(self.clients):
            c.close(1001)
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def broadcast(self, data: bytes | str) -> int:
        """Queue ``data`` for every WebSocket client (server thread); the number it was queued for."""
        return sum(c.send(data) for c in list(self.clients))

    def _forget(self, client: Client, reason: str | None) -> None:
        if client.open:
            client.open = False
            if client in self.clients:
                self.clients.remove(client)
            if reason:
                self.dropped[reason] = self.dropped.get(reason, 0) + 1
                log.info("web: client %s dropped (%s)", client.peer, reason)
            try:
                self.handler.disconnected(client)
            except Exception:
                log.exception("web: disconnect handler failed")

    # ------------------------------------------------------------------------------------------------ HTTP
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        peer = writer.get_extra_info("peername") or ("?", 0)
        try:
            if self.allow is not None and not self.allow.allows(peer[0]):
                self._count("not_allowed")
                return
            await self._request(reader, writer, f"{peer[0]}:{peer[1]}")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort() if not writer.transport.is_closing() else None

    def _count(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    async def _request(self, reader, writer, peer: str) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT)
        except asyncio.LimitOverrunError:
            self._count("bad_request")
            return await self._reply(writer, Response(431, b"request head too large\n"))
        except (TimeoutError, asyncio.TimeoutError):
            self._count("timeout")
            return
        self.requests += 1
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
            if not version.startswith("HTTP/1."):
                raise ValueError(version)
            headers = {}
            for line in lines[1:]:
                if line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
        except ValueError:
            self._count("bad_request")
            return await self._reply(writer, Response(400, b"malformed request\n"))
        if method not in ("GET", "HEAD"):
            return await self._reply(writer, Response(405, b"only GET is served\n"))
        host = headers.get("host", "")
        if self.loopback and not is_loopback_host(urlsplit(f"//{host}").hostname or ""):
            self._count("bad_host")
            return await self._reply(writer, Response(421, b"this server answers to its loopback address only\n"))
        url = urlsplit(target)
        path = unquote(url.path)
        if path == "/ws":
            return await self._upgrade(reader, writer, headers, peer)
        try:
            resp = self.handler.get(path, url.query)
        except Exception:
            log.exception("web: GET %s failed", path)
            resp = Response(500, b"internal error\n")
        await self._reply(writer, resp or Response(404, b"not found\n"), head_only=method == "HEAD")

    async def _reply(self, writer, resp: Response, extra: str = "", head_only: bool = False) -> None:
        size = resp.path.stat().st_size if resp.path is not None else len(resp.body)
        hdr = (
            f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'Error')}\r\nContent-Type: {resp.content_type}\r\n"
            f"Content-Length: {size}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
            f"Connection: close\r\n{extra}"
        )
        if resp.path is not None:
            hdr += f'Content-Disposition: attachment; filename="{resp.path.name}"\r\n'
        writer.write((hdr + "\r\n").encode("latin-1"))
        if head_only:
            pass
        elif resp.path is None:
            writer.write(resp.body)
        else:
            with open(resp.path, "rb") as f:
                left = size  # a file that grows while it is sent (a recording in progress) is cut at its size
                while left > 0 and (chunk := f.read(min(CHUNK, left))):
                    writer.write(chunk)
                    left -= len(chunk)
                    await writer.drain()
        await writer.drain()
        writer.close()

    # ------------------------------------------------------------------------------------------- WebSocket
    async def _upgrade(self, reader, writer, headers: dict, peer: str) -> None:
        key = headers.get("sec-websocket-key", "")
        try:
            ok_key = len(base64.b64decode(key, validate=True)) == 16
        except ValueError:
            ok_key = False
        if (headers.get("upgrade", "").lower() != "websocket" or "upgrade" not in headers.get("connection", "").lower()
                or headers.get("sec-websocket-version") != "13" or not ok_key):  # fmt: skip
            self._count("bad_request")
            return await self._reply(writer, Response(426, b"a WebSocket upgrade (version 13) is expected here\n"),
                                     "Sec-WebSocket-Version: 13\r\n")  # fmt: skip
        origin = headers.get("origin")
        if origin is not None and urlsplit(origin).netloc.lower() != headers.get("host", "").lower():
            self._count("cross_origin")
            return await self._reply(writer, Response(403, b"cross-origin WebSocket refused\n"))
        if len(self.clients) >= self.max_clients:
            self._count("too_many")
            return await self._reply(writer, Response(503, b"too many viewers\n"))
        writer.write(
            (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n").encode("ascii")
        )  # fmt: skip
        sock = writer.get_extra_info("socket")
        if sock is not None:  # the kernel's share of a slow client's backlog, bounded too
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, min(self.max_buffer, 1 << 18))
        client = Client(self, writer, peer)
        self.clients.append(client)
        try:
            self.handler.connected(client)
            await self._messages(client, reader)
        except _Drop as d:
            if client.open:
                self._forget(client, d.reason)
                writer.transport.write(frame_header(0x8, 2) + struct.pack(">H", d.code))
                writer.transport.close()
        finally:
            self._forget(client, None)

    async def _messages(self, client: Client, reader: asyncio.StreamReader) -> None:
        """Read frames until the client closes; raise _Drop on anything outside the protocol or the limits."""
        bucket = TokenBucket(FRAME_RATE, 2 * FRAME_RATE)
        parts: list[bytes] = []
        kind = 0  # opcode of the message being assembled (1 text, 2 binary), 0 = none
        while client.open:
            b0, b1 = await reader.readexactly(2)
            if not bucket.take():
                raise _Drop(1008, "flood")
            fin, op, n = b0 & 0x80, b0 & 0x0F, b1 & 0x7F
            if b0 & 0x70 or not b1 & 0x80:
                raise _Drop(1002, "malformed")  # reserved bits, or a client frame that is not masked
            if n == 126:
                (n,) = struct.unpack(">H", await reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack(">Q", await reader.readexactly(8))
            if op >= 0x8:
                if not fin or n > 125 or op > 0xA:
                    raise _Drop(1002, "malformed")
            elif op not in (0x0, 0x1, 0x2) or (op == 0 and not kind) or (op and kind):
                raise _Drop(1002, "malformed")
            if n + sum(map(len, parts)) > MAX_MESSAGE_BYTES:
                raise _Drop(1009, "too_large")  # decided on the header: the payload is never read
            mask = await reader.readexactly(4)
            data = _unmask(await reader.readexactly(n), mask)
            if op == 0x8:
                client.close(1000)
                return
            if op == 0x9:
                client.writer.transport.write(frame_header(0xA, len(data)) + data)
                continue
            if op == 0xA:
                continue
            kind = kind or op
            parts.append(data)
            if not fin:
                continue
            payload, parts, was = b"".join(parts), [], kind
            kind = 0
            if was == 0x2:
                raise _Drop(1003, "malformed")  # the view speaks JSON text only
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise _Drop(1007, "malformed") from None
            self.handler.message(client, text)
