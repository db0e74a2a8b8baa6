"""Screenshots: the sample data as napari draws it (non-blank, every cell-type colour on the canvas)."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pytest

napari = pytest.importorskip("napari")

from spatialpath.napari import _keys  # noqa: E402

#: per-channel tolerance (0-255) between a drawn pixel and a cell-type colour.
TOLERANCE = 6


def _present(rgb: np.ndarray, colour: str) -> int:
    ref = np.round(np.asarray(mpl.colors.to_rgb(colour)) * 255)
    return int((np.abs(rgb.astype(int) - ref).max(axis=-1) <= TOLERANCE).sum())


def test_sample_screenshot_shows_every_cell_type_colour(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1000, 900)
    viewer.open_sample("spatialpath", "simulated_tissue")
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.ndim == 3
    assert shot[..., :3].std() > 10  # not blank
    # cell types alone, opaque: every type's colour (uns["cell_type_colors"]) is drawn
    for layer in viewer.layers:
        layer.visible = layer.metadata.get(_keys.KIND) == "cell_types"
    types = next(ly for ly in viewer.layers if ly.metadata.get(_keys.KIND) == "cell_types")
    types.opacity = 1.0
    rgb = viewer.screenshot(canvas_only=True, flash=False)[..., :3]
    legend = types.metadata["legend"]
    counts = {name: _present(rgb, colour) for name, colour in legend.items()}
    assert all(n > 0 for n in counts.values()), counts
    assert _present(rgb, "#000000") > 0.2 * rgb.shape[0] * rgb.shape[1]  # background stays black
