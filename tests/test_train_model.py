"""The torch model: step shapes, state carry equals the sequence forward, geometric frames, calibration."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rtik.geometry import rotations as rot  # noqa: E402
from rtik.geometry.kinematics import forward_kinematics  # noqa: E402
from train import geometry as geo  # noqa: E402
from train.data import load_clips  # noqa: E402
from train.model import IKModel, ModelConfig  # noqa: E402


@pytest.fixture(scope="module")
def clips(mocap, tmp_path_factory):
    src = tmp_path_factory.mktemp("bvh")
    for p in sorted((mocap / "sample").glob("*.bvh"))[:2]:
        (src / p.name).symlink_to(p)
    return load_clips(src, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


@pytest.fixture(scope="module")
def model(clips):
    torch.manual_seed(0)
    m = IKModel(clips.skeleton, ModelConfig(hidden=32, layers=2, den_hidden=16))
    with torch.no_grad():
        for lin in (m.ik_head, m.den_head):
            lin.weight.normal_(0.0, 0.05)
    return m.eval()


def _inputs(B=3, T=9, Ji=21, seed=0):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(B, T, Ji, 3, generator=g) * 0.2
    mask = (torch.rand(B, T, Ji, generator=g) > 0.2).float()
    return pos * mask[..., None], mask


def test_step_shapes(model):
    pos, mask = _inputs()
    state = torch.zeros(3, model.state_size)
    r6, clean, s = model.step(pos[:, 0], mask[:, 0], state)
    assert r6.shape == (3, len(model.skeleton), 6)
    assert clean.shape == (3, model.num_inputs, 3) and s.shape == (3, model.state_size)
    R = geo.sixd_to_matrix(r6)
    np.testing.assert_allclose((R.transpose(-1, -2) @ R).detach(), np.broadcast_to(np.eye(3), R.shape), atol=1e-5)
    np.testing.assert_allclose(r6[:, 0].detach(), np.broadcast_to(geo.IDENTITY_6D, (3, 6)), atol=1e-7)  # dummy root


def test_state_carry_equals_sequence_forward(model):
    pos, mask = _inputs()
    with torch.no_grad():
        seq = model(pos, mask)
        state = torch.zeros(3, model.state_size)
        for t in range(pos.shape[1]):
            r6, clean, state = model.step(pos[:, t], mask[:, t], state)
            torch.testing.assert_close(clean, seq["pos_clean"][:, t], atol=1e-5, rtol=1e-5)
            L = geo.sixd_to_matrix(r6[:, 1:])
            torch.testing.assert_close(L, seq["L"][:, t], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(state, seq["state"], atol=1e-5, rtol=1e-5)
    # two halves with the state carried = one pass
    with torch.no_grad():
        a = model(pos[:, :4], mask[:, :4])
        b = model(pos[:, 4:], mask[:, 4:], a["state"])
    torch.testing.assert_close(b["L"], seq["L"][:, 4:], atol=1e-5, rtol=1e-5)


def test_calibrated_frames_reproduce_determined_joints(clips):
    """After calibration an untrained model is a geometric solver: determined joints nearly exact."""
    m = IKModel(clips.skeleton, ModelConfig(hidden=16, layers=1, den_hidden=8))
    q, r = clips.clip(0)
    P, Gq = forward_kinematics(clips.skeleton, q.astype(np.float64), root_pos=r)
    keep = m.rig.skel_index
    m.calibrate(P[:, keep], rot.quat_to_matrix(Gq[:, keep]))
    with torch.no_grad():
        F = m.frames(torch.as_tensor(P[:, keep], dtype=torch.float32))
        G = F @ m.C
    err = np.degrees(rot.matrix_angle(G.numpy().astype(np.float64), rot.quat_to_matrix(Gq[:, keep])))
    chest = list(m.input_joints).index("Chest")
    assert np.median(err[:, chest]) < 5.0
    elbow = list(m.input_joints).index("UpperArm_L")
    assert np.median(err[:, elbow]) < 25.0  # the bend plane fixes most of the upper arm's twist
