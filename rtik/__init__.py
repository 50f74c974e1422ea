"""rtik — real-time neural inverse kinematics.

Joint positions in, joint rotations out, one frame at a time. The public API:

- :mod:`rtik.geometry.rotations`, :mod:`rtik.geometry.skeleton`, :mod:`rtik.geometry.kinematics` — numpy math;
- :mod:`rtik.formats.bvh` — BVH reader and writer;
- :class:`rtik.errors.RtikError` — the root of every error rtik raises.
"""

from rtik.errors import RtikError

__version__ = "0.1.0"
__all__ = ["RtikError", "__version__"]
