"""The daemon's TOML configuration: frozen dataclasses, strict validation, and the effective config as TOML.

Every section and key is optional; defaults bind everything to 127.0.0.1 (ZeroMQ ingest 7700, pose feed 7701,
control 7702, OSC ingest 7703/udp, OSC output 7704/udp, VMC 39539/udp, Prometheus 7709 off, the live view 7710 in a
browser). An unknown key or a value of the wrong type raises :class:`~rtik.errors.ConfigError` naming the key and the
valid choices.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from rtik.errors import ConfigError
from rtik.solve.compiled import KERNELS
from rtik.solve.smooth import MAX_STAGES

BACKENDS = ("onnx", "torch", "tensorrt")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
RECORD_UNITS = ("cm", "m")


@dataclass(frozen=True)
class ModelConfig:
    path: str = ""  # model pack folder or a shipped name ("default", "landmarks"); "" = the shipped default
    backend: str = "onnx"  # one of BACKENDS
    kernels: str = "auto"  # solver pre/post-processing: auto, numba, numpy (rtik.solve.solver.SolverOptions)
    smooth: bool = True  # noise-gated smoothing of the output (rtik.solve.smooth): clean input passes untouched
    smooth_stages: int = 2  # its low-pass stages in series, 1..3: more = less jitter under noise, a little more lag
    gap_hold: float = 1.0  # s: a joint that drops out holds its offset from the joint above it (0 = off)
    spike: float = 0.02  # m: a joint whose bones all change length by more is a spike, held as missing (0 = off)
    hinge: bool = True  # bent knees and elbows turn about the pack's hinge axes (rtik.solve.refine.hinges)
    twist_prior: float = 1.0  # 0..1: the pack's twist_prior joints take the mean pose's twist (0 = the network's)


def solver_options(model: ModelConfig):
    """The :class:`rtik.solve.solver.SolverOptions` a ``[model]`` section asks for."""
    from rtik.solve.solver import SmoothConfig, SolverOptions

    smooth = SmoothConfig(stages=model.smooth_stages) if model.smooth else None
    opts = SolverOptions(
        kernels=model.kernels,
        smooth=smooth,
        gap_hold=model.gap_hold or None,
        spike=model.spike or None,
        twist_prior=model.twist_prior,
    )
    return opts if model.hinge else dataclasses.replace(opts, hinge=None)


@dataclass(frozen=True)
class ZmqIngestConfig:
    enabled: bool = True
    bind: str = "tcp://127.0.0.1:7700"  # PULL socket the sources PUSH to; "" = none (SUB only)
    connect: list = field(default_factory=list)  # SUB: endpoints of existing frame publishers
    hwm: int = 1000  # receive queue length (messages)


@dataclass(frozen=True)
class UdpConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 0


@dataclass(frozen=True)
class ZmqOutputConfig:
    enabled: bool = True
    bind: str = "tcp://127.0.0.1:7701"  # PUB socket of the pose feed
    hwm: int = 1000  # per-subscriber queue (messages); PUB drops beyond it
    skeleton_interval: float = 2.0  # s between skeleton messages on topic "_skeleton"; 0 = only on request


@dataclass(frozen=True)
class VmcConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 39539
    stream: str = ""  # stream that drives the avatar; "" = the first stream opened
    bundle: bool = True  # OSC bundles below 1400 bytes; false = one datagram per message (receivers without bundles)
    bones: dict = field(default_factory=dict)  # skeleton joint -> HumanBodyBones; {} = the model's default map


@dataclass(frozen=True)
class ControlConfig:
    enabled: bool = True
    bind: str = "tcp://127.0.0.1:7702"  # ROUTER socket for commands


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 7709  # HTTP, GET /metrics (Prometheus text format)
    allow: list = field(default_factory=list)  # scraper addresses or networks allowed when host is off loopback


@dataclass(frozen=True)
class WebConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 7710  # HTTP + WebSocket: the live view in a browser (docs/view.md)
    rate: float = 30.0  # updates pushed to each browser per second (the latest pose of every stream), 1..120
    allow: list = field(default_factory=list)  # browser addresses or networks allowed when host is off loopback
    max_clients: int = 32  # browser connections at once; more are refused (503)
    max_buffer: int = 1048576  # bytes waiting to reach one browser before it is dropped as too slow


@dataclass(frozen=True)
class RayConfig:
    enabled: bool = False  # solve on shards on a Ray cluster (pip install 'rtik[ray]'; docs/scale.md)
    address: str = ""  # the cluster's address (HOST:PORT); "" = a private local cluster on 127.0.0.1
    shards_per_node: int = 1  # shard actors started on every node (each a solver holding some streams)
    deadline: float = 0.01  # s a tick waits for a late shard; its frames then count as a gap
    snapshot_every: int = 60  # calls between snapshots of a shard's streams (re-seeding replays the rest)
    cpus_per_shard: float = 1.0  # logical CPUs each shard reserves on its node
    poll_nodes: float = 2.0  # s between checks for nodes that joined (they take streams) or left; 0 = never


@dataclass(frozen=True)
class StreamsConfig:
    max_streams: int = 16  # streams opened automatically on their first frame, at most
    fps: float = 0.0  # nominal input rate passed to the solver; 0 = the model's
    idle_timeout: float = 30.0  # s without frames after which a stream is closed; 0 = never
    queue: int = 64  # frames waiting per stream, at most; when full the oldest is dropped (superseded); 1 = latest only
    max_wait: float = 0.05  # s a frame may wait behind a newer one before it is dropped (superseded); 0 = no limit


@dataclass(frozen=True)
class RecordingConfig:
    folder: str = "recordings"  # BVH recordings go here (names cannot leave it)
    units: str = "cm"  # "cm" (like the source mocap and most DCC tools) or "m"
    streams: list = field(default_factory=list)  # streams recorded from their first frame; ["*"] = all
    flush_interval: float = 1.0  # s between flushes to disk, at most
    rigs: dict = field(default_factory=dict)  # name -> BVH file: rigs a recording can be written in
    rig: str = ""  # the rig recordings are written in unless `record start --rig` says otherwise; "" = the model's


@dataclass(frozen=True)
class LimitsConfig:
    max_message_bytes: int = 65536  # largest ZeroMQ message / OSC datagram accepted (ZMQ_MAXMSGSIZE)
    max_rate: float = 0.0  # frames per second accepted per stream (token bucket); 0 = no limit


@dataclass(frozen=True)
class SecurityConfig:
    insecure: bool = False  # allow binding off loopback without CurveZMQ keys (logged as a warning)
    server_key: str = ""  # the server's secret key file (rtik keys generate); "" = no CurveZMQ
    clients: str = ""  # folder of the allowed clients' public key files (*.key)
    osc_allow: list = field(default_factory=list)  # source addresses or networks allowed to send OSC frames


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    format: str = "text"  # "text" or "json" (one object per line)


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    zmq_in: ZmqIngestConfig = field(default_factory=ZmqIngestConfig)
    osc_in: UdpConfig = field(default_factory=lambda: UdpConfig(port=7703))
    zmq_out: ZmqOutputConfig = field(default_factory=ZmqOutputConfig)
    osc_out: UdpConfig = field(default_factory=lambda: UdpConfig(port=7704))
    vmc: VmcConfig = field(default_factory=VmcConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    web: WebConfig = field(default_factory=WebConfig)
    streams: StreamsConfig = field(default_factory=StreamsConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    log: LogConfig = field(default_factory=LogConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)


#: TOML table -> Config field
SECTIONS = {
    "model": "model", "ingest.zmq": "zmq_in", "ingest.osc": "osc_in", "output.zmq": "zmq_out",
    "output.osc": "osc_out", "output.vmc": "vmc", "control": "control", "metrics": "metrics", "web": "web",
    "streams": "streams", "recording": "recording", "log": "log", "limits": "limits", "security": "security",
    "ray": "ray",
}  # fmt: skip


def _build(cls, table: dict, where: str, base=None):
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table")
    base = base if base is not None else cls()
    names = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, val in table.items():
        if key not in names:
            raise ConfigError(f"unknown key {key!r} in [{where}]; valid keys: {', '.join(names)}")
        want = type(getattr(base, key))
        if want is float and isinstance(val, int) and not isinstance(val, bool):
            val = float(val)
        if not isinstance(val, want) or (want is int and isinstance(val, bool)):
            raise ConfigError(f"[{where}] {key} must be a {want.__name__}, got {val!r}")
        values[key] = val
    return dataclasses.replace(base, **values)


def from_dict(doc: dict) -> Config:
    """A validated :class:`Config` from a parsed TOML document."""
    tables = {}
    for top, val in doc.items():
        if top in ("ingest", "output") and isinstance(val, dict):
            for sub, t in val.items():
                tables[f"{top}.{sub}"] = t
        else:
            tables[top] = val
    parts = {}
    default = Config()
    for name, table in tables.items():
        if name not in SECTIONS:
            raise ConfigError(f"unknown section [{name}]; valid sections: {', '.join(f'[{s}]' for s in SECTIONS)}")
        attr = SECTIONS[name]
        base = getattr(default, attr)
        parts[attr] = _build(type(base), table, name, base)
    cfg = dataclasses.replace(default, **parts)
    validate(cfg)
    return cfg


def load(path=None) -> Config:
    """The config in ``path`` (TOML), or the defaults when ``path`` is None."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read config {p}: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from e
    try:
        return from_dict(doc)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from e


def validate(cfg: Config) -> None:
    """Cross-field checks: choices, port ranges, positive limits."""
    _choice("model", "backend", cfg.model.backend, BACKENDS)
    _choice("model", "kernels", cfg.model.kernels, KERNELS)
    if not 1 <= cfg.model.smooth_stages <= MAX_STAGES:
        raise ConfigError(f"[model] smooth_stages must be in 1..{MAX_STAGES}, got {cfg.model.smooth_stages}")
    for key in ("gap_hold", "spike"):
        v = getattr(cfg.model, key)
        if not (v >= 0 and v < float("inf")):
            raise ConfigError(f"[model] {key} must be a finite number >= 0 (0 = off), got {v}")
    if not 0.0 <= cfg.model.twist_prior <= 1.0:
        raise ConfigError(
            f"[model] twist_prior must be within 0..1 (0 = the network's twists), got {cfg.model.twist_prior}"
        )
    _choice("recording", "units", cfg.recording.units, RECORD_UNITS)
    _choice("log", "level", cfg.log.level, LOG_LEVELS)
    _choice("log", "format", cfg.log.format, LOG_FORMATS)
    for where, sec in (("ingest.osc", cfg.osc_in), ("output.osc", cfg.osc_out), ("output.vmc", cfg.vmc),
                       ("metrics", cfg.metrics), ("web", cfg.web)):  # fmt: skip
        if not 0 < sec.port < 65536:
            raise ConfigError(f"[{where}] port must be in 1..65535, got {sec.port}")
    binds = [("ingest.zmq", cfg.zmq_in.bind)] if cfg.zmq_in.bind else []  # "" = no PULL socket (SUB only)
    for where, ep in (*binds, ("output.zmq", cfg.zmq_out.bind), ("control", cfg.control.bind),
                      *(("ingest.zmq", c) for c in cfg.zmq_in.connect)):  # fmt: skip
        if not isinstance(ep, str) or "://" not in ep:
            raise ConfigError(f"[{where}] endpoint {ep!r} must look like tcp://HOST:PORT or ipc://PATH")
    if cfg.streams.queue < 1:
        raise ConfigError(f"[streams] queue must be at least 1, got {cfg.streams.queue}")
    if cfg.streams.max_streams < 1:
        raise ConfigError(f"[streams] max_streams must be at least 1, got {cfg.streams.max_streams}")
    if min(cfg.streams.fps, cfg.streams.idle_timeout, cfg.streams.max_wait, cfg.zmq_out.skeleton_interval) < 0:
        raise ConfigError("[streams] fps, idle_timeout, max_wait and [output.zmq] skeleton_interval cannot be negative")
    if cfg.recording.flush_interval <= 0 or cfg.recording.flush_interval > 1.0:
        raise ConfigError(f"[recording] flush_interval must be in (0, 1] s, got {cfg.recording.flush_interval}")
    if cfg.zmq_in.hwm < 1 or cfg.zmq_out.hwm < 1:
        raise ConfigError("[ingest.zmq] and [output.zmq] hwm must be at least 1")
    if not all(isinstance(s, str) for s in cfg.recording.streams):
        raise ConfigError('[recording] streams must be a list of stream names (or ["*"])')
    if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in cfg.recording.rigs.items()):
        raise ConfigError("[recording] rigs must map rig names to BVH file paths (strings)")
    if cfg.recording.rig and cfg.recording.rig not in cfg.recording.rigs:
        known = ", ".join(cfg.recording.rigs) or "none"
        raise ConfigError(f"[recording] rig {cfg.recording.rig!r} is not one of [recording] rigs ({known})")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in cfg.vmc.bones.items()):
        raise ConfigError("[output.vmc] bones must map joint names to HumanBodyBones names (strings)")
    _validate_limits(cfg)
    _validate_ray(cfg.ray)
    _validate_web(cfg.web)
    _validate_allow("[metrics] allow", cfg.metrics.allow)


def _validate_web(web: WebConfig) -> None:
    """[web]: whether its host may be off loopback is decided when the daemon starts (rtik.serve.web)."""
    if not 1.0 <= web.rate <= 120.0:
        raise ConfigError(f"[web] rate must be in 1..120 updates per second, got {web.rate}")
    if web.max_clients < 1:
        raise ConfigError(f"[web] max_clients must be at least 1, got {web.max_clients}")
    if web.max_buffer < 16384:
        raise ConfigError(f"[web] max_buffer must be at least 16384 bytes, got {web.max_buffer}")
    _validate_allow("[web] allow", web.allow)


def _validate_allow(what: str, allow) -> None:
    if not isinstance(allow, list):
        raise ConfigError(f"{what} must be a list of IP addresses or networks, got {allow!r}")
    for a in allow:
        try:
            ipaddress.ip_network(a, strict=False)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{what} entry {a!r} is not an IP address or network (e.g. 10.0.0.7, 10.0.0.0/24)"
            ) from None


def _validate_limits(cfg: Config) -> None:
    """[limits] and [security]; whether a bind needs keys is decided when the daemon starts (rtik.serve.security)."""
    if not 1024 <= cfg.limits.max_message_bytes <= 1 << 24:
        raise ConfigError(f"[limits] max_message_bytes must be in 1024..16777216, got {cfg.limits.max_message_bytes}")
    if not 0 <= cfg.limits.max_rate < float("inf"):
        raise ConfigError(f"[limits] max_rate must be a finite number >= 0 (0 = no limit), got {cfg.limits.max_rate}")
    sec = cfg.security
    if bool(sec.server_key) != bool(sec.clients):
        raise ConfigError("[security] server_key and clients go together: set both (CurveZMQ) or neither")
    for a in sec.osc_allow:
        try:
            ipaddress.ip_network(a, strict=False)
        except (TypeError, ValueError):
            raise ConfigError(
                f"[security] osc_allow entry {a!r} is not an IP address or network (e.g. 10.0.0.7, 10.0.0.0/24)"
            ) from None


def _validate_ray(r: RayConfig) -> None:
    if r.shards_per_node < 1 or r.snapshot_every < 1:
        raise ConfigError("[ray] shards_per_node and snapshot_every must be at least 1")
    if not 0 < r.deadline <= 1.0:
        raise ConfigError(f"[ray] deadline must be in (0, 1] s, got {r.deadline}")
    if r.cpus_per_shard < 0 or r.poll_nodes < 0:
        raise ConfigError("[ray] cpus_per_shard and poll_nodes cannot be negative")


def _choice(where: str, key: str, val, valid) -> None:
    if val not in valid:
        raise ConfigError(f"[{where}] {key} = {val!r} is not valid; choose one of: {', '.join(valid)}")


def to_toml(cfg: Config) -> str:
    """The effective config as TOML (every key, with defaults filled in); ``load`` reads it back identically."""
    out = []
    for table, attr in SECTIONS.items():
        out.append(f"[{table}]")
        for f in dataclasses.fields(getattr(cfg, attr)):
            out.append(f"{f.name} = {_toml_value(getattr(getattr(cfg, attr), f.name))}")
        out.append("")
    return "\n".join(out)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_value(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise ConfigError(f"cannot write {v!r} as TOML")
