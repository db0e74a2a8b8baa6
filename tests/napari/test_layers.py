"""spatialpath's napari layers: µm frame, (y, x) order, scanpy colours, affines, metadata contract."""

from __future__ import annotations

import anndata as ad
import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
import shapely

napari = pytest.importorskip("napari")

from napari.utils.colormaps import DirectLabelColormap  # noqa: E402

from spatialpath.align import Transform, random_displacement  # noqa: E402
from spatialpath.datasets import simulate_tissue  # noqa: E402
from spatialpath.model import DataModelError, make_image, make_labels  # noqa: E402
from spatialpath.napari import _keys  # noqa: E402
from spatialpath.napari._layers import (  # noqa: E402
    cell_type_labels_layer,
    cells_layer,
    image_layer,
    labels_layer,
    regions_layer,
    spots_layer,
    transform_to_affine,
)
from spatialpath.napari._view import add_layers  # noqa: E402
from spatialpath.regions import make_regions  # noqa: E402


@pytest.fixture(scope="module")
def tissue():
    return simulate_tissue(3, n_cells=600, pixel_size_um=1.0)


def _uns_rgba(adata, key="cell_type"):
    """Independent reference: each cell's colour looked up in uns by its category name."""
    palette = dict(zip(adata.obs[key].cat.categories, adata.uns[f"{key}_colors"], strict=True))
    return mpl.colors.to_rgba_array([palette[c] for c in adata.obs[key]])


def test_cells_layer_points_colours_features_and_metadata(tissue, make_napari_viewer_proxy):
    adata = tissue.adata
    data, kw, kind = cells_layer(adata)
    assert kind == "points"
    np.testing.assert_array_equal(data, adata.obsm["spatial"][:, ::-1])
    np.testing.assert_allclose(kw["face_color"], _uns_rgba(adata), atol=1e-6)
    assert kw["metadata"][_keys.KIND] == "cells"
    assert kw["metadata"][_keys.ADATA] is adata
    # default size: median equivalent diameter of the cells' areas
    assert kw["size"] == pytest.approx(2 * np.sqrt(np.median(adata.obs["area_um2"]) / np.pi))

    viewer = make_napari_viewer_proxy()
    (layer,) = add_layers(viewer, [(data, kw, kind)])
    np.testing.assert_allclose(layer.face_color, _uns_rgba(adata), atol=1e-6)
    assert layer.features["cell_type"].dtype == "category"
    pd.testing.assert_frame_equal(layer.features, adata.obs.reset_index(drop=True))
    # points hold µm directly: world coordinates = (y, x) µm
    np.testing.assert_allclose(layer.data_to_world(layer.data[5]), adata.obsm["spatial"][5, ::-1])
    assert str(layer.units[0]) == "micrometer"


def test_cells_layer_one_image_of_many_and_marker_colours():
    rng = np.random.default_rng(0)
    obs = pd.DataFrame(
        {"image_id": pd.Categorical(["a"] * 3 + ["b"] * 2), "cell_type": pd.Categorical(list("TBTBT"))},
        index=[f"c{i}" for i in range(5)],
    )
    adata = ad.AnnData(X=rng.random((5, 2)), obs=obs, var=pd.DataFrame(index=["CD8", "CD20"]))
    adata.obsm["spatial"] = rng.random((5, 2)) * 100
    data, kw, _ = cells_layer(adata, image_id="b")
    np.testing.assert_array_equal(data, adata.obsm["spatial"][3:, ::-1])
    assert kw["metadata"][_keys.ADATA].obs_names.tolist() == ["c3", "c4"]
    assert kw["metadata"][_keys.IMAGE_ID] == "b"
    assert kw["name"] == "cells b"
    # a marker: viridis of the value between its 1st and 99th percentiles
    _, kw, _ = cells_layer(adata, color_by="CD8")
    x = adata[:, "CD8"].X.ravel()
    lo, hi = np.percentile(x, [1, 99])
    expected = mpl.colormaps["viridis"](np.clip((x - lo) / (hi - lo), 0, 1))
    np.testing.assert_allclose(kw["face_color"], expected, atol=1e-6)


def test_cells_layer_errors():
    adata = ad.AnnData(obs=pd.DataFrame({"cell_type": ["T", "B"]}, index=["a", "b"]))
    with pytest.raises(DataModelError, match=r"obsm\['spatial'\].*\(n_cells, 2\)"):
        cells_layer(adata)
    adata.obsm["spatial"] = np.zeros((2, 2))
    _, kw, _ = cells_layer(adata)  # a string column is coloured as its categories would be
    as_cat = adata.copy()
    as_cat.obs["cell_type"] = as_cat.obs["cell_type"].astype("category")
    np.testing.assert_array_equal(kw["face_color"], cells_layer(as_cat)[1]["face_color"])
    with pytest.raises(DataModelError, match="neither an obs column nor a marker"):
        cells_layer(adata, color_by="CD8")
    adata.obs["image_id"] = "a"
    with pytest.raises(DataModelError, match=r"no cell has obs\['image_id'\] == 'x'"):
        cells_layer(adata, color_by=None, image_id="x")


def test_image_layer_pixels_are_at_their_um_coordinates(make_napari_viewer_proxy):
    rng = np.random.default_rng(1)
    img = make_image(
        rng.integers(0, 1000, (2, 40, 60)).astype(np.uint16),
        channels=["DAPI", "CD8"],
        pixel_size_um=0.65,
        origin_um=(12.0, -3.0),
    )
    data, kw, kind = image_layer(img)
    assert kw["name"] == ["DAPI", "CD8"]
    assert kw["visible"] == [True, True]
    for c in range(2):  # contrast limits: the channel's (0.5, 99.9) percentiles (image < thumbnail size)
        assert kw["contrast_limits"][c] == pytest.approx(np.percentile(img.values[c], [0.5, 99.9]))
    viewer = make_napari_viewer_proxy()
    layers = add_layers(viewer, [(data, kw, kind)])
    assert [ly.name for ly in layers] == ["DAPI", "CD8"]
    row, col = 17, 41
    world = layers[1].data_to_world((row, col))
    np.testing.assert_allclose(world, [float(img.y[row]), float(img.x[col])])
    assert str(layers[0].units[1]) == "micrometer"


def test_affine_placed_layer_matches_transform_apply_points(make_napari_viewer_proxy):
    img = make_image(
        np.zeros((1, 30, 50), np.float32), channels=["HE"], pixel_size_um=2.0, origin_um=(5.0, 7.0)
    )
    t = Transform.from_params(rotation_deg=25.0, scale=1.3, translation=(40.0, -15.0), source="he")
    data, kw, kind = image_layer(img, transform=t, contrast_limits=(0, 1))
    viewer = make_napari_viewer_proxy()
    (layer,) = add_layers(viewer, [(data, kw, kind)])
    rows, cols = np.array([0, 12, 29]), np.array([0, 33, 49])
    xy_source = np.column_stack([img.x.values[cols], img.y.values[rows]])
    expected = t.apply_points(xy_source)[:, ::-1]  # (y, x) in the target frame
    got = np.array([layer.data_to_world((r, c)) for r, c in zip(rows, cols, strict=True)])
    np.testing.assert_allclose(got, expected, atol=1e-9)
    np.testing.assert_array_equal(layer.data, img.values[0])  # no resampling


def test_nonrigid_transform_is_refused_naming_apply_transform():
    field = random_displacement((100.0, 100.0), amplitude_um=2.0, length_scale_um=30.0, seed=0)
    t = Transform(np.eye(3), "he", "global", field)
    img = make_image(np.zeros((1, 10, 10)), channels=["HE"], pixel_size_um=1.0)
    with pytest.raises(DataModelError, match=r"non-rigid.*spatialpath\.align\.apply_transform"):
        image_layer(img, transform=t)
    assert transform_to_affine(None) is None


def test_image_layer_errors():
    img = make_image(np.zeros((2, 4, 4)), channels=["a", "b"], pixel_size_um=1.0)
    with pytest.raises(DataModelError, match=r"dims \('c', 'y', 'x'\)"):
        image_layer(img.isel(c=0))
    with pytest.raises(DataModelError, match="one \\(lo, hi\\) pair or one per channel \\(2\\)"):
        image_layer(img, contrast_limits=[(0, 1)] * 3)
    bad = img.copy()
    bad.attrs.pop("pixel_size_um")
    with pytest.raises(DataModelError, match=r"no attrs\['pixel_size_um'\]"):
        image_layer(bad)
    with pytest.raises(DataModelError, match=r"dims \('y', 'x'\)"):
        labels_layer(img)


def test_rgb_image_is_one_layer():
    rgb = make_image(
        np.zeros((3, 8, 8), np.uint8), channels=["R", "G", "B"], pixel_size_um=1.0, image_id="he"
    )
    data, kw, _ = image_layer(rgb)
    assert kw["rgb"]
    assert data.shape == (8, 8, 3)
    assert kw["name"] == "he"
    assert kw["contrast_limits"] == [0, 255]


def test_cell_type_labels_direct_colormap(tissue, make_napari_viewer_proxy):
    labels, adata = tissue.labels[:300, :300].compute(), tissue.adata
    data, kw, kind = cell_type_labels_layer(labels, adata)
    assert kw["metadata"][_keys.KIND] == "cell_types"
    viewer = make_napari_viewer_proxy()
    (layer,) = add_layers(viewer, [(data, kw, kind)])
    assert isinstance(layer.colormap, DirectLabelColormap)
    ref = dict(zip(adata.obs["label"], _uns_rgba(adata), strict=True))
    present = [v for v in np.unique(labels.values) if v]
    assert len(present) > 20
    for v in present[:50]:
        np.testing.assert_allclose(layer.colormap.map(v), ref[v], atol=1e-6)
    np.testing.assert_allclose(layer.colormap.map(0), [0, 0, 0, 0])
    assert layer.data_to_world((3, 4)) == pytest.approx((float(labels.y[3]), float(labels.x[4])))
    with pytest.raises(DataModelError, match=r"obs\['lbl'\] is missing"):
        cell_type_labels_layer(labels, adata, label_key="lbl")


def test_regions_layer_shapes_and_colours(make_napari_viewer_proxy):
    ring = shapely.box(0, 0, 100, 50).difference(shapely.box(10, 10, 20, 20))
    regions = make_regions(["tumour", "stroma"], [ring, shapely.box(100, 0, 150, 50)])
    data, kw, kind = regions_layer(regions)
    assert kw["metadata"][_keys.REGIONS] is regions
    assert kw["metadata"][_keys.KIND] == "compartments"
    viewer = make_napari_viewer_proxy()
    (layer,) = add_layers(viewer, [(data, kw, kind)])
    assert layer.features["compartment"].tolist() == ["tumour", "tumour", "stroma"]
    assert layer.features["hole"].tolist() == [False, True, False]
    np.testing.assert_allclose(layer.edge_color[0], mpl.colors.to_rgba("#d62728"))
    np.testing.assert_allclose(layer.edge_color[2], mpl.colors.to_rgba("#2ca02c"))
    # vertices are (y, x) µm: the stroma box spans x 100..150, y 0..50
    np.testing.assert_allclose(np.sort(layer.data[2][:, 1]), [100, 100, 150, 150])
    np.testing.assert_allclose(layer.data_to_world(layer.data[2][0]), layer.data[2][0])


def test_spots_layer_from_real_visium(shared):
    from spatialpath.io import read_visium, read_visium_positions

    adata = read_visium(shared("scanpy_visium_testdata", "1.0.0"), load_images=False)
    data, kw, _ = spots_layer(adata)
    np.testing.assert_array_equal(data, adata.obsm["spatial"][:, ::-1])
    assert kw["size"] == 65.0
    assert kw["symbol"] == "disc"
    # independent µm positions of the same spots (Space Ranger pixels x 65 / spot_diameter_fullres)
    pos = read_visium_positions(shared("scanpy_visium_testdata", "1.0.0")).loc[adata.obs_names]
    np.testing.assert_allclose(data, pos[["y_um", "x_um"]].to_numpy())
    raw = adata.copy()
    raw.uns["spatialpath"]["images"][next(iter(raw.uns["spatial"]))]["extra"] = {}
    with pytest.raises(DataModelError, match=r"full-resolution pixels.*read_visium"):
        spots_layer(raw)
    assert spots_layer(raw, diameter_um=55.0)[1]["size"] == 55.0


def test_labels_layer_class_mask_features():
    m = make_labels(np.array([[0, 1], [2, 1]]), pixel_size_um=1.0)
    m.attrs["categories"] = ["background", "tumour", "stroma"]
    _, kw, _ = labels_layer(m)
    assert kw["features"]["name"].tolist() == ["background", "tumour", "stroma"]
