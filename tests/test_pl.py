"""Plots return Figures whose content matches the data."""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from spatialpath.datasets import simulate_cohort
from spatialpath.export import cell_counts
from spatialpath.pl import category_colors, density_bars, tissue_map


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(n_patients=4, n_cells=400, progress=False)


def test_tissue_map_panels_colours_and_orientation(cohort):
    fig = tissue_map(cohort, ncols=2)
    assert isinstance(fig, Figure)
    axes = [a for a in fig.axes if a.collections]
    assert len(axes) == 4
    ax = axes[0]
    assert ax.yaxis_inverted()  # row 0 at the top, as in the image
    offsets = ax.collections[0].get_offsets()
    first = cohort[cohort.obs["image_id"] == "P001_S1_I1"]
    np.testing.assert_allclose(offsets, first.obsm["spatial"])
    face = ax.collections[0].get_facecolors()[:, :3]
    palette = category_colors(cohort, "cell_type")
    expected = np.array([mcolors.to_rgb(palette[t]) for t in first.obs["cell_type"].astype(str)])
    np.testing.assert_allclose(face, expected, atol=1e-6)
    assert palette["Tumour"] == cohort.uns["cell_type_colors"][0]


def test_tissue_map_single_axes_and_errors(cohort):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    assert tissue_map(cohort, images=["P002_S1_I1"], ax=ax) is fig
    with pytest.raises(ValueError, match=r"images \['nope'\] are not in"):
        tissue_map(cohort, images=["nope"])
    with pytest.raises(ValueError, match="ax draws one image"):
        tissue_map(cohort, ax=ax)
    plt.close("all")


def test_density_bars_heights_are_means(cohort):
    t = cell_counts(cohort, metadata=["arm"])
    fig = density_bars(t, group="arm")
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    types = list(pd.unique(t["cell_type"]))  # bars follow the table's (cell-type) order
    means = t.groupby(["arm", "cell_type"])["density_per_mm2"].mean()
    expected = [means[(arm, ct)] for arm in ("control", "treatment") for ct in types]
    assert types[0] == "Tumour"
    np.testing.assert_allclose(heights, expected)
    assert ax.get_ylabel() == "density_per_mm2 (cells / mm²)"
    with pytest.raises(ValueError, match="table has no column 'arm'"):
        density_bars(pd.DataFrame({"cell_type": ["a"], "density_per_mm2": [1.0]}), group="arm")
