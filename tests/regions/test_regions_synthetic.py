"""Regions on synthetic shapes with closed-form answers: masks, GeoJSON, napari, margins, assignment."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pytest
import shapely

from spatialpath.model import DataModelError, make_labels
from spatialpath.regions import (
    MARGIN,
    MARGIN_INNER,
    MARGIN_OUTER,
    TUMOUR_CORE,
    assign_cells,
    from_mask,
    from_napari_shapes,
    immunoscore_bands,
    make_regions,
    margin_bands,
    read_geojson,
    signed_distance,
    to_napari_shapes,
    validate_regions,
    write_geojson,
)


def _cells(xy, image_id=None):
    a = ad.AnnData(np.zeros((len(xy), 0)))
    a.obsm["spatial"] = np.asarray(xy, float)
    if image_id is not None:
        a.obs["image_id"] = image_id
    return a


@pytest.fixture
def class_mask():
    """Touching classes, a hole with an island, diagonal pinches and a one-pixel class."""
    rng = np.random.default_rng(1)
    m = np.zeros((120, 150), np.int32)
    m[10:100, 10:80] = 1
    m[30:60, 30:60] = 0  # hole in class 1
    m[40:50, 40:50] = 2  # island of class 2 in the hole
    m[10:100, 80:140] = 2  # touches class 1
    m[0, 0] = m[1, 1] = 3  # diagonal pinch
    m[110, 5] = 4
    m[105:118, 100:148] = rng.integers(0, 3, (13, 48))  # noise: many holes and pinches
    return m


@pytest.mark.parametrize(("pixel", "origin"), [(1.0, (0.0, 0.0)), (0.377, (12.5, -3.0))])
def test_from_mask_area_is_pixel_count(class_mask, pixel, origin):
    r = from_mask(class_mask, pixel_size_um=pixel, origin_um=origin)
    counts = np.bincount(class_mask.ravel())
    assert r["compartment"].tolist() == ["1", "2", "3", "4"]  # background 0 excluded
    np.testing.assert_allclose(r.area, counts[1:] * pixel**2, rtol=1e-3)
    np.testing.assert_allclose(r.area, counts[1:] * pixel**2, rtol=1e-9)
    assert r.geometry.is_valid.all()
    # pixel edges: the one-pixel class 4 at (row 110, col 5) spans half a pixel around its centre
    ox, oy = origin
    expected = (ox + 4.5 * pixel, oy + 109.5 * pixel, ox + 5.5 * pixel, oy + 110.5 * pixel)
    np.testing.assert_allclose(r.geometry[3].bounds, expected)
    # each pixel centre is in the polygon of its class
    rows, cols = np.nonzero(class_mask == 1)
    assert shapely.contains_xy(r.geometry[0], origin[0] + cols * pixel, origin[1] + rows * pixel).all()


def test_from_mask_hole_is_a_hole():
    m = np.zeros((20, 20), np.int32)
    m[2:18, 2:18] = 1
    m[6:10, 6:10] = 0
    g = from_mask(m, pixel_size_um=1.0).geometry[0]
    assert g.geom_type == "Polygon"
    assert len(g.interiors) == 1
    assert g.area == 16 * 16 - 16


def test_from_mask_labels_dataarray_and_names():
    m = np.array([[0, 1, 1], [2, 2, 1]])
    lab = make_labels(m, pixel_size_um=2.0, origin_um=(10, 20), categories=["bg", "tumour", "stroma"])
    r = from_mask(lab, image_id="roi1")
    assert r["compartment"].tolist() == ["tumour", "stroma"]
    assert r["image_id"].tolist() == ["roi1", "roi1"]
    assert r.area.tolist() == [12.0, 8.0]
    assert r.total_bounds.tolist() == [9.0, 19.0, 15.0, 23.0]
    assert r.attrs["spatialpath"]["frame_um"] == {"roi1": [9.0, 19.0, 15.0, 23.0]}
    with pytest.raises(DataModelError, match="pixel_size_um"):
        from_mask(m)
    with pytest.raises(DataModelError, match="integer class mask"):
        from_mask(m.astype(float), pixel_size_um=1)


def test_geojson_round_trip(tmp_path, class_mask):
    r = from_mask(class_mask, pixel_size_um=0.5, origin_um=(3.0, 4.0), image_id="a")
    path = tmp_path / "regions.geojson"
    write_geojson(r, path)
    back = read_geojson(path)
    assert back["compartment"].tolist() == r["compartment"].tolist()
    assert back["image_id"].tolist() == ["a"] * len(r)
    for g0, g1 in zip(r.geometry, back.geometry, strict=True):
        assert g0.equals(g1)
        assert g0.area == g1.area
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_geojson(r, path)
    write_geojson(r.iloc[:1], path, overwrite=True)
    assert len(read_geojson(path)) == 1
    # the pixel frame of QuPath, both ways
    write_geojson(r, tmp_path / "px.geojson", pixel_size_um=0.5, origin_um=(3.0, 4.0))
    px = read_geojson(tmp_path / "px.geojson", pixel_size_um=0.5, origin_um=(3.0, 4.0))
    assert all(a.equals(b) for a, b in zip(r.geometry, px.geometry, strict=True))


def _qupath_feature(coords, name=None, cls=None, geom="Polygon"):
    props = {"objectType": "annotation"}
    if name is not None:
        props["name"] = name
    if cls is not None:
        props["classification"] = {"name": cls, "color": [200, 0, 0]}
    return {
        "type": "Feature",
        "id": "x",
        "geometry": {"type": geom, "coordinates": coords},
        "properties": props,
    }


def test_read_qupath_export(tmp_path):
    sq = lambda x0, y0, s: [[[x0, y0], [x0 + s, y0], [x0 + s, y0 + s], [x0, y0 + s], [x0, y0]]]  # noqa: E731
    features = [
        _qupath_feature(sq(0, 0, 1000), cls="Tumor"),
        _qupath_feature(sq(2000, 0, 500), cls="Tumor"),
        _qupath_feature(sq(0, 2000, 400), name="Stroma"),
        _qupath_feature([10, 10], cls="Tumor", geom="Point"),  # detections as points are skipped
    ]
    path = tmp_path / "qupath.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    r = read_geojson(path, pixel_size_um=0.5)
    areas = r.set_index("compartment").area
    assert areas.to_dict() == {"Tumor": (1000**2 + 500**2) * 0.25, "Stroma": 400**2 * 0.25}
    only = read_geojson(path, classification_key="classification.name", unclassified="none")
    assert sorted(only["compartment"]) == ["Tumor", "none"]
    # a plain list of features (older QuPath) reads the same
    (tmp_path / "list.json").write_text(json.dumps(features))
    assert read_geojson(tmp_path / "list.json", pixel_size_um=0.5).area.sum() == pytest.approx(areas.sum())


def test_geojson_without_polygons_is_refused(tmp_path):
    path = tmp_path / "points.geojson"
    feats = [_qupath_feature([1.0, 2.0], cls="CD8", geom="Point")]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    with pytest.raises(DataModelError, match=r"no Polygon or MultiPolygon.*\['Point'\]"):
        read_geojson(path)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataModelError, match="not valid JSON"):
        read_geojson(tmp_path / "bad.json")


def test_pixels_where_um_expected_are_refused():
    rng = np.random.default_rng(0)
    cells = _cells(rng.uniform(0, 900, (500, 2)))  # µm, a 0.9 mm field
    in_px = make_regions(["tumour"], [shapely.box(0, 0, 1800, 1800)])  # same field in 0.5 µm pixels
    with pytest.raises(DataModelError, match=r"probably in pixels.*pixel_size_um"):
        validate_regions(in_px, cells)
    validate_regions(make_regions(["tumour"], [shapely.box(0, 0, 900, 900)]), cells)
    tiny = make_regions(["tumour"], [shapely.box(0, 0, 90, 90)])  # µm regions, cells x10
    with pytest.raises(DataModelError, match="extent"):
        validate_regions(tiny, cells)


def test_zero_area_compartment_is_an_error():
    flat = make_regions(["tumour", "stroma"], [shapely.box(0, 0, 10, 10), shapely.box(0, 0, 10, 0)])
    with pytest.raises(DataModelError, match=r"row 1 \('stroma'\) has zero area"):
        validate_regions(flat)


def test_napari_round_trip():
    outer = shapely.Point(50, 40).buffer(30)
    ring = outer.difference(shapely.box(40, 30, 60, 50))
    r = make_regions(["tumour", "stroma"], [ring, shapely.MultiPolygon([shapely.box(100, 0, 120, 10)])])
    layer = to_napari_shapes(r)
    assert layer["scale"] == (1.0, 1.0)
    assert layer["properties"]["hole"] == [False, True, False]
    assert layer["data"][0][:, 0].max() == pytest.approx(70)  # (y, x): first column is y
    back = from_napari_shapes(
        layer["data"],
        layer["shape_type"],
        names=layer["properties"]["compartment"],
        holes=layer["properties"]["hole"],
    )
    for g0, g1 in zip(r.geometry, back.geometry, strict=True):
        assert g0.symmetric_difference(g1).area < 1e-9


def test_napari_scale_translate_and_types():
    rect = np.array([[0, 0], [0, 100], [50, 100], [50, 0]])  # (row, col) data coordinates
    r = from_napari_shapes(
        [rect, rect], ["rectangle", "ellipse"], scale=(0.5, 0.5), translate=(10, 20), names=["a", "b"]
    )
    a, b = r.geometry
    assert a.bounds == (20.0, 10.0, 70.0, 35.0)  # x from columns, y from rows
    assert b.area == pytest.approx(np.pi * 25 * 12.5, rel=1e-3)
    with pytest.raises(DataModelError, match="enclose no area"):
        from_napari_shapes([rect], "path")


@pytest.mark.parametrize(("r_tum", "inner", "outer"), [(400.0, 100.0, 150.0), (300.0, 500.0, 500.0)])
def test_margin_bands_of_a_disc(r_tum, inner, outer):
    disc = shapely.Point(0, 0).buffer(r_tum, quad_segs=256)
    tissue = shapely.Point(0, 0).buffer(5000, quad_segs=256)
    reg = margin_bands(make_regions(["tumour", "tissue"], [disc, tissue]), widths_um=(inner, outer))
    a = reg.set_index("compartment").area
    r_in = max(r_tum - inner, 0.0)
    assert a[MARGIN_INNER] == pytest.approx(np.pi * (r_tum**2 - r_in**2), rel=1e-3)
    assert a[MARGIN_OUTER] == pytest.approx(np.pi * ((r_tum + outer) ** 2 - r_tum**2), rel=1e-3)
    assert a[MARGIN] == pytest.approx(a[MARGIN_INNER] + a[MARGIN_OUTER], rel=1e-9)
    if r_in > 0:
        assert a[TUMOUR_CORE] == pytest.approx(np.pi * r_in**2, rel=1e-3)
    else:  # the inner band takes the whole tumour: no zero-area core row
        assert TUMOUR_CORE not in a.index
    assert reg.attrs["spatialpath"]["margin_bands"]["widths_um"] == [inner, outer]


def test_outer_band_is_clipped_to_tissue_and_frame_edges_are_no_border():
    tumour = shapely.box(0, 0, 1000, 1000)
    tissue = shapely.box(0, 0, 1200, 1000)  # 200 µm of tissue right of the tumour
    reg = margin_bands(make_regions(["tumour", "tissue"], [tumour, tissue]), widths_um=(100, 300))
    a = reg.set_index("compartment").area
    assert a[MARGIN_OUTER] == pytest.approx(200 * 1000)  # clipped to the tissue
    framed = margin_bands(make_regions(["tumour"], [tumour]), widths_um=(100, 0), frame=(0, 0, 2000, 1000))
    # only the right edge (x = 1000) is a border: the other three lie on the frame
    assert framed.set_index("compartment").area[MARGIN_INNER] == pytest.approx(100 * 1000)


def test_immunoscore_band_is_1mm():
    tumour = shapely.box(0, 0, 3000, 4000)
    reg = make_regions(["tumour", "tissue"], [tumour, shapely.box(0, 0, 8000, 4000)])
    out = immunoscore_bands(reg, frame=(0, 0, 8000, 4000))
    a = out.set_index("compartment").area
    assert a[MARGIN] / 4000 == pytest.approx(1000.0)  # total width 1 mm: 500 µm each side
    assert a[MARGIN_INNER] / 4000 == pytest.approx(500.0)
    assert a[TUMOUR_CORE] == pytest.approx(2500 * 4000)
    assert out.attrs["spatialpath"]["margin_bands"]["convention"] == "immunoscore"
    cells = _cells([[2700, 2000], [3200, 2000], [1000, 2000], [5000, 2000]])
    labels = assign_cells(cells, out)
    assert labels.tolist() == [MARGIN_INNER, MARGIN_OUTER, TUMOUR_CORE, "tissue"]


def test_assign_cells_priority_and_outside():
    reg = make_regions(["tissue", "tumour"], [shapely.box(0, 0, 10, 10), shapely.box(0, 0, 5, 5)])
    a = _cells([[1, 1], [7, 7], [50, 50]])
    assert assign_cells(a, reg).tolist() == ["tumour", "tissue", "outside"]
    got = assign_cells(a, reg, priority=["tissue", "tumour"], key_added="where")
    assert a.obs["where"].tolist() == ["tissue", "tissue", "outside"]
    assert list(got.cat.categories) == ["tissue", "tumour", "outside"]


def test_signed_distance_disc_both_methods_and_images():
    disc = shapely.Point(0, 0).buffer(100, quad_segs=512)
    rng = np.random.default_rng(2)
    xy = rng.uniform(-300, 300, (5000, 2))
    truth = np.hypot(xy[:, 0], xy[:, 1]) - 100
    a = _cells(np.vstack([xy, xy]), image_id=["a"] * 5000 + ["b"] * 5000)
    shifted = shapely.transform(disc, lambda c: c + np.array([10.0, 0.0]))
    reg = make_regions(["tumour", "tumour"], [disc, shifted], image_id=["a", "b"])
    poly = signed_distance(a, reg, method="polygon")
    np.testing.assert_allclose(poly[:5000], truth, atol=1e-3)
    np.testing.assert_allclose(poly[5000:], np.hypot(xy[:, 0] - 10, xy[:, 1]) - 100, atol=1e-3)
    raster = signed_distance(a, reg, method="raster", resolution_um=1.0, key_added="d")
    assert np.abs(raster[:5000] - truth).max() < 1.0  # within a raster pixel
    assert "d" in a.obs
    with pytest.raises(DataModelError, match="no 'epithelium' compartment"):
        signed_distance(a, reg, tumour="epithelium")


# --- the image frame survives pd.concat of per-image tables (a "frame" column per row) ---


def _half_tumour_mask(n=100):
    """Tumour in the left half (cut by three frame edges), stroma in the right half."""
    m = np.full((n, n), 2, np.int32)
    m[:, : n // 2] = 1
    return m


def test_concatenated_from_mask_tables_keep_each_image_frame():
    import pandas as pd

    m = _half_tumour_mask()
    cats = {1: "tumour", 2: "stroma"}
    r_a = from_mask(m, pixel_size_um=1.0, categories=cats, image_id="A")
    r_b = from_mask(m, pixel_size_um=1.0, origin_um=(1000.0, 0.0), categories=cats, image_id="B")
    both = pd.concat([r_a, r_b], ignore_index=True)
    assert both.attrs == {}  # pandas drops differing attrs: the frame must not live there only
    # tumour x ∈ [-0.5, 49.5] (A) and [999.5, 1049.5] (B); only x = 49.5 / 1049.5 is a border
    a = _cells(
        [[25, 1], [25, 50], [60, 1], [1025, 1], [1025, 50], [1060, 98]], image_id=["A"] * 3 + ["B"] * 3
    )
    truth = [-24.5, -24.5, 10.5, -24.5, -24.5, 10.5]
    np.testing.assert_allclose(signed_distance(a, both, method="polygon", key_added=None), truth)
    raster = signed_distance(a, both, method="raster", resolution_um=1.0, key_added=None)
    np.testing.assert_allclose(raster, truth, atol=1e-9)
    # bands: a 10 µm strip on each side of the one true border, 100 µm long, inside each frame
    bands = margin_bands(both, widths_um=(10, 10))
    for image, x0 in (("A", -0.5), ("B", 999.5)):
        sub = bands[bands["image_id"] == image].set_index("compartment")
        assert sub.area[MARGIN_INNER] == pytest.approx(10 * 100)
        assert sub.area[MARGIN_OUTER] == pytest.approx(10 * 100)
        assert sub.area[MARGIN] == pytest.approx(20 * 100)
        assert sub.area[TUMOUR_CORE] == pytest.approx(40 * 100)
        frame = shapely.box(x0, -0.5, x0 + 100, 99.5)
        assert all(frame.covers(g) for g in sub.geometry)
        assert sub.geometry[MARGIN_INNER].equals(shapely.box(x0 + 40, -0.5, x0 + 50, 99.5))
    # the bands' rows carry the frame too: concatenating margin_bands outputs keeps working
    again = pd.concat([margin_bands(r_a, widths_um=(10, 10)), margin_bands(r_b, widths_um=(10, 10))])
    np.testing.assert_allclose(signed_distance(a, again, method="polygon", key_added=None), truth)
    got = again.set_index(["image_id", "compartment"]).area
    want = bands.set_index(["image_id", "compartment"]).area
    pd.testing.assert_series_equal(got.sort_index(), want.sort_index())


def test_concatenated_immunoscore_bands_are_per_image():
    import pandas as pd

    m = _half_tumour_mask()  # 20 µm pixels: a 2 mm field, tumour x ∈ [-10, 990]
    cats = {1: "tumour", 2: "stroma"}
    parts = [
        from_mask(m, pixel_size_um=20.0, origin_um=(5000.0 * k, 0.0), categories=cats, image_id=str(k))
        for k in range(2)
    ]
    out = immunoscore_bands(pd.concat(parts, ignore_index=True))
    for k in range(2):
        a = out[out["image_id"] == str(k)].set_index("compartment").area
        assert a[MARGIN_INNER] == pytest.approx(500 * 2000)
        assert a[MARGIN_OUTER] == pytest.approx(500 * 2000)
        assert a[TUMOUR_CORE] == pytest.approx(500 * 2000)


def test_frame_column_of_make_regions_and_conflicting_frames():
    r = make_regions(["tumour"], [shapely.box(0, 0, 5, 10)], image_id="x", frame=(0, 0, 20, 10))
    assert shapely.from_wkt(r["frame"].iloc[0]).equals(shapely.box(0, 0, 20, 10))
    a = _cells([[1, 5]], image_id=["x"])
    np.testing.assert_allclose(signed_distance(a, r, method="polygon", key_added=None), [-4.0])
    r.loc[1] = ["x", "stroma", shapely.to_wkt(shapely.box(0, 0, 30, 10)), shapely.box(5, 0, 20, 10)]
    with pytest.raises(DataModelError, match="different frames"):
        margin_bands(r, widths_um=(1, 1))


# --- no zero-area band rows; images without a tumour get no bands ---


def test_small_tumour_immunoscore_has_no_empty_core_row():
    tumour = shapely.box(1200, 1200, 1800, 1800)  # 0.6 mm across: the inner 500 µm takes it all
    reg = make_regions(["tissue", "tumour"], [shapely.box(0, 0, 3000, 3000), tumour])
    out = immunoscore_bands(reg)
    validate_regions(out)  # no zero-area row
    a = out.set_index("compartment").area
    assert TUMOUR_CORE not in a.index
    assert a[MARGIN_INNER] == pytest.approx(600 * 600)
    expected_outer = shapely.difference(shapely.buffer(tumour, 500, quad_segs=256), tumour).area
    assert a[MARGIN_OUTER] == pytest.approx(expected_outer, rel=1e-3)  # 1600² − (4 − π)·500² − 600²
    assert a[MARGIN_OUTER] == pytest.approx(1600**2 - (4 - np.pi) * 500**2 - 600**2, rel=1e-3)
    labels = assign_cells(_cells([[1500, 1500], [1000, 1500], [100, 100]]), out)
    assert labels.tolist() == [MARGIN_INNER, MARGIN_OUTER, "tissue"]


@pytest.mark.parametrize(("widths", "absent"), [((0, 100), MARGIN_INNER), ((100, 0), MARGIN_OUTER)])
def test_zero_width_gives_no_band_row(widths, absent):
    tumour = shapely.box(400, 400, 600, 600)
    reg = make_regions(["tissue", "tumour"], [shapely.box(0, 0, 1000, 1000), tumour])
    out = margin_bands(reg, widths_um=widths)
    validate_regions(out)
    a = out.set_index("compartment").area
    assert absent not in a.index
    inner, outer = widths
    if inner == 0:
        assert a[TUMOUR_CORE] == pytest.approx(200 * 200)
        ring = shapely.difference(shapely.buffer(tumour, outer, quad_segs=32), tumour).area
        assert a[MARGIN_OUTER] == pytest.approx(ring)
        assert a[MARGIN] == pytest.approx(ring)
    else:
        assert a[MARGIN_INNER] == pytest.approx(200 * 200)
        assert TUMOUR_CORE not in a.index
        assert a[MARGIN] == pytest.approx(200 * 200)


def test_image_without_tumour_gets_no_bands_and_is_recorded():
    boxes = [shapely.box(0, 0, 1000, 1000), shapely.box(0, 0, 500, 1000), shapely.box(500, 0, 1000, 1000)]
    reg = make_regions(
        ["tissue", "tumour", "stroma", "tissue", "stroma"],
        [*boxes, boxes[0], boxes[0]],
        image_id=["A", "A", "A", "B", "B"],
    )
    with pytest.warns(UserWarning, match=r"no 'tumour'.*\['B'\]"):
        out = margin_bands(reg, widths_um=(50, 50))
    validate_regions(out)
    assert out.attrs["spatialpath"]["margin_bands"]["images_without_tumour"] == ["B"]
    assert out[out["image_id"] == "B"]["compartment"].tolist() == ["tissue", "stroma"]
    a = out[out["image_id"] == "A"].set_index("compartment").area
    # no frame: the whole tumour boundary is a border; the outer band is clipped to the tissue
    assert a[MARGIN_INNER] == pytest.approx(500 * 1000 - 400 * 900)
    assert a[MARGIN_OUTER] == pytest.approx(50 * 1000)
    with pytest.raises(DataModelError, match="no 'tumour' compartment"):
        margin_bands(reg[reg["image_id"] == "B"])


def test_outer_band_without_tissue_is_clipped_to_the_other_compartments_and_frame():
    tumour, stroma = shapely.box(200, 200, 600, 800), shapely.box(600, 200, 900, 800)
    out = margin_bands(make_regions(["tumour", "stroma"], [tumour, stroma]), widths_um=(100, 100))
    a = out.set_index("compartment").area
    assert a[MARGIN_OUTER] == pytest.approx(100 * 600)  # the stroma strip x ∈ [600, 700]
    ring = shapely.difference(shapely.buffer(tumour, 100, quad_segs=32), tumour)
    assert a[MARGIN_OUTER] == pytest.approx(shapely.intersection(ring, stroma).area)
    # tumour only, from a mask: clipped to the frame (the tumour touches its left edge)
    m = np.zeros((100, 100), np.int32)
    m[40:60, 0:20] = 1
    r = from_mask(m, pixel_size_um=1.0, categories={1: "tumour"})
    band = margin_bands(r, widths_um=(5, 10)).set_index("compartment").geometry[MARGIN_OUTER]
    frame, tum = shapely.box(-0.5, -0.5, 99.5, 99.5), r.geometry.iloc[0]
    assert frame.covers(band)
    expected = shapely.intersection(shapely.difference(shapely.buffer(tum, 10, quad_segs=32), tum), frame)
    assert band.area == pytest.approx(expected.area)
    assert band.area == pytest.approx(2 * 20 * 10 + 20 * 10 + 2 * np.pi * 100 / 4, rel=1e-3)
