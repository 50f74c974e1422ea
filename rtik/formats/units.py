"""Length units of files and streams: metres per unit, and a unit judged from a body's size.

rtik works in metres; files and live sources may be in metres, centimetres, millimetres, inches or the CMU
database's 1/0.45 inch. :func:`from_legs` judges a rig's unit from the length of its legs (hip to ankle), which does not
depend on which axis is up or on the pose the rig stands in.
"""

from __future__ import annotations

import math

#: metres per unit; ``cmu`` is the unit of the CMU motion database's ASF skeletons and their BVH conversions
#: (1/0.45 inch)
METRES = {"m": 1.0, "cm": 0.01, "mm": 0.001, "in": 0.0254, "cmu": 0.0254 / 0.45}
ADULT_LEGS_M = 0.85  # hip to ankle
_LEGS_RANGE_M = (0.3, 1.3)  # children to tall adults


def from_legs(legs: float) -> str | None:
    """The unit in which legs ``legs`` long (hip to ankle, in that unit) are nearest an adult's, if they are a
    plausible length in it (0.3-1.3 m); else None."""
    if not legs > 0 or not math.isfinite(legs):
        return None
    unit = min(METRES, key=lambda u: abs(math.log(legs * METRES[u] / ADULT_LEGS_M)))
    lo, hi = _LEGS_RANGE_M
    return unit if lo <= legs * METRES[unit] <= hi else None
