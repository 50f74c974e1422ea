"""Who may talk to the daemon, and how much: the loopback rule, CurveZMQ keys, OSC source allow-lists and the
per-stream rate limit (docs/reliability.md).

- Every socket binds ``127.0.0.1`` by default. Binding a ZeroMQ socket anywhere else needs CurveZMQ (a server key
  pair and a folder of allowed client public keys, ``[security] server_key`` / ``clients``) or an explicit
  ``insecure = true`` (``rtik serve --insecure``), which is logged as a warning. OSC (UDP, no encryption) off
  loopback needs ``[security] osc_allow`` (source addresses or networks) or ``insecure``.
- With CurveZMQ every bound socket (ingest PULL, pose feed PUB, control ROUTER) is a CurveZMQ server; a
  ``zmq.auth`` authenticator thread admits only clients whose public key is in the ``clients`` folder: a client
  with another key completes no handshake, so nothing it sends arrives and it receives nothing.
- Key files are those of ``zmq.auth.create_certificates`` (``NAME.key`` public, ``NAME.key_secret`` both halves),
  written by ``rtik keys generate``.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import zmq

from rtik.errors import ConfigError

log = logging.getLogger("rtik.security")

_LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1``; False for anything else (``0.0.0.0``, ``*``, names)."""
    h = host.strip().strip("[]").lower()
    if h in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for ``tcp://`` endpoints on a loopback address and for ``ipc://`` / ``inproc://`` (local only)."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = rest.rsplit(":", 1)[0]
    if ";" in host:  # "source;destination" form: the destination decides
        host = host.split(";", 1)[1]
    return is_loopback_host(host)


def exposed(cfg) -> tuple[list[str], list[str]]:
    """``(zmq, osc)``: descriptions of the enabled ZeroMQ binds and the OSC ingest socket that are off loopback."""
    zmq_binds = []
    if cfg.zmq_in.enabled and cfg.zmq_in.bind:
        zmq_binds.append(("ingest.zmq", cfg.zmq_in.bind))
    if cfg.zmq_out.enabled:
        zmq_binds.append(("output.zmq", cfg.zmq_out.bind))
    if cfg.control.enabled:
        zmq_binds.append(("control", cfg.control.bind))
    z = [f"[{w}] bind = {ep!r}" for w, ep in zmq_binds if not is_loopback_endpoint(ep)]
    osc_off = cfg.osc_in.enabled and not is_loopback_host(cfg.osc_in.host)
    return z, [f"[ingest.osc] host = {cfg.osc_in.host!r}"] if osc_off else []


# ------------------------------------------------------------------------------------------------------ keys
def load_keypair(path) -> tuple[bytes, bytes]:
    """``(public, secret)`` Z85 keys from a ``NAME.key_secret`` file; ConfigError if it holds no secret key."""
    pub, sec = _load(path)
    if not sec:
        raise ConfigError(f"{path}: holds no secret key (use the NAME.key_secret file of `rtik keys generate`)")
    return pub, sec


def load_public(key) -> bytes:
    """A public key: a ``NAME.key`` / ``NAME.key_secret`` file, or the 40-character Z85 text itself."""
    text = str(key).strip()
    if len(text) == 40 and not Path(text).exists():
        from zmq.utils import z85

        try:
            z85.decode(text)
        except (ValueError, KeyError):
            raise ConfigError(f"{text!r} is neither a key file nor a 40-character Z85 public key") from None
        return text.encode("ascii")
    return _load(key)[0]


def _load(path) -> tuple[bytes, bytes | None]:
    import zmq.auth

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"key file {p} not found (create one with `rtik keys generate DIR`)")
    try:
        pub, sec = zmq.auth.load_certificate(p)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not a ZeroMQ certificate file: {e}") from e
    if not pub or len(pub) != 40:
        raise ConfigError(f"{p}: holds no valid public key")
    return pub, sec or None


@dataclass(frozen=True)
class ClientKeys:
    """What a client needs to talk to a daemon that uses CurveZMQ: the server's public key and its own pair."""

    server_public: bytes
    public: bytes
    secret: bytes

    def options(self) -> dict:
        """Socket options making a socket a CurveZMQ client (set before connect)."""
        return {zmq.CURVE_SERVERKEY: self.server_public, zmq.CURVE_PUBLICKEY: self.public,
                zmq.CURVE_SECRETKEY: self.secret}  # fmt: skip


def client_keys(server_key, key) -> ClientKeys | None:
    """ClientKeys from the server's public key (file or Z85) and the client's ``.key_secret`` file; None if both
    are empty; ConfigError if only one is given."""
    if not server_key and not key:
        return None
    if not server_key or not key:
        raise ConfigError("CurveZMQ needs both the server's public key (--server-key) and your key pair (--key)")
    pub, sec = load_keypair(key)
    return ClientKeys(load_public(server_key), pub, sec)


def add_client_args(parser) -> None:
    """``--server-key`` and ``--key`` options of the client commands (send, listen, ctl)."""
    parser.add_argument("--server-key", metavar="KEY", help="the daemon's public key (file or Z85) for CurveZMQ")
    parser.add_argument("--key", metavar="FILE", help="your key pair (NAME.key_secret of `rtik keys generate`)")


def client_keys_from_args(args) -> ClientKeys | None:
    return client_keys(getattr(args, "server_key", None), getattr(args, "key", None))


# --------------------------------------------------------------------------------------------------- allow-list
class SourceFilter:
    """Source addresses allowed to send datagrams: IP addresses or networks (``10.0.0.7``, ``10.0.0.0/24``)."""

    def __init__(self, allow):
        try:
            self.networks = [ipaddress.ip_network(a, strict=False) for a in allow]
        except (TypeError, ValueError) as e:
            raise ConfigError(f"[security] osc_allow: {e}") from e

    def allows(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in n for n in self.networks)


class TokenBucket:
    """Rate limit: ``rate`` events per second on average, bursts of ``burst`` (default a tenth of a second's
    worth, at least 2). ``take()`` is False when over the limit."""

    __slots__ = ("rate", "burst", "tokens", "last")

    def __init__(self, rate: float, burst: float | None = None):
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(2.0, 0.1 * rate))
        self.tokens = self.burst
        self.last = time.monotonic()

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def metrics_filter(cfg):
    """The clients ``/metrics`` answers: None (any) on loopback or under ``insecure`` without a list, else the
    ``[metrics] allow`` filter. ConfigError for a host off loopback with neither (stream names and counters would
    be readable by anyone who reaches the port)."""
    m = cfg.metrics
    allow = SourceFilter(m.allow) if m.allow else None
    if not is_loopback_host(m.host) and allow is None:
        if not cfg.security.insecure:
            raise ConfigError(
                f"refusing /metrics off loopback without an allow-list: [metrics] host = {m.host!r}. List the "
                'scrapers in [metrics] allow (e.g. ["10.0.0.5"]) or use `rtik serve --insecure`'
            )
        log.warning("INSECURE: /metrics on %s:%d answers any address ([metrics] allow is empty)", m.host, m.port)
    return allow


# ------------------------------------------------------------------------------------------------------ guard
class Guard:
    """The daemon's access rules, checked and set up when it starts.

    Raises ConfigError for a bind off loopback without CurveZMQ or ``insecure``, for unreadable keys, or an OSC
    socket or ``/metrics`` off loopback without an allow-list (or ``insecure``). With CurveZMQ configured, an
    authenticator thread runs on ``ctx`` until :meth:`stop`."""

    def __init__(self, cfg, ctx: zmq.Context):
        self.max_bytes = cfg.limits.max_message_bytes
        sec = cfg.security
        zmq_out, osc_out = exposed(cfg)
        self.curve = bool(sec.server_key)
        if zmq_out and not self.curve and not sec.insecure:
            raise ConfigError(
                "refusing to bind off loopback without authentication: " + "; ".join(zmq_out) + ". Configure "
                "CurveZMQ ([security] server_key and clients, see `rtik keys generate`) or accept anyone who can "
                "reach the port with `rtik serve --insecure` ([security] insecure = true)"
            )
        if osc_out and not sec.osc_allow and not sec.insecure:
            raise ConfigError(
                f"refusing OSC off loopback without an allow-list: {osc_out[0]}. List the senders' addresses in "
                '[security] osc_allow (e.g. ["10.0.0.7", "10.0.0.0/24"]) or use `rtik serve --insecure`'
            )
        self.osc_filter = SourceFilter(sec.osc_allow) if sec.osc_allow else None
        self.metrics_allow = metrics_filter(cfg) if cfg.metrics.enabled else None
        self.auth = None
        self._server: dict = {}
        if self.curve:
            if not zmq.has("curve"):
                raise ConfigError("[security] server_key is set but this libzmq has no CurveZMQ support")
            pub, secret = load_keypair(sec.server_key)
            clients = Path(sec.clients)
            if not clients.is_dir():
                raise ConfigError(f"[security] clients: folder {clients} not found (it holds the allowed *.key files)")
            n = len(list(clients.glob("*.key")))
            from zmq.auth.thread import ThreadAuthenticator

            self.auth = ThreadAuthenticator(ctx, log=logging.getLogger("rtik.auth"))
            self.auth.start()
            self.auth.configure_curve(domain="*", location=str(clients))
            self._server = {zmq.CURVE_SERVER: 1, zmq.CURVE_PUBLICKEY: pub, zmq.CURVE_SECRETKEY: secret}
            log.info("CurveZMQ on: server key %s, %d allowed client key(s) in %s", pub.decode(), n, clients)
            if n == 0:
                log.warning("CurveZMQ: no client keys in %s: no client can connect", clients)
        elif sec.insecure and zmq_out:
            log.warning("=" * 100)
            log.warning(
                "INSECURE: %s without authentication: anyone who can reach these ports can send frames, read "
                "poses and drive the daemon (record, reset). Firewall them.", "; ".join(zmq_out),
            )  # fmt: skip
            log.warning("=" * 100)
        if osc_out and self.osc_filter is None:
            log.warning("INSECURE: %s accepts OSC frames from any address ([security] osc_allow is empty)", osc_out[0])

    def server_options(self) -> dict:
        """Options of a bound socket: the message size limit and, with CurveZMQ, the server keys."""
        return {zmq.MAXMSGSIZE: self.max_bytes, **self._server}

    def connect_options(self) -> dict:
        """Options of the SUB socket that connects to frame publishers (the size limit)."""
        return {zmq.MAXMSGSIZE: self.max_bytes}

    def osc_allows(self, address) -> bool:
        """True if a datagram from ``address`` (``recvfrom``'s ``(host, port, ...)``) may be read."""
        return self.osc_filter is None or self.osc_filter.allows(address[0])

    def stop(self) -> None:
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
