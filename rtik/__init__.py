"""rtik — real-time neural inverse kinematics.

Joint positions in, joint rotations out, one frame at a time. Subpackages, each importing only the ones below it
(docs/architecture.md):

- :mod:`rtik.geometry` — rotations, skeletons, kinematics: numpy math;
- :mod:`rtik.formats` — BVH reading and writing, position files, input joint layouts;
- :mod:`rtik.models` — model packs, input normalisation, inference backends;
- :mod:`rtik.solve` — the multi-stream :class:`~rtik.solve.solver.Solver`;
- :mod:`rtik.eval` — metrics, input conditions, baselines, ``rtik eval``;
- :mod:`rtik.wire` — the message schema, its transports and the client library;
- :mod:`rtik.serve` — the daemon ``rtik serve``;
- :mod:`rtik.commands` and :mod:`rtik.cli` — the ``rtik`` command;
- :class:`rtik.errors.RtikError` — the root of every error rtik raises.

``import rtik`` loads none of them (nor torch, onnxruntime or numba); import the subpackage you use.
"""

from rtik.errors import RtikError

__version__ = "0.1.0"
__all__ = ["RtikError", "__version__"]
