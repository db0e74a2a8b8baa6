"""Shared helpers of the metrics tests: regions from the simulator's planted truth."""

from __future__ import annotations

import geopandas as gpd
import pytest
import shapely

from spatialpath.datasets import simulate_tissue

COMPARTMENTS = ("tissue", "tumour", "stroma")


def sim_regions(adata, names=COMPARTMENTS, image_id: str | None = None) -> gpd.GeoDataFrame:
    """Regions GeoDataFrame from ``uns["simulation"]["regions_wkt"]``, built with shapely directly."""
    wkt = adata.uns["simulation"]["regions_wkt"]
    image = image_id or str(adata.obs["image_id"].iloc[0])
    return gpd.GeoDataFrame(
        {"image_id": image, "compartment": list(names)},
        geometry=[shapely.from_wkt(wkt[k]) for k in names],
    )


@pytest.fixture(scope="session")
def make_regions():
    """``make_regions(adata, names=..., image_id=...)``: see :func:`sim_regions`."""
    return sim_regions


@pytest.fixture(scope="module")
def sim20k():
    return simulate_tissue(seed=11, n_cells=20_000)
