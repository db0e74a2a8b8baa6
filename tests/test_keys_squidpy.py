"""The keys module spells squidpy's keys exactly as squidpy writes them."""

from __future__ import annotations

import numpy as np
import pytest

from spatialpath.datasets import simulate_tissue
from spatialpath.keys import Key


@pytest.fixture(scope="module")
def squidpy_run():
    sq = pytest.importorskip("squidpy")
    adata = simulate_tissue(seed=2, n_cells=1_500).adata
    sq.gr.spatial_neighbors(adata, coord_type="generic", n_neighs=6)
    sq.gr.nhood_enrichment(adata, cluster_key="cell_type", n_perms=20, seed=0, show_progress_bar=False)
    sq.gr.interaction_matrix(adata, cluster_key="cell_type")
    sq.gr.co_occurrence(
        adata, cluster_key="cell_type", interval=np.linspace(5, 50, 4), show_progress_bar=False
    )
    sq.gr.ripley(adata, cluster_key="cell_type", mode="L", n_simulations=2, n_steps=5, seed=0)
    return adata


def test_keys_match_squidpy(squidpy_run):
    a = squidpy_run
    assert Key.obsp.connectivities() in a.obsp
    assert Key.obsp.distances() in a.obsp
    assert Key.uns.spatial_neighbors() in a.uns
    assert a.uns[Key.uns.spatial_neighbors()]["connectivities_key"] == Key.obsp.connectivities()
    for key in (
        Key.uns.nhood_enrichment("cell_type"),
        Key.uns.interactions("cell_type"),
        Key.uns.co_occurrence("cell_type"),
        Key.uns.ripley("cell_type", "L"),
    ):
        assert key in a.uns, key
    assert {"zscore", "count"} <= set(a.uns[Key.uns.nhood_enrichment("cell_type")])
    assert {"occ", "interval"} <= set(a.uns[Key.uns.co_occurrence("cell_type")])
    assert Key.uns.colors("cell_type") in a.uns
    assert Key.obsm.spatial == "spatial"
