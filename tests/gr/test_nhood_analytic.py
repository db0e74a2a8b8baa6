"""Exact join-count moments: enumeration of every permutation on tiny graphs, then real data."""

from __future__ import annotations

import itertools
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.spatial import cKDTree

from spatialpath.gr._nhood import nhood_enrichment
from spatialpath.gr._nhood_analytic import graph_summary, join_count_moments

#: CODEX 20x pixel size, Schürch et al. 2020 (SOURCE.md asks to verify).
CODEX_PIXEL_SIZE_UM = 0.377


def _csr(n, rows, cols):
    """CSR keeping parallel edges as separate stored entries (scipy's COO path would sum them)."""
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    order = np.lexsort((cols, rows))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    return sparse.csr_matrix((np.ones(len(rows)), cols[order], indptr), shape=(n, n))


def _enumerate(labels, rows, cols, k):
    """Mean and variance of X[a, b] over all n! relabellings (exact)."""
    perms = np.array(list(itertools.permutations(range(len(labels)))))
    lab = np.asarray(labels)[perms]
    x = np.zeros((len(perms), k, k))
    for r, c in zip(rows, cols, strict=True):
        np.add.at(x, (np.arange(len(perms)), lab[:, r], lab[:, c]), 1)
    return x.mean(axis=0), x.var(axis=0)


def _random_graph(rng, n, kind):
    if kind == "knn":  # fixed out-degree, directed, some reciprocal pairs
        k = int(rng.integers(1, n - 1))
        rows = np.repeat(np.arange(n), k)
        cols = np.concatenate([rng.choice(np.delete(np.arange(n), i), k, replace=False) for i in range(n)])
        return rows, cols
    a = (rng.uniform(size=(n, n)) < rng.uniform(0.2, 0.9)).astype(int)
    if kind == "symmetric":
        a = np.triu(a, 1)
        a = a + a.T
    if kind in ("directed", "symmetric"):
        np.fill_diagonal(a, 0)
    if kind == "multi":  # parallel edges and self-loops
        a = a + (rng.uniform(size=(n, n)) < 0.25)
    rows, cols = np.nonzero(a)
    reps = a[rows, cols]
    return np.repeat(rows, reps), np.repeat(cols, reps)


@pytest.mark.parametrize("kind", ["knn", "directed", "symmetric", "loops", "multi"])
@pytest.mark.parametrize("seed", range(8))
def test_moments_equal_enumeration_of_all_permutations(kind, seed):
    rng = np.random.default_rng([seed, len(kind)])
    n = int(rng.integers(3, 8))
    k = int(rng.integers(2, 4))
    labels = rng.integers(0, k, n)
    if seed == 0:
        labels[:] = np.arange(n) % 2  # type 2 (if any) absent: zero mean and variance
    rows, cols = _random_graph(rng, n, kind)
    mean, var = _enumerate(labels, rows, cols, k)
    summary = graph_summary(_csr(n, rows, cols), np.zeros(n, np.int32), 1)
    exact_mean, exact_var = join_count_moments(np.bincount(labels, minlength=k)[None], summary)
    np.testing.assert_allclose(exact_mean[0], mean, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(exact_var[0], var, rtol=1e-10, atol=1e-10)


def test_overlap_counts_of_a_small_graph():
    # 0->1, 1->0 (reciprocal), 0->2, 2->1, 1->1 (self-loop), 3->2 twice (parallel)
    g = _csr(4, [0, 1, 0, 2, 1, 3, 3], [1, 0, 2, 1, 1, 2, 2])
    s = graph_summary(g, np.zeros(4, np.int32), 1)
    assert (s.m[0], s.same[0], s.reciprocal[0], s.loops[0], s.loops2[0]) == (6, 8, 2, 1, 1)
    # out 0:2, 1:1, 2:1, 3:2 -> Σout² = 10; in 0:1, 1:2, 2:3 -> Σin² = 14
    assert (s.shared_source[0], s.shared_target[0]) == (10 - 8, 14 - 8)
    assert s.chain[0] == (1 * 2 + 2 * 1 + 3 * 1) - 2  # Σ in·out − reciprocal
    assert s.disjoint[0] == 36 - 8 - 2 - 2 - 6 - 2 * 5
    assert s.loop_touch[0] == 1 * (1 + 2)


def test_two_images_cross_edges_and_pooled_moments_via_the_api():
    # two images of 4 and 5 cells; one edge joins them (ignored, with a warning)
    rng = np.random.default_rng(3)
    rows, cols, n1 = [], [], 4
    for lo, n in ((0, 4), (4, 5)):
        r, c = _random_graph(rng, n, "directed")
        rows += list(r + lo)
        cols += list(c + lo)
    rows.append(0)
    cols.append(5)
    labels = np.array([0, 1, 1, 2, 0, 0, 1, 2, 2])
    adata = ad.AnnData(
        obs=pd.DataFrame(
            {"t": pd.Categorical.from_codes(labels, ["a", "b", "c"]), "image_id": ["i1"] * 4 + ["i2"] * 5},
            index=[str(i) for i in range(9)],
        )
    )
    adata.obsm["spatial"] = rng.uniform(0, 50, (9, 2))
    adata.obsp["spatial_connectivities"] = _csr(9, rows, cols)
    with pytest.warns(UserWarning, match="1 edges of the spatial graph join cells of different images"):
        res = nhood_enrichment(adata, "t", analytical=True, copy=True)
    inside = [(r, c) for r, c in zip(rows, cols, strict=True) if (r < n1) == (c < n1)]
    means, variances = [], []
    for lo, hi in ((0, 4), (4, 9)):
        e = [(r - lo, c - lo) for r, c in inside if lo <= r < hi]
        m, v = _enumerate(labels[lo:hi], [x[0] for x in e], [x[1] for x in e], 3)
        means.append(m)
        variances.append(v)
    np.testing.assert_allclose(res.expected_per_image, means, atol=1e-10)
    np.testing.assert_allclose(res.variance_per_image, variances, atol=1e-10)
    np.testing.assert_allclose(res.expected, sum(means), atol=1e-10)  # images independent: moments add
    np.testing.assert_allclose(res.variance, sum(variances), atol=1e-10)
    assert res.count.sum() == len(inside)
    assert res.params["n_cross_image_edges"] == 1


# --- real data: exact moments against >= 2000 permutations ------------------------------------


def _one_image(shared, which):
    if which == "codex":
        cells = pd.read_csv(shared("schurch_crc_codex_cells", "MIF_CRC_cells.csv.gz"))
        scale, image = CODEX_PIXEL_SIZE_UM, "reg005_A"
    else:
        cells = pd.read_csv(shared("spicyR_damond_t1d_imc", "diabetesData_cells.csv.gz"))
        scale, image = 1.0, "A16"  # IMC: 1 px = 1 µm
    cells = cells[cells["imageID"].astype(str) == image]
    obs = pd.DataFrame({"cell_type": pd.Categorical(cells["cellType"].to_numpy())})
    obs.index = obs.index.astype(str)
    adata = ad.AnnData(obs=obs)
    xy = cells[["x", "y"]].to_numpy(float) * scale
    adata.obsm["spatial"] = xy
    _, nn = cKDTree(xy).query(xy, k=7)
    n = len(xy)
    adata.obsp["spatial_connectivities"] = sparse.csr_matrix(
        (np.ones(6 * n), nn[:, 1:].ravel(), np.arange(0, 6 * n + 1, 6)), shape=(n, n)
    )
    return adata


@pytest.mark.realdata
@pytest.mark.parametrize("which", ["codex", "imc"])
def test_exact_moments_match_2000_permutations_on_real_data(shared, which):
    adata = _one_image(shared, which)
    n_perms = 2000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        perm = nhood_enrichment(adata, "cell_type", n_perms=n_perms, seed=11, progress=False, copy=True)
        exact = nhood_enrichment(adata, "cell_type", analytical=True, copy=True)
    np.testing.assert_array_equal(perm.count, exact.count)
    var = exact.variance
    ok = var > 0
    err = np.abs(perm.expected - exact.expected)[ok] / np.sqrt(var[ok] / n_perms)
    ratio = perm.variance[ok] / var[ok]
    big = exact.expected[ok] >= 5
    # the sample variance of n draws has relative sd ≈ sqrt(2 / n) for a near-normal count
    tol = 5 * np.sqrt(2 / n_perms)
    print(
        f"{which}: {adata.n_obs} cells, {ok.sum()} pairs; max |ΔE|/sd_MC = {err.max():.2f}; var ratio (E≥5, "
        f"{big.sum()} pairs) {ratio[big].min():.3f}–{ratio[big].max():.3f}, median {np.median(ratio):.3f}"
    )
    assert err.max() < 4
    assert np.all(np.abs(ratio[big] - 1) < tol)
    assert abs(np.median(ratio) - 1) < 2 * np.sqrt(2 / n_perms)
    assert np.isnan(perm.zscore[~ok]).all()  # exact variance 0: a type absent, the statistic is constant
