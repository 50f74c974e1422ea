"""The solver: joint positions of many streams in, joint rotations out, one batched network call per tick
(imports :mod:`rtik.geometry`, :mod:`rtik.formats` and :mod:`rtik.models`; knows no sockets).

- :mod:`~rtik.solve.solver`: :class:`Solver` (per-stream state, ``push`` / ``tick``), :class:`SolveResult`,
  :class:`SolverOptions`, :func:`solve_sequence` for whole clips;
- :mod:`~rtik.solve.numpath`: frame checks and the vectorised numpy pre/post-processing (the reference path);
- :mod:`~rtik.solve.kernels` and :mod:`~rtik.solve.compiled`: the same compiled with numba, and choosing it
  (``kernels`` is imported only when chosen, never here);
- :mod:`~rtik.solve.refine`: noise-aware swing refinement; :mod:`~rtik.solve.filters`: One Euro, hold-last.
"""

from rtik.solve import compiled, filters, numpath, refine, solver
from rtik.solve.filters import OneEuroConfig, OneEuroFilter, hold_last, one_euro
from rtik.solve.solver import Solver, SolveResult, SolverOptions, StreamInfo, solve_sequence

__all__ = [
    "OneEuroConfig",
    "OneEuroFilter",
    "SolveResult",
    "Solver",
    "SolverOptions",
    "StreamInfo",
    "compiled",
    "filters",
    "hold_last",
    "numpath",
    "one_euro",
    "refine",
    "solve_sequence",
    "solver",
]
