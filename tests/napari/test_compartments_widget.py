"""The "Compartments and densities" widget: pure functions against independent references, then the widget."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely

napari = pytest.importorskip("napari")

from spatialpath.datasets import simulate_tissue  # noqa: E402
from spatialpath.model import DataModelError  # noqa: E402
from spatialpath.napari import _compartments as logic  # noqa: E402
from spatialpath.napari._keys import KIND  # noqa: E402
from spatialpath.napari._layers import cells_layer  # noqa: E402
from spatialpath.regions import make_regions  # noqa: E402

#: (row, col) data vertices of a concave polygon.
POLY = np.array([[10.0, 10.0], [10.0, 200.0], [120.0, 260.0], [90.0, 120.0], [220.0, 60.0]])


@pytest.fixture(scope="module")
def tissue():
    return simulate_tissue(seed=0, n_cells=1500)


def shoelace(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def transformed_layer(data, shape_type):
    theta = np.deg2rad(25)
    rot = np.array([[np.cos(theta), -np.sin(theta), 30.0], [np.sin(theta), np.cos(theta), -12.0], [0, 0, 1]])
    return napari.layers.Shapes(
        data, shape_type=shape_type, scale=(0.5, 0.8), translate=(100, 40), affine=rot
    )


# ---------------------------------------------------------------------- pure functions
def test_shapes_to_regions_through_data_to_world_equals_shoelace():
    layer = transformed_layer([POLY], "polygon")
    world = np.array([layer.data_to_world(v) for v in POLY])[:, ::-1]  # (x, y) µm, napari's own map
    regions = logic.shapes_to_regions(layer.data, layer.shape_type, ["tumour"], layer.data_to_world)
    assert regions["compartment"].tolist() == ["tumour"]
    assert regions.area.iloc[0] == pytest.approx(shoelace(world), rel=1e-12)
    assert shapely.equals_exact(
        regions.geometry.iloc[0].normalize(), shapely.Polygon(world).normalize(), 1e-9
    )


def test_ellipse_rectangle_and_hole():
    ell = napari.layers.Shapes(
        [np.array([[0.0, 0.0], [0.0, 40.0], [20.0, 40.0], [20.0, 0.0]])],
        shape_type="ellipse",
        scale=(2.0, 2.0),
    )
    r = logic.shapes_to_regions(ell.data, ell.shape_type, "stroma", ell.data_to_world)
    n = logic.ELLIPSE_VERTICES  # inscribed 256-gon of the 40 × 20 µm semi-axes ellipse
    assert r.area.iloc[0] == pytest.approx(0.5 * n * np.sin(2 * np.pi / n) * 40 * 20, rel=1e-9)
    rotated = transformed_layer([np.array([[0.0, 0.0], [0.0, 40.0], [20.0, 40.0], [20.0, 0.0]])], "ellipse")
    det = abs(np.linalg.det(logic.world_matrix(rotated.data_to_world)[:2, :2]))
    r = logic.shapes_to_regions(rotated.data, rotated.shape_type, "stroma", rotated.data_to_world)
    assert r.area.iloc[0] == pytest.approx(0.5 * n * np.sin(2 * np.pi / n) * 20 * 10 * det, rel=1e-9)
    outer = np.array([[0.0, 0.0], [0.0, 100.0], [100.0, 100.0], [100.0, 0.0]])
    r = logic.shapes_to_regions(
        [outer, outer / 4 + 10], ["rectangle", "polygon"], "tumour", holes=[False, True]
    )
    assert r.area.tolist() == [100 * 100 - 25 * 25]


def test_regions_to_shapes_round_trip_through_a_scaled_layer():
    ring = shapely.Polygon([(5, 5), (80, 10), (60, 70), (10, 50)]).difference(shapely.box(30, 30, 40, 40))
    regions = make_regions(["tumour", "stroma"], [ring, shapely.box(100, 0, 150, 40)])
    layer = napari.layers.Shapes(scale=(0.5, 0.5), translate=(3, 7))
    s = logic.regions_to_shapes(regions, layer.world_to_data)
    assert s["features"]["hole"].tolist() == [False, True, False]
    layer.add(s["data"], shape_type=s["shape_type"])
    back = logic.shapes_to_regions(
        layer.data,
        layer.shape_type,
        s["features"]["compartment"],
        layer.data_to_world,
        holes=s["features"]["hole"],
    )
    for a, b in zip(back.geometry, regions.geometry, strict=True):
        assert shapely.symmetric_difference(a, b).area < 1e-9


def test_densities_equal_a_hand_count(tissue):
    adata = tissue.adata
    poly = shapely.Polygon([(150, 120), (600, 150), (650, 500), (300, 620), (120, 400)])
    regions = logic.shapes_to_regions([shapely.get_coordinates(poly)[:-1, ::-1]], "polygon", "tumour")
    d = logic.compartment_densities(adata, regions, "cell_type")
    xy = adata.obsm["spatial"]
    inside = np.array([poly.contains(shapely.Point(x, y)) for x, y in xy])
    area_mm2 = poly.area / 1e6
    for cell_type, row in d.set_index("cell_type").iterrows():
        hand = int((inside & (adata.obs["cell_type"] == cell_type).to_numpy()).sum())
        assert row["n_cells"] == hand
        assert row["density_per_mm2"] == pytest.approx(hand / area_mm2, rel=1e-12)
    assert d["n_cells"].sum() == inside.sum() > 100
    matrix = logic.density_matrix(d)
    assert matrix.loc["all cells", "tumour"] == pytest.approx(inside.sum() / area_mm2, abs=0.05)
    # the same cells shown shifted by 1000 µm (an aligned layer): none falls in the polygon
    assert logic.compartment_densities(adata, regions, xy=xy + 1000)["n_cells"].sum() == 0


def test_margin_bands_of_a_square():
    r = make_regions(["tumour", "stroma"], [shapely.box(0, 0, 100, 100), shapely.box(-50, -50, 150, 150)])
    b = logic.margin_regions(r, inner_um=10, outer_um=20).set_index("compartment").area
    assert b["margin_inner"] == pytest.approx(100**2 - 80**2)
    assert b["tumour_core"] == pytest.approx(80**2)
    quarter = 20**2 * np.pi  # rounded corners of the outer band (buffer), to shapely's 4e-4
    assert b["margin_outer"] == pytest.approx(4 * 100 * 20 + quarter, rel=4e-4)


def test_error_paths(tissue):
    with pytest.raises(DataModelError, match="no shapes: draw at least one"):
        logic.shapes_to_regions([], "polygon", [])
    with pytest.raises(DataModelError, match="shape 1 has no compartment"):
        logic.shapes_to_regions([POLY, POLY + 1], "polygon", ["tumour", None])
    with pytest.raises(DataModelError, match="enclose no area"):
        logic.shapes_to_regions([POLY], "path", "tumour")
    with pytest.raises(DataModelError, match="2 entries for 1 shapes"):
        logic.shapes_to_regions([POLY], "polygon", ["tumour", "stroma"])
    stroma = make_regions(["stroma"], [shapely.box(0, 0, 500, 500)])
    with pytest.raises(DataModelError, match=r"unknown compartment 'tumour'.*have \['stroma'\]"):
        logic.margin_regions(stroma)
    with pytest.raises(DataModelError, match="inner_um must be a band width"):
        logic.margin_regions(make_regions(["tumour"], [shapely.box(0, 0, 9, 9)]), inner_um=-1)
    with pytest.raises(DataModelError, match=r"unknown compartment \['tumor'\]"):
        logic.compartment_densities(tissue.adata, stroma, compartments=["tumor"])
    with pytest.raises(DataModelError, match="obs has no column 'celltype'"):
        logic.compartment_densities(tissue.adata, stroma, "celltype")
    with pytest.raises(DataModelError, match=r"xy must be \(n_cells, 2\)"):
        logic.compartment_densities(tissue.adata, stroma, xy=np.zeros((3, 2)))
    with pytest.raises(DataModelError, match="no cells of image 'other'"):
        logic.export_biomarkers(tissue.adata, stroma, "unused", image_id="other")


def test_export_biomarkers_refuses_to_overwrite(tissue, tmp_path):
    regions = make_regions(
        ["tumour", "stroma"], [shapely.box(100, 100, 400, 400), shapely.box(400, 100, 700, 600)]
    )
    paths = logic.export_biomarkers(tissue.adata, regions, tmp_path, image_id="sim_0", metrics=["density"])
    wide = pd.read_csv(paths["wide_csv"])
    assert wide["image_id"].tolist() == ["sim_0"]
    hand = logic.compartment_densities(tissue.adata, regions)
    cd8 = hand.set_index(["compartment", "cell_type"]).loc[("tumour", "CD8 T"), "density_per_mm2"]
    assert wide["density__tumour__CD8_T"].iloc[0] == pytest.approx(cd8, rel=1e-6)
    before = paths["wide_csv"].read_bytes()
    with pytest.raises(FileExistsError, match="already holds"):
        logic.export_biomarkers(
            tissue.adata, regions.iloc[:1], tmp_path, image_id="sim_0", metrics=["density"]
        )
    assert paths["wide_csv"].read_bytes() == before


# ---------------------------------------------------------------------- the widget
def _table(widget) -> pd.DataFrame:
    value = widget.table.value
    return pd.DataFrame(value["data"], index=value["index"], columns=value["columns"]).astype(float)


def test_widget_live_densities_margins_and_messages(make_napari_viewer, qtbot, tissue):
    from spatialpath.napari._qt._compartments import BANDS_NAME, CompartmentsWidget

    viewer = make_napari_viewer(show=True)
    data, kw, _kind = cells_layer(tissue.adata, image_id="sim_0")
    viewer.add_points(data, **kw)
    widget = CompartmentsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Compartments and densities")
    assert widget.cells_layer.value is viewer.layers[-1]
    shapes = widget.add_compartments_layer()
    assert widget.shapes_layer.value is shapes
    assert shapes.metadata[KIND] == "compartments"

    tumour = shapely.Polygon([(150, 120), (600, 150), (650, 500), (300, 620), (120, 400)])
    shapes.add_polygons([shapely.get_coordinates(tumour)[:-1, ::-1]])  # default compartment: tumour
    qtbot.waitUntil(lambda: "tumour" in widget.table.value["columns"], timeout=5000)
    expected = logic.density_matrix(
        logic.compartment_densities(tissue.adata, make_regions(["tumour"], [tumour]))
    )
    got = _table(widget)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(float))
    assert got.loc["all cells", "tumour"] > 0
    assert widget.status.value.startswith("1,500 cells")

    widget.compartment.value = "stroma"
    stroma = shapely.box(60, 50, 740, 690).difference(tumour)
    shapes.add_polygons([shapely.get_coordinates(stroma.exterior)[:-1, ::-1]])
    qtbot.waitUntil(lambda: "stroma" in widget.table.value["columns"], timeout=5000)
    assert shapes.features["compartment"].tolist() == ["tumour", "stroma"]

    widget.bands.value = True
    qtbot.waitUntil(lambda: BANDS_NAME in viewer.layers, timeout=5000)
    bands = viewer.layers[BANDS_NAME]
    assert sorted(set(bands.features["compartment"])) == ["margin_inner", "margin_outer"]
    qtbot.waitUntil(lambda: "margin_inner" in widget.table.value["columns"], timeout=5000)
    inner = widget.regions.set_index("compartment").area["margin_inner"] / 1e6
    assert _table(widget).loc["area (mm²)", "margin_inner"] == pytest.approx(inner, abs=1e-4)

    # the tumour relabelled as stroma: no tumour → the band error is shown, not raised
    shapes.selected_data = {0}
    widget.assign_selected()
    qtbot.waitUntil(lambda: "unknown compartment 'tumour'" in widget.status.value, timeout=5000)
    assert widget.status.value.startswith("⚠")
    assert widget.table.value["data"] == []
    widget.bands.value = False
    qtbot.waitUntil(lambda: BANDS_NAME not in viewer.layers and "stroma" in widget.table.value["columns"])
    shapes.data = []
    qtbot.waitUntil(lambda: "no shapes" in widget.status.value, timeout=5000)
    shapes.selected_data = set()
    widget.assign_selected()
    assert "select shapes first" in widget.status.value


def test_widget_export_then_refuses_overwrite(make_napari_viewer, qtbot, tissue, tmp_path):
    from spatialpath.napari._qt._compartments import CompartmentsWidget

    viewer = make_napari_viewer()
    data, kw, _ = cells_layer(tissue.adata, image_id="sim_0")
    viewer.add_points(data, **kw)
    widget = CompartmentsWidget(viewer)
    shapes = widget.add_compartments_layer()
    shapes.add_rectangles([np.array([[100.0, 100.0], [600.0, 600.0]])])
    widget.out_dir.value = tmp_path
    widget.export_table()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30000)
    assert widget.written["wide_csv"] == tmp_path / "biomarkers_sim_0_wide.csv"
    wide = pd.read_csv(widget.written["wide_csv"])
    assert wide["image_id"].tolist() == ["sim_0"]
    assert "density__tumour__CD8_T" in wide
    assert widget.status.value.startswith("wrote")
    widget.export_table()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30000)
    assert widget.status.value.startswith("⚠")
    assert "already holds" in widget.status.value
    widget.shapes_layer.value = None
    assert widget.export_table() is None
    assert "choose a Shapes layer" in widget.status.value
