"""``spatialpath.napari.view``: the notebook entry point."""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from spatialpath.align import Transform  # noqa: E402
from spatialpath.datasets import simulate_cohort, simulate_tissue, simulation_regions  # noqa: E402
from spatialpath.napari import _keys, view  # noqa: E402


@pytest.fixture(scope="module")
def tissue():
    t = simulate_tissue(1, n_cells=400, pixel_size_um=1.0)
    return t._replace(image=t.image[:3].compute(), labels=t.labels.compute())


def test_view_adds_image_mask_regions_cells_in_um(tissue, make_napari_viewer_proxy):
    viewer = make_napari_viewer_proxy()
    regions = simulation_regions(tissue.adata)
    out = view(
        tissue.adata, image=tissue.image, labels=tissue.labels, regions=regions, viewer=viewer, show=False
    )
    assert out is viewer
    kinds = [ly.metadata[_keys.KIND] for ly in viewer.layers]
    assert kinds == ["image"] * 3 + ["cell_types", "compartments", "cells"]
    assert viewer.canvas.overlays.scale_bar.visible
    cells = viewer.layers[-1]
    np.testing.assert_array_equal(cells.data, tissue.adata.obsm["spatial"][:, ::-1])
    # the cell-type mask and the cells agree: each cell centre lies on its own label, coloured as its point
    mask = viewer.layers[3]
    i = 7
    y, x = tissue.adata.obsm["spatial"][i, ::-1]
    r, c = np.round(mask.world_to_data((y, x))).astype(int)
    label = int(tissue.adata.obs["label"].iloc[i])
    assert mask.data[r, c] == label
    np.testing.assert_allclose(mask.colormap.map(label), cells.face_color[i], atol=1e-6)


def test_view_reuses_the_current_viewer_and_places_a_registered_image(tissue, make_napari_viewer_proxy):
    viewer = make_napari_viewer_proxy()
    t = Transform.from_params(rotation_deg=90.0, translation=(500.0, 0.0), source="he")
    out = view(image=tissue.image, transform=t, show=False)
    assert out is napari.current_viewer()
    layer = out.layers[0]
    y, x = tissue.image.y.values[10], tissue.image.x.values[20]
    expected = t.apply_points([[x, y]])[0, ::-1]
    np.testing.assert_allclose(layer.data_to_world((10, 20)), expected, atol=1e-9)
    del viewer


def test_view_many_images_one_layer_each(make_napari_viewer_proxy):
    adata = simulate_cohort(n_patients=2, n_cells=300, seed=0, progress=False)
    viewer = view(adata, viewer=make_napari_viewer_proxy(), show=False)
    assert [ly.visible for ly in viewer.layers] == [True, False]
    assert {ly.metadata[_keys.IMAGE_ID] for ly in viewer.layers} == set(adata.obs["image_id"].astype(str))
