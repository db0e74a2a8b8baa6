"""Affine transforms between frames: closed forms, algebra, serialisation and bad input."""

from __future__ import annotations

import json

import anndata as ad
import geopandas as gpd
import numpy as np
import pytest
import shapely

from spatialpath.align import Transform, apply_transform
from spatialpath.model import DataModelError


def test_rotation_scale_flip_and_shift_follow_the_closed_form():
    t = Transform.from_params(rotation_deg=30, scale=2.0, translation=(5, -3), flip=True)
    x, y = 4.0, 1.0
    # mirror x, scale by 2, rotate 30° (x towards y), shift — written out by hand
    mx, my = -x * 2.0, y * 2.0
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    expected = [c * mx - s * my + 5, s * mx + c * my - 3]
    np.testing.assert_allclose(t.apply_points([[x, y]])[0], expected, rtol=1e-14)
    assert t.kind == "similarity"


@pytest.mark.parametrize(
    ("params", "kind"),
    [
        ({}, "identity"),
        ({"translation": (1, 2)}, "translation"),
        ({"rotation_deg": 123, "translation": (1, 2)}, "rigid"),
        ({"rotation_deg": 10, "scale": 0.8}, "similarity"),
        ({"rotation_deg": 10, "flip": True}, "similarity"),  # a mirror is not a rigid motion
        ({"scale": (1.0, 2.0)}, "affine"),
    ],
)
def test_kind(params, kind):
    assert Transform.from_params(**params).kind == kind


@pytest.mark.parametrize("flip", [False, True])
def test_params_recover_the_construction(flip):
    t = Transform.from_params(rotation_deg=-140.0, scale=1.25, translation=(12.5, -7.0), flip=flip)
    p = t.params()
    assert p["rotation_deg"] == pytest.approx(-140.0, abs=1e-10)
    np.testing.assert_allclose(p["scale"], (1.25, 1.25), rtol=1e-12)
    assert p["shear"] == pytest.approx(0.0, abs=1e-12)
    assert p["flip"] is flip
    np.testing.assert_allclose(p["translation"], (12.5, -7.0))


def test_inverse_and_composition_with_frames():
    rng = np.random.default_rng(0)
    top = rng.normal(size=(2, 3))
    top[:, :2] += 2 * np.eye(2)  # a well-conditioned general affine
    a = Transform(np.vstack([top, [0.0, 0.0, 1.0]]), "visium", "he")
    b = Transform.from_params(rotation_deg=90, translation=(100, 0), source="he", target="global")
    pts = rng.uniform(0, 1000, (50, 2))
    ba = b @ a
    assert (ba.source, ba.target) == ("visium", "global")
    np.testing.assert_allclose(
        ba.apply_points(pts), b.apply_points(a.apply_points(pts)), rtol=1e-12, atol=1e-9
    )
    np.testing.assert_allclose(a.inverse().apply_points(a.apply_points(pts)), pts, atol=1e-9)
    assert (a.inverse().source, a.inverse().target) == ("he", "visium")
    with pytest.raises(DataModelError, match="frames must chain"):
        a @ b


def test_json_round_trip_is_exact():
    t = Transform.from_params(
        rotation_deg=33.3, scale=0.1 + 0.2, translation=(1e-7, 3.0), source="a", target="b"
    )
    back = Transform.from_dict(json.loads(t.to_json()))
    np.testing.assert_array_equal(back.matrix, t.matrix)
    assert (back.source, back.target) == ("a", "b")


def test_apply_to_cells_polygons_and_regions_never_modifies_inputs():
    t = Transform.from_params(rotation_deg=90, scale=3.0, translation=(10, 0), source="he", target="global")
    cells = ad.AnnData(np.zeros((2, 1)))
    cells.obsm["spatial"] = np.array([[1.0, 0.0], [0.0, 1.0]])
    moved = apply_transform(cells, t)
    np.testing.assert_allclose(moved.obsm["spatial"], [[10.0, 3.0], [7.0, 0.0]], atol=1e-12)
    np.testing.assert_array_equal(cells.obsm["spatial"], [[1.0, 0.0], [0.0, 1.0]])  # input untouched
    assert Transform.from_dict(json.loads(moved.uns["spatialpath"]["transforms"][-1])).target == "global"
    square = shapely.box(0, 0, 2, 1)
    assert apply_transform(square, t).area == pytest.approx(2 * 9)  # area scales by det = 9
    regions = gpd.GeoDataFrame({"compartment": ["tumour"]}, geometry=[square])
    out = apply_transform(regions, t)
    assert out.geometry.iloc[0].area == pytest.approx(18)
    assert regions.geometry.iloc[0].equals(square)
    np.testing.assert_allclose(out.total_bounds, [7.0, 0.0, 10.0, 6.0], atol=1e-12)


@pytest.mark.parametrize(
    ("matrix", "match"),
    [
        (np.zeros((3, 3)), "last row"),
        (np.eye(4), "3×3"),
        ([[1, 0, 0], [2, 0, 0], [0, 0, 1]], "singular"),
        ([[np.nan, 0, 0], [0, 1, 0], [0, 0, 1]], "NaN"),
    ],
)
def test_bad_matrices_are_refused(matrix, match):
    with pytest.raises(DataModelError, match=match):
        Transform(matrix)


def test_bad_input():
    t = Transform.identity()
    with pytest.raises(DataModelError, match=r"\(n, 2\)"):
        t.apply_points([1.0, 2.0, 3.0])
    with pytest.raises(DataModelError, match="frame name"):
        Transform(np.eye(3), "", "global")
    with pytest.raises(DataModelError, match="units must be 'um'"):
        Transform.from_dict({**t.to_dict(), "units": "px"})
    with pytest.raises(DataModelError, match="cannot apply"):
        apply_transform("cells.csv", t)
