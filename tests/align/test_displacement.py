"""Displacement fields and non-rigid transforms, against closed forms (linear fields are exact under
bilinear interpolation, so their inverse and Jacobian are known) and brute-force finite differences."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from spatialpath.align import DisplacementField, InverseError, Transform, apply_transform
from spatialpath.model import DataModelError


def linear_field(b: np.ndarray, c: np.ndarray, shape=(9, 11), spacing=25.0, origin=(-40.0, -30.0)):
    """d(z) = B z + c sampled on a grid: bilinear interpolation reproduces it exactly inside the grid."""
    f = DisplacementField.from_spacing(np.zeros((2, *shape)), spacing, origin)
    nodes = f.nodes()
    values = (nodes @ b.T + c).T.reshape(2, *shape)
    return DisplacementField.from_spacing(values, spacing, origin)


def smooth_field(seed: int, amplitude: float = 8.0, shape=(12, 14), spacing=40.0, origin=(-20.0, -30.0)):
    rng = np.random.default_rng(seed)
    v = ndimage.gaussian_filter(rng.normal(size=(2, *shape)), (0, 2, 2))
    v *= amplitude / np.abs(v).max()
    return DisplacementField.from_spacing(v, spacing, origin)


B = np.array([[0.05, -0.02], [0.03, 0.04]])
C = np.array([1.5, -2.0])


def test_linear_field_is_exact_inside_grid():
    f = linear_field(B, C)
    pts = np.random.default_rng(0).uniform([-40, -30], [200, 150], (500, 2))
    np.testing.assert_allclose(f(pts), pts @ B.T + C, atol=1e-10)


def test_jacobian_of_linear_field_is_det_identity_plus_b():
    f = linear_field(B, C)
    np.testing.assert_allclose(f.jacobian_determinant(), np.linalg.det(np.eye(2) + B), atol=1e-12)


def test_jacobian_matches_finite_differences_on_rotated_grid():
    f = smooth_field(1).transformed(Transform.from_params(rotation_deg=37, scale=1.3).matrix)
    nodes = f.nodes()
    h = 1e-4
    dx, dy = np.array([h, 0.0]), np.array([0.0, h])
    jx = (f.apply(nodes + dx) - f.apply(nodes - dx)) / (2 * h)
    jy = (f.apply(nodes + dy) - f.apply(nodes - dy)) / (2 * h)
    det = (jx[:, 0] * jy[:, 1] - jy[:, 0] * jx[:, 1]).reshape(f.shape)
    interior = (slice(1, -1), slice(1, -1))  # np.gradient is central there, like the difference above
    # a central difference at a node straddles two bilinear cells: same as np.gradient's average
    np.testing.assert_allclose(f.jacobian_determinant()[interior], det[interior], atol=0.02)
    assert f.jacobian_determinant().min() > 0


def test_inverse_of_linear_field_is_closed_form():
    f = linear_field(B, C)
    inv = f.inverse()
    ys = np.random.default_rng(1).uniform([0, 0], [150, 100], (300, 2))
    # (I + B) z + c = y  =>  z = (I + B)^-1 (y - c)
    z = (ys - C) @ np.linalg.inv(np.eye(2) + B).T
    np.testing.assert_allclose(inv.apply(ys), z, atol=1e-6)
    assert inv.inverse() is f


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inverse_is_exact_between_nodes(seed):
    f = smooth_field(seed)
    x = np.random.default_rng(seed).uniform(0, 400, (20_000, 2))
    np.testing.assert_allclose(f.inverse().apply(f.apply(x)), x, atol=1e-4)
    np.testing.assert_allclose(f.apply(f.inverse().apply(x)), x, atol=1e-4)


def test_folding_field_cannot_be_inverted():
    v = np.zeros((2, 5, 5))
    v[0, :, 2] = 60.0  # a node moved past its neighbours: the map folds
    f = DisplacementField.from_spacing(v, 20.0)
    assert f.jacobian_determinant().min() <= 0
    with pytest.raises(InverseError, match="folds"):
        f.inverse()


def test_nonrigid_transform_round_trip_and_inverse():
    field = smooth_field(3)
    t = Transform.from_params(rotation_deg=130, scale=1.1, translation=(50, -20), flip=True)
    tn = Transform(t.matrix, "m", "f", field)
    assert tn.kind == "nonrigid"
    assert tn.affine.kind == "similarity"
    assert not tn.is_affine
    x = np.random.default_rng(0).uniform(0, 400, (5000, 2))
    y = tn.apply_points(x)
    np.testing.assert_allclose(y, field.apply(t.apply_points(x)), atol=1e-12)
    back = tn.inverse()
    assert (back.source, back.target) == ("f", "m")
    np.testing.assert_allclose(back.apply_points(y), x, atol=1e-4)
    np.testing.assert_allclose(back.inverse().apply_points(x), y, atol=1e-9)


def test_composition_with_affines_on_either_side_is_exact():
    tn = Transform(np.eye(3), "m", "f", smooth_field(4))
    before = Transform.from_params(rotation_deg=-20, translation=(5, 6), source="z", target="m")
    after = Transform.from_params(rotation_deg=33, scale=0.9, flip=True, source="f", target="g")
    x = np.random.default_rng(5).uniform(0, 300, (2000, 2))
    expected = after.apply_points(tn.apply_points(before.apply_points(x)))
    np.testing.assert_allclose((after @ tn @ before).apply_points(x), expected, atol=1e-9)


def test_composition_of_two_fields_is_exact_at_the_second_fields_nodes():
    a = Transform(np.eye(3), "a", "b", smooth_field(5, amplitude=4))
    b = Transform(Transform.from_params(rotation_deg=10).matrix, "b", "c", smooth_field(6, amplitude=4))
    ab = b @ a
    # at points that the composed affine part sends onto b's field nodes, sampling is exact
    nodes = b.displacement.nodes()
    pre = (b.affine @ a.affine).inverse().apply_points(nodes)
    np.testing.assert_allclose(ab.apply_points(pre), b.apply_points(a.apply_points(pre)), atol=1e-6)
    x = np.random.default_rng(7).uniform(50, 350, (2000, 2))
    err = np.abs(ab.apply_points(x) - b.apply_points(a.apply_points(x)))
    assert np.median(err) < 0.05  # bilinear between nodes: small, documented approximation


def test_serialisation_is_bit_exact_for_nonrigid_and_inverse():
    tn = Transform(Transform.from_params(rotation_deg=45).matrix, "m", "f", smooth_field(8))
    for t in (tn, tn.inverse()):
        back = Transform.from_json(json.dumps(json.loads(t.to_json())))
        assert back.to_dict() == t.to_dict()
        x = np.random.default_rng(0).uniform(0, 300, (100, 2))
        np.testing.assert_array_equal(back.apply_points(x), t.apply_points(x))
    assert tn.to_dict()["type"] == "affine+displacement"


def test_apply_transform_nonrigid_to_polygons_maps_every_vertex():
    import geopandas as gpd
    import shapely

    tn = Transform(np.eye(3), "m", "f", smooth_field(9))
    poly = shapely.box(10, 10, 200, 150).segmentize(5.0)
    out = apply_transform(gpd.GeoDataFrame(geometry=[poly]), tn)
    mapped = np.asarray(out.geometry.iloc[0].exterior.coords)
    np.testing.assert_allclose(mapped, tn.apply_points(np.asarray(poly.exterior.coords)), atol=1e-12)


@pytest.mark.parametrize(
    ("values", "grid", "match"),
    [
        (np.zeros((3, 4, 4)), np.eye(3), r"\(2, ny, nx\)"),
        (np.zeros((2, 1, 4)), np.eye(3), "at least 2 × 2"),
        (np.full((2, 3, 3), np.nan), np.eye(3), "NaN"),
        (np.zeros((2, 3, 3)), np.zeros((3, 3)), "3×3 affine"),
        (np.zeros((2, 3, 3)), np.diag([1.0, 0.0, 1.0]), "singular"),
    ],
)
def test_bad_fields(values, grid, match):
    with pytest.raises(DataModelError, match=match):
        DisplacementField(values, grid)


def test_bad_spacing_points_and_records():
    with pytest.raises(DataModelError, match="spacing_um must be positive"):
        DisplacementField.from_spacing(np.zeros((2, 3, 3)), 0.0)
    f = smooth_field(0)
    with pytest.raises(DataModelError, match=r"\(n, 2\)"):
        f(np.zeros(3))
    with pytest.raises(DataModelError, match="not a displacement-field record"):
        DisplacementField.from_dict({"type": "affine"})
    record = {"type": "affine+displacement", "matrix": np.eye(3).tolist(), "source": "a", "target": "b"}
    with pytest.raises(DataModelError, match="needs its 'displacement'"):
        Transform.from_dict(record)
    with pytest.raises(DataModelError, match=r"must be a spatialpath\.align\.DisplacementField"):
        Transform(np.eye(3), displacement=np.zeros((2, 3, 3)))
