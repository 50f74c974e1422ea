"""Files and joint layouts, at the edge where data comes in or goes out (imports :mod:`rtik.geometry` only).

- :mod:`~rtik.formats.bvh`: BVH reading and writing (:class:`Motion`), archives, unit guessing; the vectorised
  number parser apart in ``_bvh_parse``;
- :mod:`~rtik.formats.points`: joint positions from ``.bvh``, ``.npz`` and ``.csv`` files (``rtik solve``,
  ``rtik send``);
- :mod:`~rtik.formats.layouts`: named input layouts (``rtik``, ``bvh``, ``mediapipe33``, ``coco17``) mapped onto a
  model's input joints;
- :mod:`~rtik.formats.rig`: any BVH rig onto the model's body and back (:class:`Rig`), rigs as data.
"""

from rtik.formats import bvh, layouts, points, rig
from rtik.formats.bvh import Motion
from rtik.formats.layouts import Layout, LayoutMap
from rtik.formats.rig import Rig

__all__ = ["Layout", "LayoutMap", "Motion", "Rig", "bvh", "layouts", "points", "rig"]
