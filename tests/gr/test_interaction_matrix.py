"""Interaction matrix: exact parity with squidpy, a brute-force loop over edges, per-image sums."""

from __future__ import annotations

import itertools

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import squidpy as sq
from scipy import sparse

from spatialpath.datasets import simulate_tissue
from spatialpath.gr._interaction_matrix import (
    InteractionMatrixResult,
    interaction_matrix,
    interactions_per_image_key,
)
from spatialpath.keys import Key
from spatialpath.model import DataModelError

#: CODEX 20x pixel size, per Schürch et al. 2020 (the data's SOURCE.md asks to verify).
CODEX_PIXEL_SIZE_UM = 0.377
OPTIONS = list(itertools.product([False, True], [False, True]))  # (normalized, weights)


@pytest.fixture(scope="module")
def tissue() -> ad.AnnData:
    adata = simulate_tissue(seed=5, n_cells=2000).adata
    sq.gr.spatial_neighbors_knn(adata, n_neighs=6)
    # a float-weighted graph (distances) to check that weighted sums add in squidpy's order
    adata.obsp["dist_connectivities"] = adata.obsp["spatial_distances"]
    return adata


@pytest.fixture(scope="module")
def codex(shared) -> ad.AnnData:
    """Three CODEX regions in µm, graph built per region."""
    cells = pd.read_csv(shared("schurch_crc_codex_cells", "MIF_CRC_cells.csv.gz"))
    cells = cells[cells["imageID"].isin(["reg001_A", "reg033_B", "reg070_A"])]
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(cells["cellType"]),
            "image_id": pd.Categorical(cells["imageID"]),
        },
        index=[f"c{i}" for i in range(len(cells))],
    )
    adata = ad.AnnData(obs=obs)
    adata.obsm["spatial"] = cells[["x", "y"]].to_numpy(dtype=float) * CODEX_PIXEL_SIZE_UM
    sq.gr.spatial_neighbors_knn(adata, n_neighs=6, library_key="image_id")
    return adata


def _check_parity(adata: ad.AnnData, connectivity_key: str = "spatial") -> None:
    for normalized, weights in OPTIONS:
        kw = {"normalized": normalized, "weights": weights, "connectivity_key": connectivity_key}
        ours = interaction_matrix(adata, "cell_type", copy=True, **kw).interactions
        ref = sq.gr.interaction_matrix(adata, "cell_type", copy=True, **kw)
        assert ours.dtype == ref.dtype, kw
        np.testing.assert_array_equal(ours, ref, err_msg=str(kw))  # exact, NaN rows included


def _brute_force(adata: ad.AnnData, weights: bool, connectivity_key: str = "spatial_connectivities"):
    """Loop over every stored edge: pooled (K, K) and per image (G, K, K)."""
    codes = adata.obs["cell_type"].cat.codes.to_numpy()
    images = adata.obs["image_id"].cat.codes.to_numpy()
    k, n_img = len(adata.obs["cell_type"].cat.categories), len(adata.obs["image_id"].cat.categories)
    pooled, per = np.zeros((k, k)), np.zeros((n_img, k, k))
    coo = adata.obsp[connectivity_key].tocoo()
    for i, j, w in zip(coo.row, coo.col, coo.data, strict=True):
        value = w if weights else 1.0
        pooled[codes[i], codes[j]] += value
        if images[i] == images[j]:
            per[images[i], codes[i], codes[j]] += value
    return pooled, per


def test_parity_with_squidpy_on_simulated_tissue(tissue):
    _check_parity(tissue)
    _check_parity(tissue, connectivity_key="dist")


@pytest.mark.realdata
def test_parity_with_squidpy_on_codex(codex):
    _check_parity(codex)
    res = interaction_matrix(codex, "cell_type", copy=True)
    np.testing.assert_array_equal(res.per_image.sum(axis=0), res.interactions)
    assert res.interactions.sum() == 6 * codex.n_obs  # directed 6-NN kept directed


@pytest.mark.parametrize("dtype", [np.int64, np.bool_])
def test_integer_and_boolean_graphs_keep_squidpy_dtype(tissue, dtype):
    adata = tissue.copy()
    adata.obsp["spatial_connectivities"] = adata.obsp["spatial_connectivities"].astype(dtype)
    _check_parity(adata)


def test_brute_force_and_per_image_sums():
    tissues = [simulate_tissue(seed=s, n_cells=300, image_id=f"img{s}").adata for s in (1, 2, 3)]
    adata = ad.concat(tissues, index_unique="-")
    adata.obs["cell_type"] = adata.obs["cell_type"].astype("category")
    adata.obs["image_id"] = adata.obs["image_id"].astype("category")
    sq.gr.spatial_neighbors_knn(adata, n_neighs=5, library_key="image_id")
    for weights in (False, True):
        if weights:  # non-trivial weights
            adata.obsp["spatial_connectivities"] = adata.obsp["spatial_distances"].copy()
        res = interaction_matrix(adata, "cell_type", weights=weights, copy=True)
        pooled, per = _brute_force(adata, weights)
        np.testing.assert_allclose(res.interactions, pooled, rtol=1e-12)
        np.testing.assert_allclose(res.per_image, per, rtol=1e-12)
        np.testing.assert_allclose(res.per_image.sum(axis=0), res.interactions, rtol=1e-12)
        assert res.images == ["img1", "img2", "img3"]
    norm = interaction_matrix(adata, "cell_type", normalized=True, copy=True)
    rows = norm.per_image.sum(axis=2)
    np.testing.assert_allclose(rows[np.isfinite(rows)], 1.0)


def test_cross_image_edges_warn_and_count_only_pooled():
    tissues = [simulate_tissue(seed=s, n_cells=300, image_id=f"img{s}").adata for s in (4, 5)]
    adata = ad.concat(tissues, index_unique="-")
    adata.obs["cell_type"] = adata.obs["cell_type"].astype("category")
    adata.obs["image_id"] = adata.obs["image_id"].astype("category")
    sq.gr.spatial_neighbors_knn(adata, n_neighs=6)  # overlapping images, one graph over both
    with pytest.warns(UserWarning, match="join cells of different images"):
        res = interaction_matrix(adata, "cell_type", copy=True)
    pooled, per = _brute_force(adata, weights=False)
    np.testing.assert_array_equal(res.interactions, pooled)
    np.testing.assert_array_equal(res.per_image, per)
    assert res.per_image.sum() < res.interactions.sum()


def test_writes_uns(tissue, tmp_path):
    adata = tissue.copy()
    assert interaction_matrix(adata, "cell_type") is None
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad").uns[interactions_per_image_key("cell_type")]["interactions"]
    np.testing.assert_array_equal(back, adata.uns[interactions_per_image_key("cell_type")]["interactions"])
    pooled = adata.uns[Key.uns.interactions("cell_type")]
    per = adata.uns[interactions_per_image_key("cell_type")]
    assert pooled.shape == (8, 8)
    assert per["interactions"].shape == (1, 8, 8)
    assert list(per["images"]) == ["sim_0"]
    assert list(per["categories"]) == list(adata.obs["cell_type"].cat.categories)
    np.testing.assert_array_equal(per["interactions"][0], pooled)
    assert isinstance(interaction_matrix(tissue, "cell_type", copy=True), InteractionMatrixResult)


def test_errors(tissue):
    bare = tissue.copy()
    del bare.obsp["spatial_connectivities"]
    with pytest.raises(DataModelError, match=r"run spatialpath\.gr\.spatial_graph"):
        interaction_matrix(bare, "cell_type")
    plain = tissue.copy()
    plain.obs["cell_type"] = plain.obs["cell_type"].astype(str)
    with pytest.raises(DataModelError, match="must be categorical"):
        interaction_matrix(plain, "cell_type")
    with pytest.raises(DataModelError, match="is missing"):
        interaction_matrix(tissue, "cell_type", library_key="no_such_column")


def test_large_graph_is_not_looped_in_python():
    """10^5 cells in well under a second (vectorised bincount, no loop over edges)."""
    import time

    rng = np.random.default_rng(0)
    n = 100_000
    g = sparse.random(n, n, density=6 / n, format="csr", random_state=rng)
    obs = pd.DataFrame({"cell_type": pd.Categorical(rng.integers(0, 12, n))}, index=np.arange(n).astype(str))
    adata = ad.AnnData(obs=obs)
    adata.obsp["spatial_connectivities"] = g
    t0 = time.perf_counter()
    res = interaction_matrix(adata, "cell_type", copy=True)
    assert time.perf_counter() - t0 < 2.0
    assert res.interactions.sum() == g.nnz
