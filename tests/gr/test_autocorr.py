"""Moran's I and Geary's C: squidpy parity, exact permutation moments, calibration, images, errors."""

from __future__ import annotations

import itertools
import warnings

import anndata as ad
import numba
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import spatialpath.gr._autocorr as autocorr_module
from spatialpath.datasets import simulate_tissue
from spatialpath.gr import knn_graph
from spatialpath.gr._autocorr import spatial_autocorr
from spatialpath.model import DataModelError

STAT = {"moran": "I", "geary": "C"}
ANALYTIC = ["pval_norm", "var_norm", "expected", "z_norm", "var_rand", "z_rand", "pval_rand", "n_cells"]


def _cells(x: np.ndarray, xy: np.ndarray, images=None, graph: sparse.spmatrix | None = None) -> ad.AnnData:
    """AnnData with values ``x`` (cells × features), coordinates and, by default, a 6-NN graph."""
    obs = pd.DataFrame(index=[f"c{i}" for i in range(len(xy))])
    if images is not None:
        obs["image_id"] = pd.Categorical(images)
    a = ad.AnnData(X=np.asarray(x), obs=obs)
    a.var_names = [f"f{k}" for k in range(a.n_vars)]
    a.obsm["spatial"] = np.asarray(xy, float)
    if graph is None:
        knn_graph(a, n_neighbors=6)
    else:
        a.obsp["spatial_connectivities"] = sparse.csr_matrix(graph)
    return a


def _squidpy(adata: ad.AnnData, **kw) -> pd.DataFrame:
    """squidpy's table; its ``parallelize`` sets numba to 1 thread and never restores it."""
    import squidpy as sq

    threads = numba.get_num_threads()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sq.gr.spatial_autocorr(adata, copy=True, **kw)
    finally:
        numba.set_num_threads(threads)


@pytest.fixture(scope="module")
def tissue() -> ad.AnnData:
    adata = simulate_tissue(seed=4, n_cells=2000).adata
    knn_graph(adata, n_neighbors=6)
    # float64 weights: squidpy row-normalises in the graph's dtype (float32 would cost 1e-7)
    adata.obsp["spatial_connectivities"] = adata.obsp["spatial_connectivities"].astype(np.float64)
    return adata


# --- squidpy 1.8.2 parity -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["moran", "geary"])
@pytest.mark.parametrize("transformation", [True, False])
def test_matches_squidpy(tissue, mode, transformation):
    ours = spatial_autocorr(tissue, mode, transformation=transformation, copy=True)
    ref = _squidpy(tissue, mode=mode, transformation=transformation, two_tailed=True)
    assert ours.index.tolist() == ref.index.tolist()  # same features, same sort order
    stat = STAT[mode]
    np.testing.assert_allclose(ours[stat], ref[stat], rtol=1e-11)
    np.testing.assert_allclose(ours["var_norm"], ref["var_norm"], rtol=1e-11)  # Geary's fixed in 1.8.2
    # squidpy's 1 − Φ(z) loses tiny p-values (ours use Φ(−z)): compare with an absolute floor
    np.testing.assert_allclose(ours["pval_norm"], ref["pval_norm"], rtol=1e-9, atol=1e-14)
    one_sided = _squidpy(tissue, mode=mode, transformation=transformation)  # squidpy's default: folded
    np.testing.assert_allclose(ours["pval_norm"] / 2, one_sided["pval_norm"], rtol=1e-9, atol=1e-14)
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS


def test_squidpy_columns_and_uns(tissue):
    adata = tissue.copy()
    assert spatial_autocorr(adata, n_perms=19, progress=False) is None
    ref = _squidpy(adata, mode="moran", n_perms=19)
    ours = adata.uns["moranI"]
    assert set(ref.columns) <= set(ours.columns)
    assert ours.columns[: len(ref.columns) - 3].tolist() == ref.columns[:-3].tolist()
    assert {"expected", "var_rand", "z_norm", "z_rand", "pval_rand", "n_cells", "pval_rand_fdr_bh"} <= set(
        ours.columns
    )
    assert ours.attrs["params"] | {"images": None} == {
        "mode": "moran", "alternative": "two-sided", "n_perms": 19, "seed": 0, "transformation": True,
        "connectivity_key": "spatial_connectivities", "library_key": "image_id", "attr": "X",
        "layer": None, "images": None,
    }  # fmt: skip
    spatial_autocorr(adata, "geary", progress=False)
    assert adata.uns["gearyC"]["C"].is_monotonic_increasing
    assert ours["I"].is_monotonic_decreasing


# --- exact null moments -----------------------------------------------------------------------------


def _tiny() -> tuple[ad.AnnData, np.ndarray]:
    """7 cells, an asymmetric weighted graph (no self-loops), values with and without ties."""
    rng = np.random.default_rng(0)
    w = rng.uniform(0.2, 1.0, (7, 7)) * (rng.uniform(size=(7, 7)) < 0.6)
    np.fill_diagonal(w, 0)
    w[3] = 0  # a cell without out-edges
    x = np.column_stack([rng.gamma(1.0, size=7), [0, 0, 0, 1, 1, 2, 5], [0, 1, 0, 0, 0, 1, 0]])
    return _cells(x, rng.uniform(size=(7, 2)), graph=w), w


def _direct(mode: str, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The statistic of each row of ``x`` (permutations × cells), straight from the definition."""
    n, s0 = x.shape[1], w.sum()
    z = x - x.mean(axis=1, keepdims=True)
    if mode == "moran":
        return n / s0 * np.einsum("pi,ij,pj->p", z, w, z) / (z**2).sum(axis=1)
    diff2 = (x[:, :, None] - x[:, None, :]) ** 2
    return (n - 1) / (2 * s0) * np.einsum("ij,pij->p", w, diff2) / (z**2).sum(axis=1)


@pytest.mark.parametrize("mode", ["moran", "geary"])
@pytest.mark.parametrize("transformation", [False, True])
def test_exact_permutation_moments(mode, transformation):
    """All 7! permutations: their mean is E and their variance is var_rand, to 1e-10."""
    adata, w = _tiny()
    if transformation:
        w = w / np.where(w.sum(axis=1) > 0, w.sum(axis=1), 1)[:, None]
    df = spatial_autocorr(adata, mode, transformation=transformation, copy=True).loc[adata.var_names]
    perms = np.array(list(itertools.permutations(range(7))))
    for k, feature in enumerate(adata.var_names):
        values = _direct(mode, adata.X[perms, k], w)
        assert df.loc[feature, STAT[mode]] == pytest.approx(values[0], abs=1e-12)  # identity first
        assert values.mean() == pytest.approx(df.loc[feature, "expected"], abs=1e-10)
        assert values.var() == pytest.approx(df.loc[feature, "var_rand"], abs=1e-10)
        assert df.loc[feature, "expected"] == pytest.approx(-1 / 6 if mode == "moran" else 1.0)


@pytest.mark.parametrize("mode", ["moran", "geary"])
def test_permutations_permute_values(mode):
    """The engine's null is the exact one: p and variance match the enumeration up to MC error."""
    adata, w = _tiny()
    df = spatial_autocorr(adata, mode, transformation=False, n_perms=20000, alternative="greater", seed=2,
                          progress=False, copy=True).loc[adata.var_names]  # fmt: skip
    perms = np.array(list(itertools.permutations(range(7))))
    for k, feature in enumerate(adata.var_names):
        values = _direct(mode, adata.X[perms, k], w)
        p_exact = np.mean(values >= values[0] - autocorr_module.TIE_TOLERANCE)
        assert df.loc[feature, "pval_sim"] == pytest.approx(p_exact, abs=0.012)  # sd <= 0.0036
        assert df.loc[feature, "var_sim"] == pytest.approx(values.var(), rel=0.05)


@pytest.mark.parametrize("mode", ["moran", "geary"])
def test_var_norm_monte_carlo(mode):
    """Gaussian values: mean and variance of 20,000 features match E and var_norm."""
    rng = np.random.default_rng(5)
    adata = _cells(rng.standard_normal((150, 20000)), rng.uniform(0, 300, (150, 2)))
    df = spatial_autocorr(adata, mode, copy=True)
    stat, var = df[STAT[mode]], df["var_norm"].iloc[0]
    assert abs(stat.mean() - df["expected"].iloc[0]) < 4 * np.sqrt(var / len(stat))
    assert stat.var() == pytest.approx(var, rel=0.05)  # sd of the estimate ≈ 1 %
    assert df["var_rand"].mean() == pytest.approx(var, rel=0.02)


# --- calibration under H0, planted signal -----------------------------------------------------------


@pytest.fixture(scope="module")
def null_cells() -> ad.AnnData:
    """2,000 independent Gaussian features on 1,000 uniform cells, 6-NN graph."""
    rng = np.random.default_rng(11)
    return _cells(rng.standard_normal((1000, 2000)), rng.uniform(0, 630, (1000, 2)))


@pytest.mark.parametrize("mode", ["moran", "geary"])
def test_calibration_under_h0(null_cells, mode):
    """P(p <= 0.05) in [0.03, 0.07]: binomial sd 0.0049, so a correct test is 4 sd from the bounds."""
    df = spatial_autocorr(null_cells, mode, n_perms=199, seed=1, copy=True, progress=False)
    for col in ["pval_norm", "pval_rand", "pval_sim", "pval_z_sim"]:
        assert 0.03 <= (df[col] <= 0.05).mean() <= 0.07, col
    assert (df["pval_norm_fdr_bh"] <= 0.05).mean() <= 0.01  # all nulls: FDR control at 5 %
    for alternative in ["greater", "less"]:
        one = spatial_autocorr(null_cells, mode, alternative=alternative, copy=True)
        for col in ["pval_norm", "pval_rand"]:
            assert 0.03 <= (one[col] <= 0.05).mean() <= 0.07, (alternative, col)


def test_planted_gradient_and_checkerboard():
    """Smooth gradient: I > E, C < 1; checkerboard on a rook grid: I = −1, C = 2(n − 1)/n."""
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 400, (600, 2))
    x = np.column_stack([xy[:, 0] / 100 + rng.normal(0, 0.3, 600), rng.normal(size=600)])
    adata = _cells(x, xy)
    moran = spatial_autocorr(adata, alternative="greater", n_perms=99, copy=True, progress=False)
    geary = spatial_autocorr(adata, "geary", alternative="less", n_perms=99, copy=True, progress=False)
    assert moran.loc["f0", "I"] > 0.5
    assert geary.loc["f0", "C"] < 0.5
    for df in (moran, geary):
        assert df.loc["f0", "pval_norm"] < 1e-20
        assert df.loc["f0", "pval_rand"] < 1e-20
        assert df.loc["f0", "pval_sim"] == pytest.approx(0.01)
    wrong_side = spatial_autocorr(adata, "geary", alternative="greater", copy=True)
    assert wrong_side.loc["f0", "pval_norm"] > 0.99

    side = 20  # rook grid, every neighbour of the opposite sign
    i, j = np.divmod(np.arange(side * side), side)
    rook = (np.abs(i[:, None] - i) + np.abs(j[:, None] - j)) == 1
    board = _cells(((-1.0) ** (i + j))[:, None], np.column_stack([i, j]), graph=rook.astype(float))
    m = spatial_autocorr(board, alternative="less", copy=True)
    c = spatial_autocorr(board, "geary", alternative="greater", copy=True)
    assert m["I"].iloc[0] == pytest.approx(-1.0)
    assert m["pval_norm"].iloc[0] < 1e-50
    assert c["C"].iloc[0] == pytest.approx(2 * (side * side - 1) / (side * side))


# --- images, sources of values, invariances -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["moran", "geary"])
def test_images_interleaved_equal_each_alone(mode):
    """Analytic columns to rounding; permutation columns identical (per-image seed, obs_names order)."""
    tissues = [simulate_tissue(seed=s, n_cells=n, image_id=f"img{s}").adata for s, n in [(1, 700), (2, 500)]]
    both = ad.concat(tissues)
    order = np.argsort(np.concatenate([np.arange(700) * 2, np.arange(500) * 2 + 1]), kind="stable")
    both = both[order].copy()  # rows of the two images interleaved
    both.obs["roi"] = both.obs["image_id"]
    knn_graph(both, library_key="roi")
    kw = {"n_perms": 99, "seed": 3, "progress": False, "copy": True}
    table = spatial_autocorr(both, mode, library_key="roi", **kw)
    shuffled = both[np.random.default_rng(0).permutation(both.n_obs)].copy()  # rows in another order
    knn_graph(shuffled, library_key="roi")
    table2 = spatial_autocorr(shuffled, mode, library_key="roi", **kw)
    assert table.columns[:3].tolist() == ["roi", "feature", STAT[mode]]
    perm = ["pval_sim", "pval_z_sim", "var_sim", "z_sim", "pval_sim_fdr_bh"]
    for t in tissues:
        knn_graph(t)
        alone = spatial_autocorr(t, mode, **kw)
        for tab in (table, table2):
            part = tab[tab["roi"] == t.obs["image_id"].iloc[0]].set_index("feature")
            assert part.index.tolist() == alone.index.tolist()
            cols = [STAT[mode], *ANALYTIC]
            pd.testing.assert_frame_equal(part[cols], alone[cols], rtol=1e-10, check_names=False)
            pd.testing.assert_frame_equal(part[perm], alone[perm], check_exact=True, check_names=False)
        assert alone["pval_sim"].min() < 0.05 < alone["pval_sim"].max()  # the comparison is not vacuous


def test_value_sources_agree(tissue):
    dense = spatial_autocorr(tissue, "geary", copy=True)
    adata = tissue.copy()
    adata.layers["counts"] = sparse.csr_matrix(adata.X)
    adata.X = sparse.csr_matrix(adata.X)
    for kw in [{}, {"layer": "counts"}]:
        pd.testing.assert_frame_equal(spatial_autocorr(adata, "geary", copy=True, **kw), dense, rtol=1e-12)
    adata.obs["panCK_obs"] = np.asarray(tissue[:, "panCK"].X).ravel().astype(np.float64)
    obs = spatial_autocorr(adata, "geary", attr="obs", features=["panCK_obs"], copy=True)
    assert obs["C"].iloc[0] == pytest.approx(dense.loc["panCK", "C"], rel=1e-12)
    default_obs = spatial_autocorr(adata, attr="obs", copy=True)  # numeric obs columns
    assert {"panCK_obs", "area_um2", "label"} <= set(default_obs.index)
    subset = spatial_autocorr(tissue, "geary", features=["CD3", "panCK"], copy=True)
    pd.testing.assert_frame_equal(subset[["C", *ANALYTIC]], dense.loc[subset.index, ["C", *ANALYTIC]])


def test_seed_threads_and_chunks_do_not_change_results(tissue, monkeypatch):
    kw = {"features": ["panCK", "CD3", "CD8", "Ki67"], "n_perms": 99, "seed": 7, "progress": False,
          "copy": True}  # fmt: skip
    ref = spatial_autocorr(tissue, **kw)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        pd.testing.assert_frame_equal(spatial_autocorr(tissue, **kw), ref, check_exact=True)
    finally:
        numba.set_num_threads(threads)
    monkeypatch.setattr(autocorr_module, "CHUNK_BYTES", 8 * tissue.n_obs)  # one feature per chunk
    chunked = spatial_autocorr(tissue, **kw)
    pd.testing.assert_frame_equal(chunked, ref, rtol=1e-12)
    other = spatial_autocorr(tissue, **(kw | {"seed": 8}))
    assert not np.array_equal(other["var_sim"], ref["var_sim"])


def test_constant_features_are_nan_not_inf():
    rng = np.random.default_rng(0)
    images = np.repeat(["a", "b"], 50)
    x = np.column_stack(
        [rng.normal(size=100), np.full(100, 3.0), np.r_[np.full(50, 1e6), rng.normal(size=50)]]
    )
    x[:50, 2] += rng.normal(0, 1e-9, 50)  # "constant" up to rounding in image a
    adata = _cells(x, rng.uniform(0, 100, (100, 2)), images=images)  # graph built per image
    df = spatial_autocorr(adata, "moran", n_perms=19, copy=True, progress=False).set_index(
        ["image_id", "feature"]
    )
    nan = df.loc[[("a", "f1"), ("b", "f1"), ("a", "f2")]]
    stats_cols = [
        "I",
        "pval_norm",
        "pval_rand",
        "pval_sim",
        "var_rand",
        "var_sim",
        "z_norm",
        "pval_norm_fdr_bh",
    ]
    assert nan[stats_cols].isna().all().all()
    assert np.isfinite(nan["var_norm"]).all()
    assert np.isfinite(df.loc[[("a", "f0"), ("b", "f0"), ("b", "f2")], stats_cols]).all().all()
    assert not np.isinf(df.select_dtypes("number")).any().any()


# --- errors -----------------------------------------------------------------------------------------


def test_errors(tissue):
    a = tissue.copy()
    with pytest.raises(ValueError, match="mode must be"):
        spatial_autocorr(a, "getis")
    with pytest.raises(ValueError, match="attr must be"):
        spatial_autocorr(a, attr="obsm")
    with pytest.raises(ValueError, match="alternative must be"):
        spatial_autocorr(a, alternative="two_sided")
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="n_perms must be"):
            spatial_autocorr(a, n_perms=bad)
    with pytest.raises(ValueError, match="duplicates"):
        spatial_autocorr(a, features=["CD3", "CD3"])
    with pytest.raises(ValueError, match="empty"):
        spatial_autocorr(a, features=[])
    with pytest.raises(ValueError, match="attr='X' only"):
        spatial_autocorr(a, attr="obs", layer="counts")
    with pytest.raises(DataModelError, match=r"features \['CD999', 'nope'\] \(2 in all\).*var_names"):
        spatial_autocorr(a, features=["CD3", "CD999", "nope"])
    with pytest.raises(DataModelError, match=r"layers\['counts'\] is missing"):
        spatial_autocorr(a, layer="counts")
    with pytest.raises(DataModelError, match=r"\['cell_type'\] are not numeric"):
        spatial_autocorr(a, attr="obs", features=["cell_type"])
    with pytest.raises(DataModelError, match=r"\['nope'\] are not numeric columns of adata.obs"):
        spatial_autocorr(a, attr="obs", features=["area_um2", "nope"])
    with pytest.raises(DataModelError, match=r"run spatialpath\.gr\.spatial_graph"):
        spatial_autocorr(a, connectivity_key="other")
    nan = a.copy()
    nan.X[5, list(a.var_names).index("CD8")] = np.nan
    with pytest.raises(DataModelError, match=r"features \['CD8'\].*NaN or infinite"):
        spatial_autocorr(nan)


def test_graph_and_image_errors(tissue):
    a = tissue.copy()
    g = a.obsp["spatial_connectivities"].tolil()
    g[0, 0] = 1.0
    a.obsp["spatial_connectivities"] = g.tocsr()
    with pytest.raises(DataModelError, match="1 self-loops"):
        spatial_autocorr(a)
    a.obsp["spatial_connectivities"] = -tissue.obsp["spatial_connectivities"]
    with pytest.raises(DataModelError, match="negative or non-finite weights"):
        spatial_autocorr(a)
    a.obsp["spatial_connectivities"] = tissue.obsp["spatial_connectivities"]
    a.obs["image_id"] = pd.Categorical(np.where(np.arange(a.n_obs) < 1000, "a", "b"))
    with pytest.raises(
        DataModelError, match=r"edges of adata.obsp\['spatial_connectivities'\] join cells of "
    ):
        spatial_autocorr(a)
    a.obs["image_id"] = pd.Categorical(np.where(np.arange(a.n_obs) < 3, "tiny", "big"))
    with pytest.raises(DataModelError, match=r"fewer than 4 cells \[\('tiny', 3\)\]"):
        spatial_autocorr(a)
    rng = np.random.default_rng(0)
    b = _cells(rng.normal(size=(8, 2)), rng.uniform(size=(8, 2)), images=np.repeat(["x", "y"], 4),
               graph=sparse.csr_matrix((8, 8)))  # fmt: skip
    with pytest.warns(UserWarning, match=r"images \['x', 'y'\] have no edges"):
        empty = spatial_autocorr(b, copy=True)
    assert empty[["I", "var_norm", "pval_norm"]].isna().all().all()
