"""The manifest's four widgets dock by their display names in a shown viewer, on the sample data."""

from __future__ import annotations

import pytest

napari = pytest.importorskip("napari")

WIDGETS = {
    "Cell types and markers": "CellTypesWidget",
    "Neighbourhood statistics": "NhoodWidget",
    "Compartments and densities": "CompartmentsWidget",
    "Alignment": "AlignmentWidget",
}


def test_every_widget_docks_from_the_manifest_next_to_the_sample(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("spatialpath", "simulated_tissue")
    kinds = {layer.metadata.get("spatialpath_kind") for layer in viewer.layers}
    assert {"image", "cell_types", "cells", "compartments"} <= kinds
    for name, cls in WIDGETS.items():
        dock, widget = viewer.window.add_plugin_dock_widget("spatialpath", name)
        assert type(widget).__name__ == cls
        assert dock.windowTitle()  # a dock widget napari made for it
    shot = viewer.screenshot(canvas_only=True)
    assert shot.shape[-1] == 4
    assert shot[..., :3].std() > 10  # the tissue is drawn, not a blank canvas
