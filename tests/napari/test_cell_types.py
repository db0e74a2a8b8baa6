"""The "Cell types and markers" widget: pure colour/legend/mask functions and the Qt widget on a viewer."""

from __future__ import annotations

import time
from types import SimpleNamespace

import anndata as ad
import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest

from spatialpath.datasets import simulate_tissue
from spatialpath.model import DataModelError
from spatialpath.napari import _cell_types as ct
from spatialpath.napari._keys import ADATA, IMAGE_ID, KIND

napari = pytest.importorskip("napari")


@pytest.fixture(scope="module")
def tissue():
    return simulate_tissue(seed=0, n_cells=2000)


@pytest.fixture
def adata(tissue):
    return tissue.adata.copy()


def _expected_rgba(adata, key):
    """Independent reference: uns colours looked up cell by cell through the category names."""
    lut = dict(zip(adata.obs[key].cat.categories, adata.uns[f"{key}_colors"], strict=True))
    return np.array([mpl.colors.to_rgba(lut[c]) for c in adata.obs[key]], np.float32)


def _add_cells(viewer, adata, **kw):
    from spatialpath.napari._layers import cells_layer

    data, kwargs, kind = cells_layer(adata, **kw)
    assert kind == "points"
    return viewer.add_points(data, **kwargs)


# -- pure functions ------------------------------------------------------------------------------------
def test_point_colors_equal_uns_colors_exactly(adata):
    assert len(adata.uns["cell_type_colors"]) == 8
    np.testing.assert_array_equal(ct.point_colors(adata, "cell_type"), _expected_rgba(adata, "cell_type"))


def test_missing_colors_are_written_to_uns_as_category_colors(adata):
    from spatialpath.pl._palette import category_colors

    del adata.uns["cell_type_colors"]
    rgba = ct.point_colors(adata, "cell_type")
    assert list(adata.uns["cell_type_colors"]) == list(category_colors(adata, "cell_type").values())
    np.testing.assert_array_equal(rgba, _expected_rgba(adata, "cell_type"))
    # a wrong number of stored colours is replaced too (scanpy's rule)
    adata.uns["cell_type_colors"] = ["#000000"]
    ct.point_colors(adata, "cell_type")
    assert len(adata.uns["cell_type_colors"]) == 8


def test_marker_colors_follow_viridis_between_percentiles(adata):
    cd8 = adata.X[:, list(adata.var_names).index("CD8")].astype(float)
    np.testing.assert_array_equal(ct.marker_values(adata, "CD8"), cd8)
    lo, hi = np.percentile(cd8, [1, 99])
    assert ct.value_limits(cd8) == (lo, hi)
    expected = mpl.colormaps["viridis"](mpl.colors.Normalize(lo, hi, clip=True)(cd8))
    np.testing.assert_array_equal(ct.point_colors(adata, "CD8"), expected.astype(np.float32))
    # the brightest cells (above the 99th percentile) are CD8 T cells: the marker is specific
    top = cd8 >= hi
    assert (adata.obs["cell_type"][top] == "CD8 T").mean() > 0.9


def test_numeric_obs_column_and_missing_values(adata):
    adata.obs["area_um2"] = adata.obs["area_um2"].astype(float)
    adata.obs.iloc[:5, adata.obs.columns.get_loc("area_um2")] = np.nan
    rgba = ct.point_colors(adata, "area_um2")
    np.testing.assert_array_equal(
        rgba[:5], np.tile(mpl.colors.to_rgba(ct.NA_COLOR), (5, 1)).astype(np.float32)
    )
    assert not ct.is_categorical(adata, "area_um2")
    assert ct.shown_mask(adata, "area_um2", {"Tumour"}).all()  # no categories to hide


def test_legend_counts_and_colours(adata):
    table = ct.legend(adata, "cell_type")
    counts = adata.obs["cell_type"].value_counts()
    assert table["category"].tolist() == list(adata.obs["cell_type"].cat.categories)
    assert table["n_cells"].tolist() == [int(counts[c]) for c in table["category"]]
    assert table["color"].tolist() == list(adata.uns["cell_type_colors"])
    assert table["n_cells"].sum() == adata.n_obs


def test_missing_labels_are_grey_and_listed(adata):
    adata.obs["cell_type"] = adata.obs["cell_type"].astype(object)
    adata.obs.iloc[:7, adata.obs.columns.get_loc("cell_type")] = None
    adata.obs["cell_type"] = adata.obs["cell_type"].astype("category")
    rgba = ct.point_colors(adata, "cell_type")
    assert (rgba[:7] == np.asarray(mpl.colors.to_rgba(ct.NA_COLOR), np.float32)).all()
    table = ct.legend(adata, "cell_type")
    assert table.iloc[-1].tolist() == ["NA", ct.NA_COLOR, 7]
    assert ct.shown_mask(adata, "cell_type", {"NA"}).sum() == adata.n_obs - 7


def test_string_column_is_categorical_without_touching_uns(adata):
    adata.obs["grade"] = np.where(np.arange(adata.n_obs) % 3 == 0, "high", "low")
    rgba = ct.point_colors(adata, "grade")
    assert "grade_colors" not in adata.uns
    assert len(np.unique(rgba, axis=0)) == 2
    assert ct.legend(adata, "grade")["n_cells"].tolist() == [
        int((adata.obs["grade"] == g).sum()) for g in ("high", "low")
    ]


def test_shown_mask_hides_exactly_the_hidden_types(adata):
    hidden = {"Tumour", "Fibroblast"}
    mask = ct.shown_mask(adata, "cell_type", hidden)
    np.testing.assert_array_equal(mask, ~adata.obs["cell_type"].isin(hidden).to_numpy())
    assert ct.shown_mask(adata, "cell_type", set()).all()


def test_color_keys_list_obs_then_markers(adata):
    keys = ct.color_keys(adata)
    assert keys[: len(adata.obs.columns)] == list(adata.obs.columns)
    assert keys[len(adata.obs.columns) :] == list(adata.var_names)


def test_errors_name_the_problem(adata):
    with pytest.raises(DataModelError, match="neither an obs column nor a marker"):
        ct.point_colors(adata, "CD999")
    with pytest.raises(DataModelError, match="is numeric: it has a colour scale"):
        ct.legend(adata, "CD8")
    with pytest.raises(DataModelError, match="no cells layer"):
        ct.layer_adata(None)
    with pytest.raises(DataModelError, match="has no AnnData in metadata"):
        ct.layer_adata(SimpleNamespace(name="points", metadata={}, data=np.zeros((3, 2))))
    with pytest.raises(DataModelError, match="has 3 points but its AnnData 2000 cells"):
        ct.layer_adata(SimpleNamespace(name="p", metadata={ADATA: adata}, data=np.zeros((3, 2))))


def test_apply_to_a_duck_typed_layer_without_napari(adata):
    layer = SimpleNamespace(
        name="cells", data=np.zeros((adata.n_obs, 2)), metadata={KIND: "cells", ADATA: adata}
    )
    out = ct.apply_to_layer(layer, "cell_type", {"Tumour"})
    shown = (adata.obs["cell_type"] != "Tumour").to_numpy()
    expected = _expected_rgba(adata, "cell_type")
    expected[~shown, 3] = 0  # hidden cells are transparent (napari ignores shown for 2-D points)
    np.testing.assert_array_equal(layer.face_color, expected)
    np.testing.assert_array_equal(layer.shown, shown)
    assert out == {"key": "cell_type", "categorical": True, "limits": None, "n_shown": int(layer.shown.sum())}
    assert ct.cells_layers([SimpleNamespace(metadata={}), layer]) == [layer]


# -- the widget -------------------------------------------------------------------------------------------
def test_widget_colours_toggles_and_lists_types(make_napari_viewer, adata):
    from spatialpath.napari._qt._cell_types import CellTypesWidget

    viewer = make_napari_viewer(show=False)
    viewer.add_points(np.zeros((2, 2)), name="not cells")  # ignored: no spatialpath metadata
    layer = _add_cells(viewer, adata, color_by="area_um2")
    widget = CellTypesWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.layer is layer
    assert widget.layer_combo.count() == 1
    assert widget.key == "area_um2"
    assert widget.legend_list.count() == 0

    widget.set_color_by("cell_type")
    np.testing.assert_array_equal(layer.face_color, _expected_rgba(adata, "cell_type"))
    assert layer.metadata["color_by"] == "cell_type"
    counts = adata.obs["cell_type"].value_counts()
    texts = [widget.legend_list.item(i).text() for i in range(widget.legend_list.count())]
    assert texts == [f"{c}  ({counts[c]:,})" for c in adata.obs["cell_type"].cat.categories]

    # untick Tumour in the legend: its cells are not drawn, the others are
    from qtpy.QtCore import Qt

    item = widget.legend_list.findItems("Tumour", Qt.MatchFlag.MatchStartsWith)[0]
    item.setCheckState(Qt.CheckState.Unchecked)
    assert widget.hidden == {"Tumour"}
    shown = (adata.obs["cell_type"] != "Tumour").to_numpy()
    np.testing.assert_array_equal(layer.shown, shown)
    np.testing.assert_array_equal(layer.face_color[:, 3], shown.astype(np.float32))
    np.testing.assert_array_equal(layer.face_color[shown], _expected_rgba(adata, "cell_type")[shown])
    assert widget.scale_label.text() == f"{shown.sum():,} of 2,000 cells shown"
    widget.hide_all.click()
    assert not layer.shown.any()
    assert not layer.face_color[:, 3].any()
    widget.show_all.click()
    assert layer.shown.all()
    assert layer.face_color[:, 3].all()

    widget.set_color_by("CD8")  # a marker: continuous colours, every cell shown
    np.testing.assert_array_equal(layer.face_color, ct.point_colors(adata, "CD8"))
    assert "viridis" in widget.scale_label.text()
    assert widget.legend_list.count() == 0
    widget.set_color_by("nope")
    assert "neither an obs column nor a marker" in widget.message.text()


def test_widget_without_cells_layer_says_so(make_napari_viewer, adata):
    from spatialpath.napari._qt._cell_types import CellTypesWidget

    viewer = make_napari_viewer(show=False)
    widget = CellTypesWidget(viewer)
    assert widget.layer is None
    assert "no cells layer" in widget.message.text()
    layer = _add_cells(viewer, adata)  # the widget follows the layer list
    assert widget.layer is layer
    assert widget.message.text() == ""
    viewer.layers.remove(layer)
    assert widget.layer is None
    assert "no cells layer" in widget.message.text()


def test_screenshot_shows_the_cell_type_colours(make_napari_viewer, tissue):
    from spatialpath.napari._qt._cell_types import CellTypesWidget

    adata = tissue.adata.copy()
    viewer = make_napari_viewer(show=True)
    layer = _add_cells(viewer, adata, size_um=12.0)
    widget = CellTypesWidget(viewer)
    viewer.window.add_dock_widget(widget)
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)

    def present(hex_color):
        rgb = np.rint(np.asarray(mpl.colors.to_rgb(hex_color)) * 255).astype(int)
        return int((np.abs(shot - rgb).max(axis=-1) <= 6).sum())

    colors = dict(zip(adata.obs["cell_type"].cat.categories, adata.uns["cell_type_colors"], strict=True))
    assert all(present(c) > 20 for c in colors.values()), {k: present(c) for k, c in colors.items()}
    widget.toggle("Tumour", False)  # the most common type disappears from the canvas
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    assert present(colors["Tumour"]) == 0
    assert present(colors["CD8 T"]) > 20
    assert layer.metadata[IMAGE_ID] is None


def test_recolouring_a_million_points_is_fast(make_napari_viewer):
    from spatialpath.napari._qt._cell_types import CellTypesWidget

    n = 1_000_000
    rng = np.random.default_rng(0)
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical.from_codes(rng.integers(0, 12, n), [f"t{i}" for i in range(12)]),
         "score": rng.normal(size=n)},
        index=pd.RangeIndex(n).astype(str),
    )  # fmt: skip
    adata = ad.AnnData(obs=obs, obsm={"spatial": rng.uniform(0, 20_000, (n, 2))})
    viewer = make_napari_viewer(show=False)
    layer = _add_cells(viewer, adata, color_by="score")
    widget = CellTypesWidget(viewer)
    timings = {}
    for key in ("cell_type", "score"):
        wall, cpu = time.perf_counter(), time.thread_time()
        widget.set_color_by(key)
        timings[key] = (time.perf_counter() - wall, time.thread_time() - cpu)
    wall, cpu = time.perf_counter(), time.thread_time()
    widget.set_color_by("cell_type")
    widget.toggle("t3", False)
    timings["toggle"] = (time.perf_counter() - wall, time.thread_time() - cpu)
    print(
        "10^6 points, (wall s, main-thread CPU s):",
        {k: tuple(round(x, 2) for x in v) for k, v in timings.items()},
    )
    np.testing.assert_array_equal(
        layer.face_color[:1000, :3], ct.point_colors(adata[:1000], "cell_type")[:, :3]
    )
    assert layer.shown.sum() == n - (obs["cell_type"] == "t3").sum() == (layer.face_color[:, 3] > 0).sum()
    # the budget is 2 s; the 2-core machine is shared, so wall time is bounded loosely and CPU time tightly
    assert timings["cell_type"][1] <= 2.0
    assert timings["score"][1] <= 2.0
    assert timings["cell_type"][0] <= 6.0
    assert timings["score"][0] <= 6.0
