"""``rtik keys``: CurveZMQ key pairs for the daemon and its clients (docs/reliability.md#access).

    rtik keys generate keys/                 # keys/server.key (public) + keys/server.key_secret (keep private)
    rtik keys generate keys/clients --name stage-pc
    rtik keys show keys/server.key           # the public key (Z85), to give to clients
    rtik keys show keys/clients              # every key in a folder
    rtik keys show --config rtik.toml        # the daemon's public key and the clients it allows

The daemon: ``[security] server_key = "keys/server.key_secret"`` and ``clients = "keys/clients"`` (the allowed
clients' ``*.key`` files). A client: ``--server-key keys/server.key --key stage-pc.key_secret``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from rtik.errors import ConfigError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def register(sub) -> None:
    p = sub.add_parser("keys", help="CurveZMQ key pairs: generate, show")
    cmds = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    g = cmds.add_parser("generate", help="write NAME.key (public) and NAME.key_secret (private) into DIR")
    g.add_argument("dir", metavar="DIR", help="folder for the key files (created)")
    g.add_argument("--name", default="server", help="file name stem (default: %(default)s)")
    s = cmds.add_parser("show", help="print the public key of a key file, or of every key file in a folder")
    s.add_argument("path", metavar="PATH", nargs="?", help="a NAME.key or NAME.key_secret file, or a folder of them")
    s.add_argument("--config", metavar="TOML", help="instead: the server key and allowed clients of this config")
    p.set_defaults(func=run)


def generate(folder, name: str = "server") -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` (mode 0600) into ``folder``; never overwrites."""
    import zmq.auth

    if not _NAME_RE.match(name):
        raise ConfigError(f"invalid key name {name!r}: use 1-64 characters from A-Z a-z 0-9 _ . - (no folders)")
    d = Path(folder)
    pub, sec = d / f"{name}.key", d / f"{name}.key_secret"
    for f in (pub, sec):
        if f.exists():
            raise ConfigError(f"{f} exists; choose another --name or folder (keys are never overwritten)")
    try:
        d.mkdir(parents=True, exist_ok=True)
        old = os.umask(0o077)  # the secret file is created private, not made private afterwards
        try:
            pub_file, sec_file = zmq.auth.create_certificates(d, name)
        finally:
            os.umask(old)
        os.chmod(pub_file, 0o644)
    except OSError as e:
        raise ConfigError(f"cannot write keys into {d}: {e.strerror or e}") from e
    return Path(pub_file), Path(sec_file)


def describe(path) -> list[tuple[str, str, bool]]:
    """``[(file, public key Z85, has secret)]`` of a key file or of every ``*.key``/``*.key_secret`` in a folder."""
    from rtik.serve.security import _load

    p = Path(path)
    files = sorted([*p.glob("*.key"), *p.glob("*.key_secret")]) if p.is_dir() else [p]
    if p.is_dir() and not files:
        raise ConfigError(f"no *.key or *.key_secret files in {p}")
    out = []
    for f in files:
        pub, sec = _load(f)
        out.append((str(f), pub.decode("ascii"), sec is not None))
    return out


def run(args) -> int:
    if args.keys_command == "generate":
        pub, sec = generate(args.dir, args.name)
        from rtik.serve.security import load_public

        print(f"public key  {load_public(pub).decode()}\n  {pub}  (give this file to the other side)\n"
              f"  {sec}  (private: keep it on this machine only)")  # fmt: skip
        return 0
    if args.path:
        paths = [args.path]
    elif args.config:
        from rtik.serve import config

        sec = config.load(args.config).security
        if not sec.server_key:
            raise ConfigError(f"{args.config}: no [security] server_key (CurveZMQ is off)")
        paths = [sec.server_key, sec.clients]
    else:
        raise ConfigError("rtik keys show needs a key file or folder, or --config TOML")
    for path in paths:
        for f, pub, has_secret in describe(path):
            print(f"{pub}  {f}{'  (with secret key)' if has_secret else ''}")
    return 0
