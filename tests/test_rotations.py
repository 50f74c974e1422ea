"""Properties of rtik.geometry.rotations, with scipy's Rotation as the oracle (uppercase axes = intrinsic,
quats XYZW)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.spatial.transform import Rotation

from rtik.errors import RtikError
from rtik.geometry import rotations as rot

DTYPES = (np.float32, np.float64)
TOL = {np.float32: 2e-4, np.float64: 1e-9}  # rotation-matrix element tolerance per dtype
ANG_TOL = {np.float32: 0.05, np.float64: 1e-6}  # degrees, for Euler round trips away from gimbal lock
SHAPES = ((), (5,), (2, 3), (2, 1, 4))
settings.register_profile("rtik", max_examples=60, deadline=None)
settings.load_profile("rtik")


def random_quats(shape, seed=0, dtype=np.float64):
    q = np.random.default_rng(seed).normal(size=(*shape, 4))
    return (q / np.linalg.norm(q, axis=-1, keepdims=True)).astype(dtype)


def same_rotation(qa, qb, tol):
    """Quaternions equal up to sign."""
    d = np.abs(np.sum(np.asarray(qa, np.float64) * np.asarray(qb, np.float64), axis=-1))
    return np.all(d > 1 - tol)


quat_arrays = hnp.arrays(
    np.float64, st.tuples(st.integers(1, 6), st.just(4)), elements=st.floats(-1, 1, allow_subnormal=False)
).filter(lambda q: np.all(np.linalg.norm(q, axis=-1) > 0.1))


# --------------------------------------------------------------------------------------------- conventions
def test_identity_and_constants():
    assert rot.quat_identity().tolist() == [0, 0, 0, 1]
    assert rot.quat_identity((2, 3), np.float32).shape == (2, 3, 4)
    np.testing.assert_array_equal(rot.quat_to_matrix(rot.quat_identity()), np.eye(3))
    assert set(rot.EULER_ORDERS) == {"XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX"}


def test_quat_to_matrix_matches_scipy_and_acts_on_column_vectors():
    q = random_quats((50,))
    R = rot.quat_to_matrix(q)
    np.testing.assert_allclose(R, Rotation.from_quat(q).as_matrix(), atol=1e-12)
    v = np.random.default_rng(1).normal(size=(50, 3))
    np.testing.assert_allclose(rot.quat_apply(q, v), np.einsum("nij,nj->ni", R, v), atol=1e-12)
    # 90 degrees about Z takes X to Y (right-handed)
    q90 = rot.axis_angle_to_quat([0, 0, np.pi / 2])
    np.testing.assert_allclose(rot.quat_apply(q90, [1.0, 0, 0]), [0, 1, 0], atol=1e-15)


def test_quat_mul_composes_like_matrices():
    a, b = random_quats((20,), 1), random_quats((20,), 2)
    np.testing.assert_allclose(
        rot.quat_to_matrix(rot.quat_mul(a, b)), rot.quat_to_matrix(a) @ rot.quat_to_matrix(b), atol=1e-12
    )
    np.testing.assert_allclose(rot.quat_mul(a, rot.quat_inv(a)), rot.quat_identity((20,)), atol=1e-12)


# ---------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_cyclic_round_trip_keeps_dtype_and_shape(dtype, shape):
    q = random_quats(shape, 3, dtype)
    R = rot.quat_to_matrix(q)
    r6 = rot.matrix_to_6d(R)
    aa = rot.quat_to_axis_angle(rot.matrix_to_quat(rot.sixd_to_matrix(r6)))
    q2 = rot.axis_angle_to_quat(aa)
    for x, n in ((R, (3, 3)), (r6, (6,)), (aa, (3,)), (q2, (4,))):
        assert x.dtype == dtype and x.shape == (*shape, *n)
    assert same_rotation(q, q2, TOL[dtype])
    np.testing.assert_allclose(rot.quat_to_matrix(q2), R, atol=TOL[dtype])


@given(quat_arrays)
def test_matrix_quat_round_trip_property(q):
    qn = rot.quat_normalize(q)
    q2 = rot.matrix_to_quat(rot.quat_to_matrix(q))
    assert np.all(q2[..., 3] >= 0)  # canonical
    assert same_rotation(qn, q2, 1e-12)
    ref = Rotation.from_matrix(rot.quat_to_matrix(q)).as_quat()
    assert same_rotation(q2, ref, 1e-12)  # at w = 0 the sign is a free choice (scipy's differs from ours)


@given(quat_arrays)
def test_axis_angle_matches_scipy(q):
    aa = rot.quat_to_axis_angle(q)
    ref = Rotation.from_quat(q).as_rotvec()
    # scipy may pick -axis at exactly pi; compare the rotations
    np.testing.assert_allclose(Rotation.from_rotvec(aa).as_matrix(), Rotation.from_rotvec(ref).as_matrix(), atol=1e-9)
    assert np.all(np.linalg.norm(aa, axis=-1) <= np.pi + 1e-12)


@given(hnp.arrays(np.float64, (8, 6), elements=st.floats(-10, 10)))
def test_sixd_decodes_to_a_rotation(r6):
    a, b = r6[:, :3], r6[:, 3:]
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    ok = (na > 1e-3) & (nb > 1e-3) & (np.linalg.norm(np.cross(a, b), axis=-1) > 1e-3 * na * nb)  # well posed
    R = rot.sixd_to_matrix(r6)
    assert np.all(np.isfinite(R))  # degenerate input still decodes to finite numbers
    R, a = R[ok], a[ok]
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-9)
    # the first column keeps the direction of the first 3-vector
    np.testing.assert_allclose(R[:, :, 0], a / np.linalg.norm(a, axis=-1, keepdims=True), atol=1e-9)


def test_sixd_is_the_first_two_columns():
    R = rot.quat_to_matrix(random_quats((4,), 5))
    r6 = rot.matrix_to_6d(R)
    np.testing.assert_array_equal(r6[:, :3], R[:, :, 0])
    np.testing.assert_array_equal(r6[:, 3:], R[:, :, 1])
    np.testing.assert_allclose(rot.sixd_to_matrix(r6), R, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("angle", [0.0, 1e-12, 1e-8, 1e-5, 1e-3, 0.5, np.pi / 2, np.pi - 1e-6, np.pi])
def test_axis_angle_tiny_and_large(dtype, angle):
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    aa = (axis * angle).astype(dtype)
    q = rot.axis_angle_to_quat(aa)
    assert q.dtype == dtype
    np.testing.assert_allclose(q, Rotation.from_rotvec(aa.astype(np.float64)).as_quat(), atol=TOL[dtype] / 10)
    back = rot.quat_to_axis_angle(q)
    if angle < np.pi - 1e-3:  # away from pi the vector itself comes back (at pi, -axis is equally valid)
        np.testing.assert_allclose(back, aa, rtol=1e-5 if dtype == np.float32 else 1e-9, atol=1e-30)
    np.testing.assert_allclose(rot.quat_angle(q), angle, atol=2e-7 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matrix_to_quat_at_180_degrees(dtype):
    axes = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -1, 1], [0, -1, 1]], dtype=np.float64)
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    R = Rotation.from_rotvec(axes * np.pi).as_matrix().astype(dtype)
    q = rot.matrix_to_quat(R)
    assert q.dtype == dtype
    np.testing.assert_allclose(np.abs(q[:, 3]), 0, atol=TOL[dtype])
    np.testing.assert_allclose(rot.quat_to_matrix(q), R, atol=TOL[dtype])


# ------------------------------------------------------------------------------------------------------ Euler
@pytest.mark.parametrize("order", rot.EULER_ORDERS)
def test_euler_to_matrix_matches_scipy_intrinsic(order):
    ang = np.random.default_rng(7).uniform(-180, 180, size=(200, 3))
    R = rot.euler_to_matrix(ang, order)
    np.testing.assert_allclose(R, Rotation.from_euler(order, ang, degrees=True).as_matrix(), atol=1e-12)
    # BVH meaning: "ZXY" = Rz @ Rx @ Ry, angles in the order written
    a = ang[0]
    R_manual = np.eye(3)
    for axis, deg in zip(order, a, strict=True):
        R_manual = R_manual @ rot.axis_matrix("XYZ".index(axis), np.deg2rad(deg))
    np.testing.assert_allclose(R[0], R_manual, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", rot.EULER_ORDERS)
def test_euler_round_trip_all_orders(order, dtype):
    rng = np.random.default_rng(11)
    ang = np.stack([rng.uniform(-179, 179, 300), rng.uniform(-89, 89, 300), rng.uniform(-179, 179, 300)], -1)
    ang = ang.astype(dtype)
    back = rot.matrix_to_euler(rot.euler_to_matrix(ang, order), order)
    assert back.dtype == dtype
    np.testing.assert_allclose(back, ang, atol=ANG_TOL[dtype] * (20 if dtype == np.float32 else 1))
    q = rot.euler_to_quat(ang, order)
    np.testing.assert_allclose(
        rot.quat_to_euler(q, order), ang, atol=ANG_TOL[dtype] * (20 if dtype == np.float32 else 1)
    )
    ref = Rotation.from_euler(order, ang.astype(np.float64), degrees=True).as_euler(order, degrees=True)
    np.testing.assert_allclose(
        rot.matrix_to_euler(rot.euler_to_matrix(ang, order), order), ref, atol=0.05 if dtype == np.float32 else 1e-6
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", rot.EULER_ORDERS)
@pytest.mark.parametrize("middle", [90.0, -90.0, 89.99999, -89.9999999, 89.99, -89.9])
def test_euler_gimbal_lock_reproduces_the_matrix(order, middle, dtype):
    rng = np.random.default_rng(5)
    ang = np.stack([rng.uniform(-170, 170, 50), np.full(50, middle), rng.uniform(-170, 170, 50)], -1).astype(dtype)
    R = rot.euler_to_matrix(ang, order)
    back = rot.matrix_to_euler(R, order)
    assert np.all(np.isfinite(back))
    assert np.all(np.abs(back[:, 1]) <= 90 + 1e-6)
    # at and near the lock the first and last angles are ill-conditioned, but the rotation comes back exactly
    np.testing.assert_allclose(rot.euler_to_matrix(back, order), R, atol=2e-6 if dtype == np.float32 else 2e-15)
    if abs(middle) == 90.0 and dtype == np.float64:
        np.testing.assert_allclose(back[:, 2], 0.0, atol=1e-9)  # locked: the first angle takes the whole turn


@given(quat_arrays, st.sampled_from(rot.EULER_ORDERS))
def test_quat_euler_round_trip_property(q, order):
    ang = rot.quat_to_euler(q, order)
    assert np.all(np.abs(ang) <= 180 + 1e-9) and np.all(np.abs(ang[..., 1]) <= 90 + 1e-9)
    assert same_rotation(rot.quat_normalize(q), rot.euler_to_quat(ang, order), 1e-9)


@pytest.mark.parametrize("order", ["xyz", "zxy"])
def test_euler_order_is_case_insensitive(order):
    np.testing.assert_allclose(
        rot.euler_to_matrix([10, 20, 30], order), rot.euler_to_matrix([10, 20, 30], order.upper())
    )


@pytest.mark.parametrize("bad", ["XXY", "XY", "ABC", "XYZX", ""])
def test_bad_euler_order_lists_valid_orders(bad):
    with pytest.raises(RtikError, match="valid orders: XYZ, XZY, YXZ, YZX, ZXY, ZYX"):
        rot.euler_to_matrix([0, 0, 0], bad)


def test_euler_single_axes():
    for axis, order in (("X", "XYZ"), ("Y", "YZX"), ("Z", "ZXY")):
        R = rot.euler_to_matrix([90, 0, 0], order)
        np.testing.assert_allclose(R, Rotation.from_euler(axis, 90, degrees=True).as_matrix(), atol=1e-15)


# ------------------------------------------------------------------------------------------ other functions
def test_quat_between_general_parallel_antiparallel():
    rng = np.random.default_rng(2)
    u, v = rng.normal(size=(100, 3)), rng.normal(size=(100, 3)) * 3.0
    q = rot.quat_between(u, v)
    un, vn = u / np.linalg.norm(u, axis=-1, keepdims=True), v / np.linalg.norm(v, axis=-1, keepdims=True)
    np.testing.assert_allclose(rot.quat_apply(q, un), vn, atol=1e-12)
    # minimal: the angle is the angle between the vectors
    np.testing.assert_allclose(rot.quat_angle(q), np.arccos(np.clip(np.sum(un * vn, -1), -1, 1)), atol=1e-7)
    # parallel -> identity
    np.testing.assert_allclose(rot.quat_between(u, 2 * u), rot.quat_identity((100,)), atol=1e-12)
    # antiparallel -> 180 degrees about an axis perpendicular to u, for axis-aligned inputs too
    w = np.concatenate([u, np.eye(3), -np.eye(3)])
    qa = rot.quat_between(w, -w)
    np.testing.assert_allclose(rot.quat_angle(qa), np.pi, atol=1e-6)
    wn = w / np.linalg.norm(w, axis=-1, keepdims=True)
    np.testing.assert_allclose(rot.quat_apply(qa, wn), -wn, atol=1e-12)
    np.testing.assert_allclose(np.sum(qa[:, :3] * wn, -1), 0, atol=1e-12)
    # zero vector -> identity
    np.testing.assert_allclose(rot.quat_between([0, 0, 0], [1, 0, 0]), [0, 0, 0, 1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_quat_between_nearly_antiparallel(dtype):
    u = np.array([1.0, 0, 0], dtype)
    v = np.array([-1.0, 1e-4, 0], dtype)
    q = rot.quat_between(u, v)
    vn = v / np.linalg.norm(v)
    np.testing.assert_allclose(rot.quat_apply(q, u), vn, atol=1e-3 if dtype == np.float32 else 1e-9)


def test_swing_twist_recomposes_and_twist_is_about_the_axis():
    q = random_quats((200,), 9)
    axis = np.random.default_rng(10).normal(size=(200, 3))
    swing, twist = rot.swing_twist(q, axis)
    assert same_rotation(rot.quat_mul(swing, twist), q, 1e-12)
    an = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    # the twist's vector part is parallel to the axis; the swing's is perpendicular to it
    np.testing.assert_allclose(np.linalg.norm(np.cross(twist[:, :3], an), axis=-1), 0, atol=1e-12)
    np.testing.assert_allclose(np.sum(swing[:, :3] * an, -1), 0, atol=1e-12)
    # both agree on where the axis goes: the twist leaves it alone
    np.testing.assert_allclose(rot.quat_apply(q, an), rot.quat_apply(swing, an), atol=1e-12)


def test_swing_twist_pure_cases():
    ax = np.array([0.0, 1.0, 0.0])
    pure_twist = rot.axis_angle_to_quat(ax * 0.7)
    s, t = rot.swing_twist(pure_twist, ax)
    np.testing.assert_allclose(s, [0, 0, 0, 1], atol=1e-12)
    assert same_rotation(t, pure_twist, 1e-12)
    swing180 = rot.axis_angle_to_quat(np.array([1.0, 0, 0]) * np.pi)  # 180 degrees about a perpendicular axis
    s, t = rot.swing_twist(swing180, ax)
    np.testing.assert_allclose(t, [0, 0, 0, 1], atol=1e-12)
    assert same_rotation(s, swing180, 1e-12)


def test_slerp_endpoints_midpoint_and_shortest_path():
    a, b = random_quats((30,), 12), random_quats((30,), 13)
    assert same_rotation(rot.quat_slerp(a, b, 0.0), a, 1e-12)
    assert same_rotation(rot.quat_slerp(a, b, 1.0), b, 1e-12)
    mid = rot.quat_slerp(a, b, 0.5)
    np.testing.assert_allclose(rot.quat_geodesic(a, mid), rot.quat_geodesic(a, b) / 2, atol=1e-9)
    np.testing.assert_allclose(rot.quat_geodesic(mid, b), rot.quat_geodesic(a, b) / 2, atol=1e-9)
    # -b is the same rotation: the path is the same
    assert same_rotation(rot.quat_slerp(a, -b, 0.3), rot.quat_slerp(a, b, 0.3), 1e-12)
    # identical endpoints (the near branch)
    assert same_rotation(rot.quat_slerp(a, a, 0.4), a, 1e-12)
    # t broadcasts: several times for one pair
    ts = np.linspace(0, 1, 5)
    path = rot.quat_slerp(a[0], b[0], ts)
    assert path.shape == (5, 4)
    np.testing.assert_allclose(rot.quat_geodesic(a[0], path), ts * rot.quat_geodesic(a[0], b[0]), atol=1e-9)


def test_geodesic_angles():
    a = random_quats((50,), 14)
    angle = np.linspace(0, np.pi, 50)
    axis = np.random.default_rng(15).normal(size=(50, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    b = rot.quat_mul(a, rot.axis_angle_to_quat(axis * angle[:, None]))
    np.testing.assert_allclose(rot.quat_geodesic(a, b), angle, atol=1e-7)
    np.testing.assert_allclose(rot.quat_geodesic(a, -b), angle, atol=1e-7)  # sign-invariant
    np.testing.assert_allclose(rot.matrix_angle(rot.quat_to_matrix(a), rot.quat_to_matrix(b)), angle, atol=1e-7)
    ref = (Rotation.from_quat(a).inv() * Rotation.from_quat(b)).magnitude()
    np.testing.assert_allclose(rot.quat_geodesic(a, b), ref, atol=1e-7)
    # tiny angles stay accurate (where 2*acos(|dot|) would not)
    tiny = rot.quat_mul(a, rot.axis_angle_to_quat(axis * 1e-9))
    np.testing.assert_allclose(rot.quat_geodesic(a, tiny), 1e-9, rtol=1e-3)


def test_normalize_and_canonical():
    q = np.array([[0, 0, 0, 2.0], [0, 0, 0, 0], [1, 1, 1, -1]])
    n = rot.quat_normalize(q)
    np.testing.assert_allclose(n[0], [0, 0, 0, 1])
    np.testing.assert_allclose(n[1], [0, 0, 0, 1])  # zero -> identity
    np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1)
    c = rot.quat_canonical(n)
    assert np.all(c[:, 3] >= 0)
    np.testing.assert_allclose(c[2], -n[2])


def test_integer_input_becomes_float64():
    assert rot.quat_to_matrix(np.array([0, 0, 0, 1])).dtype == np.float64
    assert rot.euler_to_matrix(np.array([90, 0, 0]), "XYZ").dtype == np.float64


@pytest.mark.parametrize("dtype", DTYPES)
def test_quat_between_sweep_towards_antiparallel(dtype):
    """Angles pi - eps for eps from 1e-1 down to 1e-12: the rotation always lands on v (within dtype noise)."""
    eps = 10.0 ** -np.arange(1, 13)
    u = np.tile(np.array([0.6, 0.0, 0.8]), (len(eps), 1))
    perp = np.array([0.0, 1.0, 0.0])
    v = -u * np.cos(eps)[:, None] + perp * np.sin(eps)[:, None]
    q = rot.quat_between(u.astype(dtype), v.astype(dtype))
    err = np.linalg.norm(rot.quat_apply(q.astype(np.float64), u) - v, axis=-1)
    assert err.max() < (1e-3 if dtype == np.float32 else 1e-7)


@pytest.mark.parametrize("order", rot.EULER_ORDERS)
def test_euler_batch_shapes(order):
    ang = np.random.default_rng(3).uniform(-80, 80, size=(2, 3, 4, 3))
    R = rot.euler_to_matrix(ang, order)
    assert R.shape == (2, 3, 4, 3, 3)
    np.testing.assert_allclose(rot.matrix_to_euler(R, order), ang, atol=1e-9)
    assert rot.euler_to_quat(ang, order).shape == (2, 3, 4, 4)
