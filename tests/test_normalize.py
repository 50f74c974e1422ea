"""Input normalisation: heading, body size, normalize/denormalize round trip, the spec's validation."""

from __future__ import annotations

import numpy as np
import pytest

from rtik.errors import ModelError
from rtik.models import normalize as nz

NAMES = ("Hips", "UpperLeg_L", "UpperLeg_R", "UpperArm_L", "UpperArm_R", "Spine", "Chest", "Neck", "Head",
         "LowerLeg_L", "Foot_L", "LowerLeg_R", "Foot_R")  # fmt: skip


def _body(yaw: float, at=(0.0, 0.0, 0.0)):
    """A body facing +Z (left side to +X) turned by ``yaw`` about +Y and placed ``at``."""
    P = np.zeros((len(NAMES), 3))
    P[NAMES.index("UpperLeg_L")] = [0.1, -0.05, 0]
    P[NAMES.index("UpperLeg_R")] = [-0.1, -0.05, 0]
    P[NAMES.index("UpperArm_L")] = [0.2, 0.5, 0.02]
    P[NAMES.index("UpperArm_R")] = [-0.2, 0.5, 0.02]
    P[NAMES.index("Head")] = [0.0, 0.7, 0.05]
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return P @ R.T + np.asarray(at)


@pytest.mark.parametrize("yaw", [0.0, 0.7, -2.5, np.pi - 0.01])
def test_heading_recovers_yaw(yaw):
    got, ok = nz.heading(nz.NormSpec(), NAMES, _body(yaw))
    assert ok
    assert abs(np.angle(np.exp(1j * (got - yaw)))) < 1e-9


def test_heading_with_mask_and_unobservable():
    spec = nz.NormSpec()
    P = _body(0.3)
    mask = np.ones(len(NAMES), bool)
    mask[NAMES.index("UpperArm_L")] = False  # the hips alone still give the heading
    got, ok = nz.heading(spec, NAMES, P, mask)
    assert ok and abs(got - 0.3) < 0.05
    mask[NAMES.index("UpperLeg_R")] = False
    _, ok = nz.heading(spec, NAMES, P, mask)
    assert not ok


def test_normalize_round_trip_and_facing():
    P = np.stack([_body(1.2, (3.0, 0.9, -2.0)), _body(-0.4, (0.0, 1.0, 0.0))])  # (2, Ji, 3)
    yaw, _ = nz.heading(nz.NormSpec(), NAMES, P)
    size = np.array([1.8, 2.0])
    n = nz.normalize(P, 0, yaw, size)
    assert n.dtype == np.float32 and np.abs(n[:, 0]).max() == 0
    np.testing.assert_allclose(n[0], (_body(0.0) / 1.8), atol=1e-6)
    back = nz.denormalize(n, P[:, 0], yaw, size)
    np.testing.assert_allclose(back, P, atol=1e-5)


def test_body_size_rescales_missing_bones():
    spec = nz.NormSpec()
    lengths = np.full(len(NAMES), 0.25)
    full = nz.body_size(spec, NAMES, lengths)
    assert full == pytest.approx(0.25 * len(spec.size_joints))
    lengths[NAMES.index("Neck")] = np.nan
    assert nz.body_size(spec, NAMES, lengths) == pytest.approx(full)
    with pytest.raises(ModelError, match="body-size"):
        nz.body_size(spec, NAMES, np.full(len(NAMES), np.nan))


def test_spec_round_trip_and_errors():
    spec = nz.NormSpec(left=["UpperLeg_L"], right=["UpperLeg_R"])
    assert nz.NormSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ModelError, match="as many left"):
        nz.NormSpec(left=("a",), right=())
    with pytest.raises(ModelError, match="invalid normalization"):
        nz.NormSpec.from_dict({"bogus": 1})
    with pytest.raises(ModelError, match="Input joints"):
        nz.heading(nz.NormSpec(), ("Hips",), np.zeros((1, 3)))
