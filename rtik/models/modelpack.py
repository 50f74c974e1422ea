"""A model on disk: a folder with ``model.json`` (metadata) and ``step.onnx`` (the per-frame step).

See docs/architecture.md for the step's inputs and outputs. Loading validates the metadata and the ONNX graph's
opset and input/output signature (read straight from the protobuf, so no ``onnx`` package is needed at runtime)
without running the model.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtik.errors import ModelError, RtikError
from rtik.formats import markers as mk
from rtik.geometry.skeleton import Skeleton
from rtik.models.normalize import NormSpec

FORMAT = "rtik-modelpack"
FORMAT_VERSION = 1
META_FILE = "model.json"
#: ONNX default-domain opsets the runtime accepts (ORT 1.17+ runs them; TensorRT 10 parses 13 and later)
MIN_OPSET, MAX_OPSET = 13, 25
#: the step's inputs and outputs in order; ``B`` is the dynamic batch, ``Ji``/``J``/``S`` come from the pack
#: (``Ji`` = input rows: the input joints, then the leaf markers if the pack takes any)
STEP_INPUTS = (("pos", ("B", "Ji", 3)), ("mask", ("B", "Ji")), ("state", ("B", "S")))
STEP_OUTPUTS = (("rot6d", ("B", "J", 6)), ("pos_clean", ("B", "Ji", 3)), ("state_out", ("B", "S")))
#: where the shipped default model lives inside the package
DEFAULT_PACK = Path(__file__).resolve().parent / "default"
#: the packs shipped inside the package, by the name ``--model`` / ``[model] path`` accept for them: ``default``
#: (joint positions: mocap, BVH) and ``landmarks`` (a pose estimator's points: ``rtik video``, ``rtik capture``)
SHIPPED = {"default": DEFAULT_PACK, "landmarks": DEFAULT_PACK.parent / "landmarks"}


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
        markers: leaf markers (:mod:`rtik.formats.markers`) the network reads after the input joints, masked
            when a stream does not have them; empty for a pack that reads joints only.
        leaf_prior: how far the solver turns each leaf's (head, hands, toes) local rotation from the network's
            towards ``prior_local``, 0..1 (``model.json`` ``leaf_prior``, 0 when absent): a leaf's orientation is not
            in joint positions, and on performers it was not trained on a network's guess can be worse than the mean.
        hinges: joint name -> ``(3,)`` unit axis in its parent's frame: the joint's local rotation is a turn about
            this axis (knees, elbows; ``model.json`` ``hinges``, the mean axis of the training clips' bent joints,
            :mod:`train.hinges`), so that a bent limb's plane fixes its upper bone's twist (docs/solver.md).
        twist_prior: names of joints whose twist about their own bone the solver takes from the mean pose
            (``prior_local`` swung onto the observed bone) instead of the network's (``model.json``
            ``twist_prior``, none when absent): positions do not show that twist, and on performers it was not
            trained on the network's guess for these joints was worse than the mean pose's (docs/solver.md).
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
    markers: tuple[str, ...] = ()
    leaf_prior: float = 0.0
    hinges: dict = field(default_factory=dict)
    twist_prior: tuple[str, ...] = ()

    @property
    def input_rows(self) -> tuple[str, ...]:
        """Names of the step's ``pos`` rows: the input joints, then the markers."""
        return self.input_joints + self.markers

    @property
    def input_index(self) -> np.ndarray:
        """Skeleton index of each input joint ``(Ji,)``."""
        return self.skeleton.indices(self.input_joints)

    def step_shapes(self) -> dict[str, tuple[int | str, ...]]:
        """Expected shape of every step input and output by name, ``"B"`` for the dynamic batch."""
        dims = {"Ji": len(self.input_rows), "J": len(self.skeleton), "S": self.state_size}
        return {n: tuple(dims.get(d, d) for d in shape) for n, shape in (*STEP_INPUTS, *STEP_OUTPUTS)}

    def digest(self) -> str:
        """Short content hash of the pack (model.json + ONNX graph), the key of its compiled engines."""
        h = hashlib.sha256()
        for f in (META_FILE, self.files["onnx"]):
            h.update((self.path / f).read_bytes())
        return h.hexdigest()[:16]

    def file(self, role: str) -> Path:
        """Path of the pack's file for ``role``; the error lists the roles the pack has."""
        if role not in self.files:
            raise ModelError(f"model pack {self.path} has no {role!r} file; it has: {', '.join(self.files) or 'none'}")
        return self.path / self.files[role]


def load(path=None) -> ModelPack:
    """Load and validate the pack at ``path`` (a folder or its ``model.json``); ``None`` = the shipped default; a
    name of :data:`SHIPPED` that is not a folder here = that shipped pack."""
    p = Path(path) if path is not None else DEFAULT_PACK
    if path is not None and str(path) in SHIPPED and not p.exists():
        p = SHIPPED[str(path)]
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
        markers = tuple(str(m) for m in meta.get("markers", ()))
        leaf_prior = float(meta.get("leaf_prior", 0.0))
        if not 0.0 <= leaf_prior <= 1.0:
            raise ModelError(f"leaf_prior must be within 0..1, got {leaf_prior}")
        hinges = _hinges(meta.get("hinges", {}), skel)
        twist_prior = _twist_prior(meta.get("twist_prior", []), skel)
        for m in markers:
            if m not in mk.BY_NAME:
                raise ModelError(f"unknown marker {m!r}; markers: {', '.join(mk.NAMES)}")
            if mk.BY_NAME[m].parent not in inputs:
                raise ModelError(f"marker {m!r}: its joint {mk.BY_NAME[m].parent!r} is not an input joint")
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
    pack = ModelPack(
        p,
        str(meta.get("name", p.name)),
        skel,
        inputs,
        state_size,
        norm,
        prior,
        fps,
        files,
        meta,
        markers,
        leaf_prior,
        hinges,
        twist_prior,
    )
    check_onnx(pack.file("onnx"), pack.step_shapes())
    return pack


def _hinges(spec, skel: Skeleton) -> dict[str, np.ndarray]:
    """``model.json`` ``hinges`` ``{joint: [x, y, z]}`` -> ``{joint: unit axis}``; a joint must have a parent and
    an axis must be three finite numbers, not zero."""
    if not isinstance(spec, dict):
        raise ModelError(f"hinges must be a mapping of joint names to axes, got {type(spec).__name__}")
    out = {}
    for name, axis in spec.items():
        j = skel.index(name)
        if skel.parents[j] < 0:
            raise ModelError(f"hinge {name!r}: the root has no parent to turn against")
        a = np.asarray(axis, dtype=np.float64)
        if a.shape != (3,) or not np.isfinite(a).all() or np.linalg.norm(a) < 1e-6:
            raise ModelError(f"hinge {name!r}: the axis must be three finite numbers, not all zero; got {axis!r}")
        out[str(name)] = a / np.linalg.norm(a)
    return out


def _twist_prior(spec, skel: Skeleton) -> tuple[str, ...]:
    """``model.json`` ``twist_prior`` ``[joint, ...]`` -> the names; each joint must have a parent and a child
    bone (a twist about that bone), and appear once."""
    if not isinstance(spec, (list, tuple)) or not all(isinstance(n, str) for n in spec):
        raise ModelError(f"twist_prior must be a list of joint names, got {spec!r}")
    for name in spec:
        j = skel.index(name)
        if skel.parents[j] < 0 or not skel.bone_children(j):
            raise ModelError(f"twist_prior {name!r}: needs a parent and a child bone to twist about")
    if len(set(spec)) != len(spec):
        raise ModelError(f"twist_prior lists a joint twice: {list(spec)}")
    return tuple(spec)


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


# ------------------------------------------------------------------------------------------ ONNX signature
def _varint(b: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if i >= len(b):
            raise ValueError("truncated varint")
        c = b[i]
        out |= (c & 0x7F) << shift
        i += 1
        if c < 0x80:
            return out, i
        shift += 7


def _fields(b: bytes):
    """Yield ``(field_number, value)`` of a protobuf message: ints for varints, bytes for length-delimited."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
        elif wire == 2:
            n, i = _varint(b, i)
            v, i = b[i : i + n], i + n
            if i > len(b):
                raise ValueError("truncated field")
        elif wire == 1:
            v, i = b[i : i + 8], i + 8
        elif wire == 5:
            v, i = b[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield num, v


def _value_info(b: bytes) -> tuple[str, int, tuple[int | str, ...]]:
    """ValueInfoProto -> (name, element type, shape); unknown dims are ``"?"``."""
    name, elem, dims = "", 0, []
    for num, v in _fields(b):
        if num == 1:
            name = v.decode()
        elif num == 2:  # TypeProto
            for tn, tv in _fields(v):
                if tn != 1:  # tensor_type
                    continue
                for sn, sv in _fields(tv):
                    if sn == 1:
                        elem = sv
                    elif sn == 2:  # TensorShapeProto
                        for dn, dv in _fields(sv):
                            if dn != 1:
                                continue
                            d: int | str = "?"
                            for kn, kv in _fields(dv):
                                d = kv if kn == 1 else kv.decode() if kn == 2 else d
                            dims.append(d)
    return name, elem, tuple(dims)


def onnx_signature(path) -> dict:
    """Read an ONNX file's default-domain opset and its graph inputs and outputs without the ``onnx`` package.

    Returns ``{"opset": int | None, "inputs": {name: (elem_type, shape)}, "outputs": {...}}``; ``elem_type``
    follows ONNX's TensorProto codes (1 = float32, 10 = float16), unknown dims are strings.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ModelError(f"{p}: cannot read the ONNX graph: {e}") from e
    opset, inputs, outputs, graph = None, {}, {}, None
    try:
        for num, v in _fields(data):
            if num == 8:  # opset_import
                dom, ver = "", None
                for on, ov in _fields(v):
                    dom, ver = (ov.decode(), ver) if on == 1 else (dom, ov) if on == 2 else (dom, ver)
                if dom in ("", "ai.onnx"):
                    opset = ver
            elif num == 7:
                graph = v
        if graph is None:
            raise ValueError("no graph")
        for num, v in _fields(graph):
            if num in (11, 12):
                name, elem, shape = _value_info(v)
                (inputs if num == 11 else outputs)[name] = (elem, shape)
    except (ValueError, UnicodeDecodeError, IndexError) as e:
        raise ModelError(f"{p}: not a valid ONNX model ({e})") from e
    return {"opset": opset, "inputs": inputs, "outputs": outputs}


def check_onnx(path, shapes: dict[str, tuple[int | str, ...]]) -> dict:
    """Check an ONNX step graph against the expected ``shapes`` (see :meth:`ModelPack.step_shapes`): opset
    within ``MIN_OPSET..MAX_OPSET``, every input and output present, float32 or float16, with matching fixed
    dims (a symbolic dim matches any size; the batch dim must be symbolic, i.e. dynamic).
    Raises :class:`ModelError` naming the file and the mismatch; returns the signature."""
    sig = onnx_signature(path)
    op = sig["opset"]
    if op is None or not MIN_OPSET <= op <= MAX_OPSET:
        raise ModelError(f"{path}: ONNX opset {op} is not supported; export with an opset in {MIN_OPSET}..{MAX_OPSET}")
    for kind, names in (("input", [n for n, _ in STEP_INPUTS]), ("output", [n for n, _ in STEP_OUTPUTS])):
        have = sig[kind + "s"]
        for n in names:
            if n not in have:
                raise ModelError(
                    f"{path}: the step graph has no {kind} {n!r}; its {kind}s: {', '.join(have) or 'none'}"
                )
            elem, shape = have[n]
            want = shapes[n]
            if elem not in (1, 10):
                raise ModelError(f"{path}: {kind} {n!r} has element type {elem}, expected float32 (1) or float16 (10)")
            ok = len(shape) == len(want) and all(
                isinstance(h, str) if w == "B" else isinstance(h, str) or h == w
                for h, w in zip(shape, want, strict=False)
            )
            if not ok:
                raise ModelError(f"{path}: {kind} {n!r} has shape {list(shape)}, expected {list(want)} (B = batch)")
    return sig
