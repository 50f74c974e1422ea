"""Pure math on numpy, knowing nothing of files, models or sockets (the bottom layer above :mod:`rtik.errors`).

- :mod:`~rtik.geometry.rotations`: quaternions (XYZW), matrices, 6-D, axis-angle, Euler in BVH's orders;
- :mod:`~rtik.geometry.skeleton`: :class:`Skeleton` (parents first, offsets, channels) and its joint groups;
- :mod:`~rtik.geometry.kinematics`: forward kinematics, bone lengths, swing-only analytic IK.
"""

from rtik.geometry import kinematics, rotations, skeleton
from rtik.geometry.kinematics import analytic_ik, bone_lengths, forward_kinematics
from rtik.geometry.skeleton import GROUPS, Skeleton

__all__ = [
    "GROUPS",
    "Skeleton",
    "analytic_ik",
    "bone_lengths",
    "forward_kinematics",
    "kinematics",
    "rotations",
    "skeleton",
]
