"""The package layering of docs/architecture.md, checked on the source: every import of every module under
``rtik/`` (those inside functions too) is read with :mod:`ast` into an import graph, which must have no
module-level cycle, point down the layers only, never reach ``train/`` or ``engines/``, and keep the optional
heavy runtimes out of module level. ``import rtik`` and ``import rtik.<package>`` are checked in a fresh
interpreter. The checks are plain functions, each also run once on a small graph that breaks its rule."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: layer of each part of rtik, bottom (0) to top; a part imports only from parts on its layer or below, and
#: the graph of parts stays acyclic (so two parts on one layer never import each other both ways)
LAYERS = {
    "rtik": 0,  # the package root: rtik/__init__.py, which imports rtik.errors only
    "rtik.errors": 0,
    "rtik.geometry": 1,
    "rtik.formats": 2,
    "rtik.models": 2,
    "rtik.solve": 3,
    "rtik.eval": 4,
    "rtik.wire": 4,
    "rtik.serve": 5,
    "rtik.video": 5,
    "rtik.commands": 6,
    "rtik.cli": 6,
    "rtik.__main__": 6,
}
#: top-level packages beside rtik that sit above it: rtik never imports them
ABOVE = ("train", "engines")
#: optional heavy runtimes, imported inside the function or backend that needs them; the modules that may
#: import one at module level
HEAVY = ("torch", "onnxruntime", "onnx", "numba", "tensorrt", "cuda", "mediapipe", "cv2", "ray")
HEAVY_AT_MODULE_LEVEL = {"rtik.solve.kernels": {"numba"}}  # imported only once the numba path is chosen


@dataclass(frozen=True)
class Import:
    """One import statement's target in a module. ``module_level``: runs when the module is imported (not
    inside a function, not under ``if TYPE_CHECKING``)."""

    source: str
    target: str
    module_level: bool
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_sources(root: Path = REPO) -> dict[str, tuple[str, bool]]:
    """``{module: (source text, is_package)}`` of every module under ``root/rtik``."""
    return {
        module_name(p, root): (p.read_text(encoding="utf-8"), p.name == "__init__.py")
        for p in sorted((root / "rtik").rglob("*.py"))
    }


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, source: str, is_package: bool, known: set[str]) -> list[Import]:
    """Every import in ``source`` (module ``name``), resolved to a known module where it names one:
    ``from a.b import c`` is ``a.b.c`` when that is a module, else ``a.b``; relative imports are resolved."""
    out: list[Import] = []
    package = name if is_package else name.rpartition(".")[0]

    def visit(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, False)
                continue
            if isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), False)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), module_level)
                continue
            if isinstance(child, ast.Import):
                out.extend(Import(name, a.name, module_level, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")
                    up = up[: len(up) - (child.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                for a in child.names:
                    full = f"{base}.{a.name}"
                    out.append(Import(name, full if full in known else base, module_level, child.lineno))
            visit(child, module_level)

    visit(ast.parse(source, filename=name), True)
    return out


def import_graph(sources: dict[str, tuple[str, bool]]) -> list[Import]:
    known = set(sources)
    return [imp for name, (src, pkg) in sources.items() for imp in imports_of(name, src, pkg, known)]


def part_of(module: str) -> str | None:
    """The entry of :data:`LAYERS` that ``module`` belongs to (the longest matching prefix)."""
    best = None
    for part in LAYERS:
        if module == part or module.startswith(part + "."):
            if best is None or len(part) > len(best):
                best = part
    return best


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (or a self-loop), each sorted (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges.get(v, ()):
                found.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            strong(v)
    return found


def module_cycles(imports: list[Import], known: set[str]) -> list[list[str]]:
    """Cycles among rtik modules through imports that run at import time. Importing ``a.b.c`` also runs the
    ``__init__`` of ``a.b`` (unless the importer lives inside it already), so those count as edges too."""
    edges: dict[str, set[str]] = {}
    for imp in imports:
        if not imp.module_level or imp.target not in known:
            continue
        inside = set(_ancestors(imp.source))
        for t in [*_ancestors(imp.target), imp.target]:
            if t in known and t not in inside and t != imp.source:
                edges.setdefault(imp.source, set()).add(t)
    return _cycles(edges)


def layer_violations(imports: list[Import]) -> list[str]:
    """Imports (anywhere in a module) from a part of rtik on a higher layer than the importer's."""
    bad = []
    for imp in imports:
        src, dst = part_of(imp.source), part_of(imp.target)
        if src is None or dst is None or src == dst:
            continue
        if LAYERS[dst] > LAYERS[src]:
            bad.append(f"{imp.source}:{imp.line} imports {imp.target} ({dst}, layer {LAYERS[dst]} > {LAYERS[src]})")
    return bad


def part_cycles(imports: list[Import]) -> list[list[str]]:
    """Cycles among the parts of rtik through any import, lazy ones included."""
    edges: dict[str, set[str]] = {}
    for imp in imports:
        src, dst = part_of(imp.source), part_of(imp.target)
        if src is not None and dst is not None and src != dst:
            edges.setdefault(src, set()).add(dst)
    return _cycles(edges)


def imports_from_above(imports: list[Import]) -> list[str]:
    return [f"{imp.source}:{imp.line} imports {imp.target}" for imp in imports if imp.target.split(".")[0] in ABOVE]


def heavy_at_module_level(imports: list[Import]) -> list[str]:
    return [
        f"{imp.source}:{imp.line} imports {imp.target} at module level"
        for imp in imports
        if imp.module_level
        and imp.target.split(".")[0] in HEAVY
        and imp.target.split(".")[0] not in HEAVY_AT_MODULE_LEVEL.get(imp.source, ())
    ]


@pytest.fixture(scope="module")
def sources():
    return read_sources()


@pytest.fixture(scope="module")
def graph(sources):
    return import_graph(sources)


def test_every_module_belongs_to_a_layer(sources):
    assert [m for m in sources if part_of(m) is None] == []


def test_no_module_level_import_cycle(sources, graph):
    assert module_cycles(graph, set(sources)) == []


def test_packages_import_only_from_their_layer_or_below(graph):
    assert layer_violations(graph) == []
    assert part_cycles(graph) == []


def test_rtik_never_imports_train_or_engines(graph):
    assert imports_from_above(graph) == []


def test_heavy_runtimes_are_imported_where_needed(graph):
    assert heavy_at_module_level(graph) == []


def _loaded(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _forbidden(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in ABOVE + HEAVY]


def test_import_rtik_is_light():
    loaded = _loaded("import rtik")
    assert _forbidden(loaded) == []
    assert [m for m in loaded if m.startswith("rtik.")] == ["rtik.errors"]


def test_importing_every_package_loads_no_heavy_runtime():
    parts = [p for p in LAYERS if p.count(".") == 1 and (REPO / p.replace(".", "/") / "__init__.py").is_file()]
    loaded = _loaded("\n".join(f"import {p}" for p in parts + ["rtik.models.backends"]))
    assert _forbidden(loaded) == []


# the checks themselves, on small graphs that break each rule once

_FAKE = {
    "rtik": ("from rtik.errors import RtikError\n", True),
    "rtik.errors": ("", False),
    "rtik.geometry": ("from rtik.geometry import skeleton\n", True),
    "rtik.geometry.skeleton": ("import numpy as np\n", False),
    "rtik.solve": ("", True),
    "rtik.solve.solver": ("from rtik.geometry.skeleton import Skeleton\n", False),
    "rtik.solve.numpath": ("from . import solver\n", False),
}


def _fake(**changes: str) -> tuple[dict, list[Import]]:
    src = dict(_FAKE)
    for name, text in changes.items():
        name = name.replace("__", ".")
        src[name] = (src.get(name, ("", False))[0] + text, src.get(name, ("", False))[1])
    return src, import_graph(src)


def test_the_checks_pass_a_clean_graph():
    src, g = _fake()
    assert Import("rtik.solve.numpath", "rtik.solve.solver", True, 1) in g  # a relative import, resolved
    assert module_cycles(g, set(src)) == [] and layer_violations(g) == [] and part_cycles(g) == []
    assert imports_from_above(g) == [] and heavy_at_module_level(g) == []


def test_the_checks_catch_a_cycle_through_a_package_init():
    # geometry's __init__ imports skeleton; skeleton importing the solver closes a loop at import time
    src, g = _fake(rtik__geometry__skeleton="from rtik.solve import solver\n")
    assert module_cycles(g, set(src)) == [["rtik.geometry", "rtik.geometry.skeleton", "rtik.solve.solver"]]
    src, g = _fake(rtik__geometry__skeleton="def f():\n    from rtik.solve import solver\n")
    assert module_cycles(g, set(src)) == []  # a lazy import is no import-time cycle ...
    assert layer_violations(g) == ["rtik.geometry.skeleton:3 imports rtik.solve.solver (rtik.solve, layer 3 > 1)"]
    assert part_cycles(g) == [["rtik.geometry", "rtik.solve"]]  # ... but it breaks the layering


def test_the_checks_catch_imports_from_above_and_heavy_ones():
    _, g = _fake(rtik__solve__solver="def f():\n    from train.fit import load_checkpoint\n")
    assert imports_from_above(g) == ["rtik.solve.solver:3 imports train.fit"]
    _, g = _fake(rtik__solve__solver="if TYPE_CHECKING:\n    import torch\nimport onnxruntime as ort\n")
    assert heavy_at_module_level(g) == ["rtik.solve.solver:4 imports onnxruntime at module level"]
