"""Centrality per cell type: parity with squidpy (networkx) on simulated, real and disconnected graphs."""

from __future__ import annotations

import anndata as ad
import networkx as nx
import numpy as np
import pandas as pd
import pytest
import squidpy as sq
from scipy import sparse

from spatialpath.datasets import simulate_tissue
from spatialpath.gr._centrality import CentralityResult, centrality, centrality_per_image_key
from spatialpath.keys import Key
from spatialpath.model import DataModelError

#: CODEX 20x pixel size, per Schürch et al. 2020 (the data's SOURCE.md asks to verify).
CODEX_PIXEL_SIZE_UM = 0.377
SCORE_NAMES = ["degree_centrality", "average_clustering", "closeness_centrality"]


def _cells(xy: np.ndarray, types: list[str] | np.ndarray, images: np.ndarray | None = None) -> ad.AnnData:
    obs = pd.DataFrame({"cell_type": pd.Categorical(types)}, index=[f"c{i}" for i in range(len(xy))])
    if images is not None:
        obs["image_id"] = pd.Categorical(images)
    a = ad.AnnData(obs=obs)
    a.obsm["spatial"] = np.asarray(xy, dtype=float)
    return a


def _assert_parity(adata: ad.AnnData, cluster_key: str = "cell_type", **kw) -> pd.DataFrame:
    ours = centrality(adata, cluster_key, copy=True, **kw).scores
    ref = sq.gr.centrality_scores(adata, cluster_key, copy=True)
    pd.testing.assert_frame_equal(ours, ref, rtol=1e-12, atol=0)
    return ours


def _per_image(result: CentralityResult) -> pd.DataFrame:
    """The tidy table back to one (cell_type x score) frame per image."""
    return result.per_image.pivot_table(
        index=["image", "cell_type"], columns="score", values="value", observed=False, dropna=False
    )


@pytest.fixture(scope="module")
def tissue() -> ad.AnnData:
    adata = simulate_tissue(seed=11, n_cells=2000).adata
    sq.gr.spatial_neighbors_knn(adata, n_neighs=6)
    return adata


@pytest.fixture(scope="module")
def codex_region(shared) -> ad.AnnData:
    cells = pd.read_csv(shared("schurch_crc_codex_cells", "MIF_CRC_cells.csv.gz"))
    cells = cells[cells["imageID"] == "reg033_B"]  # 3,467 cells, 10 of the 11 types
    adata = _cells(cells[["x", "y"]].to_numpy() * CODEX_PIXEL_SIZE_UM, cells["cellType"].to_numpy())
    sq.gr.spatial_neighbors_knn(adata, n_neighs=6)
    return adata


def test_parity_with_squidpy_on_simulated_tissue(tissue):
    ours = _assert_parity(tissue)
    assert list(ours.columns) == SCORE_NAMES
    assert ours.notna().all().all()


@pytest.mark.realdata
def test_parity_with_squidpy_on_codex_region(codex_region):
    _assert_parity(codex_region)


def test_parity_on_disconnected_radius_graph():
    """Clumps far apart, isolated cells and a type that only sits on isolated cells."""
    rng = np.random.default_rng(0)
    clumps = [rng.uniform(0, 100, (150, 2)) + off for off in ([0, 0], [1000, 0], [0, 1000])]
    isolated = np.array([[3000.0, 3000.0], [4000.0, 3000.0], [5000.0, 5000.0]])
    xy = np.vstack([*clumps, isolated])
    types = rng.choice(["a", "b", "c"], size=len(xy) - 3).tolist()
    types[:150] = rng.choice(["a", "d"], size=150).tolist()  # "d" lives in the first clump only
    types += ["e", "e", "a"]  # "e" has no neighbour at all
    adata = _cells(xy, types)
    sq.gr.spatial_neighbors_radius(adata, radius=12.0)
    g = nx.Graph(adata.obsp["spatial_connectivities"])
    assert nx.number_connected_components(g) > 4
    ours = _assert_parity(adata)
    assert ours.loc["e"].tolist() == [0.0, 0.0, 0.0]  # networkx: nothing reachable -> closeness 0


def test_directed_graph_with_self_loops_and_explicit_zeros():
    """A random directed graph: symmetrised, self-loops ignored, stored zeros kept as edges (networkx)."""
    rng = np.random.default_rng(1)
    n = 300
    g = sparse.random(n, n, density=0.02, format="csr", random_state=rng) + sparse.eye(n, format="csr")
    g = g.tocsr()
    g.data[::7] = 0.0  # explicit zeros: networkx still adds these edges
    adata = _cells(rng.uniform(0, 100, (n, 2)), rng.choice(list("wxyz"), n))
    adata.obsp["spatial_connectivities"] = g
    _assert_parity(adata)


def test_read_only_graph(tissue):
    """Memory-mapped or shared graphs arrive read-only: the kernels must accept them."""
    adata = tissue.copy()
    g = adata.obsp["spatial_connectivities"]
    for arr in (g.data, g.indices, g.indptr):
        arr.flags.writeable = False
    _assert_parity(adata)


def test_per_image_equals_networkx_on_each_image():
    """Per-image scores equal squidpy on each image's cells; the pooled table equals squidpy on all."""
    tissues = [simulate_tissue(seed=s, n_cells=700, image_id=f"img{s}").adata for s in (1, 2)]
    adata = ad.concat(tissues, index_unique="-")
    adata.obs["cell_type"] = adata.obs["cell_type"].astype("category")
    sq.gr.spatial_neighbors_knn(adata, n_neighs=6, library_key="image_id")
    res = centrality(adata, "cell_type", copy=True)
    ref = sq.gr.centrality_scores(adata, "cell_type", copy=True)
    pd.testing.assert_frame_equal(res.scores, ref, rtol=1e-12)
    per = _per_image(res)
    for image in ("img1", "img2"):
        sub = adata[adata.obs["image_id"] == image].copy()
        ref = sq.gr.centrality_scores(sub, "cell_type", copy=True)
        got = per.loc[image][SCORE_NAMES]
        np.testing.assert_allclose(got.to_numpy(), ref.loc[got.index].to_numpy(), rtol=1e-12)


def test_cross_image_edges_warn_and_are_dropped_per_image():
    tissues = [simulate_tissue(seed=s, n_cells=400, image_id=f"img{s}").adata for s in (3, 4)]
    for t, shift in zip(tissues, (0.0, 150.0), strict=True):  # overlapping images: kNN crosses them
        t.obsm["spatial"] = t.obsm["spatial"] + shift
    adata = ad.concat(tissues, index_unique="-")
    adata.obs["cell_type"] = adata.obs["cell_type"].astype("category")
    sq.gr.spatial_neighbors_knn(adata, n_neighs=6)  # no library_key
    with pytest.warns(UserWarning, match="join cells of different images"):
        res = centrality(adata, "cell_type", copy=True)
    ref = sq.gr.centrality_scores(adata, "cell_type", copy=True)
    pd.testing.assert_frame_equal(res.scores, ref, rtol=1e-12)
    per = _per_image(res)
    sub = adata[adata.obs["image_id"] == "img4"].copy()  # AnnData keeps the induced subgraph
    ref = sq.gr.centrality_scores(sub, "cell_type", copy=True)
    got = per.loc["img4"][SCORE_NAMES]
    np.testing.assert_allclose(got.to_numpy(), ref.loc[got.index].to_numpy(), rtol=1e-12)


def test_absent_type_is_nan_in_that_image():
    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 200, (200, 2))
    images = np.repeat(["i1", "i2"], 100)
    types = rng.choice(["a", "b"], 200).astype(object)
    types[:10] = "only_i1"
    adata = _cells(xy, types, images)
    sq.gr.spatial_neighbors_knn(adata, n_neighs=5, library_key="image_id")
    per = _per_image(centrality(adata, "cell_type", copy=True))
    assert per.loc[("i2", "only_i1")].isna().all()
    assert per.loc[("i1", "only_i1")].notna().all()
    assert per.drop(index=("i2", "only_i1")).notna().all().all()


def test_writes_uns_and_copy_returns_tables(tissue, tmp_path):
    adata = tissue.copy()
    assert centrality(adata, "cell_type") is None
    adata.write_h5ad(tmp_path / "a.h5ad")  # both tables survive h5ad
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    pd.testing.assert_frame_equal(
        back.uns[centrality_per_image_key("cell_type")], adata.uns[centrality_per_image_key("cell_type")]
    )
    table = adata.uns[Key.uns.centrality_scores("cell_type")]
    tidy = adata.uns[centrality_per_image_key("cell_type")]
    assert list(tidy.columns) == ["image", "cell_type", "score", "value"]
    assert len(tidy) == 1 * len(table) * 3
    # one image: the per-image values are the whole-graph ones
    np.testing.assert_allclose(_per_image(CentralityResult(table, tidy)).loc["sim_0"][SCORE_NAMES], table)
    res = centrality(tissue, "cell_type", copy=True, scores=["closeness", "degree_centrality"])
    assert isinstance(res, CentralityResult)
    assert list(res.scores.columns) == ["degree_centrality", "closeness_centrality"]  # squidpy's order
    assert Key.uns.centrality_scores("cell_type") not in tissue.uns


def test_errors(tissue, monkeypatch):
    bare = tissue.copy()
    del bare.obsp["spatial_connectivities"]
    with pytest.raises(DataModelError, match=r"run spatialpath\.gr\.spatial_graph"):
        centrality(bare, "cell_type")
    plain = tissue.copy()
    plain.obs["cell_type"] = plain.obs["cell_type"].astype(str)
    with pytest.raises(DataModelError, match="must be categorical"):
        centrality(plain, "cell_type")
    with pytest.raises(ValueError, match=r"unknown centrality score.*betweenness"):
        centrality(tissue, "cell_type", scores=["degree", "betweenness"])
    other = {"spatial_connectivities": sparse.eye(10, format="csr")}  # AnnData itself refuses this
    monkeypatch.setattr(ad.AnnData, "obsp", property(lambda self: other))
    with pytest.raises(DataModelError, match="built for other cells"):
        centrality(tissue, "cell_type")
