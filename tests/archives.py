"""Test archives: a tar.xz written from in-memory members, as the mocap archives are read."""

from __future__ import annotations

import io
import tarfile


def write_tar(path, members) -> None:
    """Write ``members`` (``(name, bytes)`` pairs) to the tar.xz archive ``path``."""
    with tarfile.open(path, "w:xz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
