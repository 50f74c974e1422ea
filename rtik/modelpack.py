"""A model on disk: a folder with ``model.json`` (metadata) and ``step.onnx`` (the per-frame step).

See docs/architecture.md for the step's inputs and outputs. Loading validates everything it can without running
the model; the backends check the graph itself when they open it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtik.errors import ModelError, RtikError
from rtik.normalize import NormSpec
from rtik.skeleton import Skeleton

FORMAT = "rtik-modelpack"
FORMAT_VERSION = 1
META_FILE = "model.json"
#: where the shipped default model lives inside the package
DEFAULT_PACK = Path(__file__).resolve().parent / "models" / "default"


@dataclass(frozen=True, eq=False)
class ModelPack:
    """A loaded model pack.

    Fields:
        path: the pack's folder.
        name: model name.
        skeleton: output skeleton, offsets in metres.
        input_joints: names of the joints the network reads, in the order of its ``pos`` input.
        state_size: length ``S`` of the flat recurrent state per stream.
        norm: input normalisation.
        prior_local: ``(J, 4)`` mean local rotations over the training clips, XYZW.
        fps: frame rate the network was trained for (Hz).
        files: role -> file name inside ``path`` (``"onnx"``, optionally ``"torch"``).
        meta: the whole ``model.json`` (training, metrics, licence, ...).
    """

    path: Path
    name: str
    skeleton: Skeleton
    input_joints: tuple[str, ...]
    state_size: int
    norm: NormSpec
    prior_local: np.ndarray
    fps: float
    files: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def input_index(self) -> np.ndarray:
        """Skeleton index of each input joint ``(Ji,)``."""
        return self.skeleton.indices(self.input_joints)

    def file(self, role: str) -> Path:
        """Path of the pack's file for ``role``; the error lists the roles the pack has."""
        if role not in self.files:
            raise ModelError(f"model pack {self.path} has no {role!r} file; it has: {', '.join(self.files) or 'none'}")
        return self.path / self.files[role]


def load(path=None) -> ModelPack:
    """Load and validate the pack at ``path`` (a folder or its ``model.json``); ``None`` = the shipped default."""
    p = Path(path) if path is not None else DEFAULT_PACK
    if p.is_file() and p.name == META_FILE:
        p = p.parent
    meta_path = p / META_FILE
    if not meta_path.is_file():
        hint = " (the shipped default model is missing from this install)" if path is None else ""
        raise ModelError(f"no model pack at {p}: {META_FILE} not found{hint}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{meta_path}: cannot read model metadata: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{meta_path}: not an rtik model pack (format must be {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"{meta_path}: model pack format version {meta.get('format_version')!r} is not supported "
            f"(this rtik reads version {FORMAT_VERSION})"
        )
    try:
        skel = Skeleton.from_dict(meta["skeleton"])
        inputs = tuple(meta["input_joints"])
        skel.indices(inputs)
        state_size = int(meta["state_size"])
        norm = NormSpec.from_dict(meta.get("normalization", {}))
        for j in (norm.root, *norm.left, *norm.right, *norm.size_joints):
            if j not in inputs:
                raise ModelError(f"normalisation joint {j!r} is not an input joint")
        prior = np.asarray(meta.get("prior_local", np.tile([0.0, 0.0, 0.0, 1.0], (len(skel), 1))), dtype=np.float64)
        fps = float(meta.get("fps", 30.0))
        files = dict(meta.get("files", {"onnx": "step.onnx"}))
    except KeyError as e:
        raise ModelError(f"{meta_path}: missing key {e.args[0]!r}") from e
    except (TypeError, ValueError) as e:
        raise ModelError(f"{meta_path}: invalid value: {e}") from e
    except RtikError as e:
        raise ModelError(f"{meta_path}: {e}") from e
    if prior.shape != (len(skel), 4):
        raise ModelError(f"{meta_path}: prior_local has shape {prior.shape}, expected ({len(skel)}, 4)")
    if state_size <= 0:
        raise ModelError(f"{meta_path}: state_size must be positive, got {state_size}")
    if "onnx" not in files:
        raise ModelError(f"{meta_path}: files has no 'onnx' entry")
    for role, name in files.items():
        if not (p / name).is_file():
            raise ModelError(f"model pack {p}: {role} file {name!r} is missing")
    return ModelPack(p, str(meta.get("name", p.name)), skel, inputs, state_size, norm, prior, fps, files, meta)


def save(path, meta: dict, onnx_bytes: bytes, extra_files: dict[str, bytes] | None = None) -> ModelPack:
    """Write a pack: ``meta`` (without ``format``/``files``, which are filled in), the ONNX graph and any
    ``extra_files`` {role: bytes} (e.g. ``{"torch": ...}`` saved as ``step.pt2``). Returns the loaded pack."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    names = {"onnx": "step.onnx", "torch": "step.pt2"}
    files = {"onnx": names["onnx"]}
    (p / names["onnx"]).write_bytes(onnx_bytes)
    for role, data in (extra_files or {}).items():
        fname = names.get(role, f"{role}.bin")
        (p / fname).write_bytes(data)
        files[role] = fname
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta, "files": files}
    tmp = p / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(full, indent=1))
    os.replace(tmp, p / META_FILE)
    return load(p)
