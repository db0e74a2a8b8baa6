"""Sample data, writers (GeoJSON compartments, landmark CSV in µm) and the npe2 manifest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest

napari = pytest.importorskip("napari")

from spatialpath.napari import _keys  # noqa: E402
from spatialpath.napari._writer import data_to_world, write_compartments, write_landmarks  # noqa: E402
from spatialpath.regions import read_geojson  # noqa: E402

NPE2 = Path(sys.executable).parent / "npe2"


def test_npe2_validate_imports_every_contribution():
    res = subprocess.run(
        [str(NPE2), "validate", "spatialpath", "--imports"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_open_sample_simulated_tissue(make_napari_viewer_proxy):
    viewer = make_napari_viewer_proxy()
    viewer.open_sample("spatialpath", "simulated_tissue")
    kinds = {ly.metadata.get(_keys.KIND) for ly in viewer.layers}
    assert kinds == {"image", "cell_types", "cells", "compartments"}
    cells = next(ly for ly in viewer.layers if ly.metadata[_keys.KIND] == "cells")
    adata = cells.metadata[_keys.ADATA]
    assert adata.n_obs == 2000
    np.testing.assert_array_equal(cells.data, adata.obsm["spatial"][:, ::-1])
    palette = dict(zip(adata.obs["cell_type"].cat.categories, adata.uns["cell_type_colors"], strict=True))
    expected = mpl.colors.to_rgba_array([palette[c] for c in adata.obs["cell_type"]])
    np.testing.assert_allclose(cells.face_color, expected, atol=1e-6)
    dapi = viewer.layers["DAPI"]
    assert dapi.visible
    assert not viewer.layers["Ki67"].visible
    assert tuple(dapi.scale) == (1.0, 1.0)
    shapes = next(ly for ly in viewer.layers if ly.metadata[_keys.KIND] == "compartments")
    assert set(shapes.features["compartment"]) == {"tissue", "tumour", "stroma"}


def test_write_compartments_roundtrip_in_um(tmp_path, make_napari_viewer_proxy):
    viewer = make_napari_viewer_proxy()
    # a rectangle drawn in the pixel grid of an image at 0.5 µm/px whose pixel (0, 0) is at (x 100, y 20) µm
    square = np.array([[0, 0], [0, 40], [20, 40], [20, 0]], float)  # (row, col)
    layer = viewer.add_shapes(
        [square], shape_type="rectangle", scale=(0.5, 0.5), translate=(20.0, 100.0), name="tumour",
        metadata={_keys.IMAGE_ID: "img1"},
    )  # fmt: skip
    data, meta, _ = layer.as_layer_data_tuple()
    out = write_compartments(str(tmp_path / "c.geojson"), data, meta)
    regions = read_geojson(out[0])
    assert regions["compartment"].tolist() == ["tumour"]
    assert regions["image_id"].tolist() == ["img1"]
    world = np.array([layer.data_to_world(v) for v in square])  # (y, x) µm
    x0, y0, x1, y1 = regions.total_bounds
    assert (x0, x1) == pytest.approx((world[:, 1].min(), world[:, 1].max()))
    assert (y0, y1) == pytest.approx((world[:, 0].min(), world[:, 0].max()))
    assert regions.area.iloc[0] == pytest.approx(20 * 10)  # 40 x 20 px of 0.5 µm


def test_write_landmarks_csv_x_is_the_column_axis(tmp_path, make_napari_viewer_proxy):
    viewer = make_napari_viewer_proxy()
    pts = np.array([[10.0, 30.0], [50.0, 5.0]])  # (row, col)
    affine = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -7.0], [0.0, 0.0, 1.0]])
    layer = viewer.add_points(pts, scale=(2.0, 2.0), translate=(1.0, 4.0), affine=affine,
                              features={"name": ["a", "b"]})  # fmt: skip
    data, meta, _ = layer.as_layer_data_tuple()
    out = write_landmarks(str(tmp_path / "lm.csv"), data, meta)
    table = pd.read_csv(out[0])
    assert table.columns.tolist() == ["landmark", "x_um", "y_um"]
    world = np.array([layer.data_to_world(p) for p in pts])
    np.testing.assert_allclose(table[["y_um", "x_um"]].to_numpy(), world)
    np.testing.assert_allclose(data_to_world(data, meta), world)
    assert table["landmark"].tolist() == ["a", "b"]
    assert not list(tmp_path.glob(".*tmp"))


def test_writer_errors(tmp_path):
    from spatialpath.model import DataModelError

    with pytest.raises(DataModelError, match="no shapes: draw at least one polygon"):
        write_compartments(str(tmp_path / "x.geojson"), [], {})
    with pytest.raises(DataModelError, match=r"\(n, 2\) array"):
        data_to_world(np.zeros(3), {})
