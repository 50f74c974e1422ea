"""rtik.formats.units and the BVH unit guess: a rig's unit judged from its legs, whatever its up axis."""

import pytest

from rtik.cli import main
from rtik.formats import bvh
from rtik.formats.units import METRES, from_legs


@pytest.mark.parametrize(
    "legs, unit",
    [(0.85, "m"), (86.6, "cm"), (850.0, "mm"), (34.9, "in"), (15.0, "cmu"), (0.45, "m"), (0.05, None), (9e9, None)],
)
def test_from_legs(legs, unit):
    assert from_legs(legs) == unit


def test_units_are_metres_per_unit():
    assert METRES["in"] == pytest.approx(0.0254) and METRES["cmu"] == pytest.approx(0.0254 / 0.45)


@pytest.mark.parametrize(
    "name, unit",
    [
        ("extra/sample/mpi-poseprior_03100_S7.bvh", "in"),  # Y up, inches
        ("extra/sample/animated-drawings_cmu_new_walk_swing_arms.bvh", "in"),  # Z up: hip height cannot tell
        ("extra/sample/animated-drawings_cmu_14_14_short.bvh", "cmu"),
        ("extra/sample/snu-vsports_s_003_6_1.bvh", "cm"),  # every bone along +X at zero rotation
        ("sample/dataset-2_walk_active_020.bvh", "cm"),
    ],
)
def test_guess_units_of_real_rigs(mocap, name, unit):
    assert bvh.guess_units(bvh.read(mocap / name)) == unit


def test_solve_needs_no_units_for_an_inch_rig(pack, mocap, tmp_path):
    src = mocap / "extra" / "sample" / "mpi-poseprior_03100_S7.bvh"
    assert main(["solve", str(src), "-o", str(tmp_path / "o.bvh"), "--model", str(pack.path), "--rig", "input"]) == 0
    out = bvh.read(tmp_path / "o.bvh")
    assert out.skeleton.names == bvh.read(src).skeleton.names
