"""Calibration under the null: 500 simulated tissues with complete spatial randomness.

Each replicate is ``simulate_tissue(mode="null", n_cells=400, seed=i)`` (uniform positions in the
tissue window, labels independent of position) with a 6-NN graph. The replicates are stacked as
500 images of one AnnData, so one call tests every replicate (per-image p-values). At 400 cells
the planted proportions leave several rare types (B cells, Tregs, endothelial and CD4 T cells with
about 4 to 20 cells), so the pairs span expected counts from < 1 to > 50.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.spatial import cKDTree

from spatialpath.datasets import simulate_tissue
from spatialpath.gr._nhood import nhood_enrichment

N_REPLICATES = 500
N_CELLS = 400
ALPHA = 0.05
RARE_BINS = [(0.0, 1.0), (1.0, 2.0), (2.0, 5.0)]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def null_replicates():
    parts = [
        simulate_tissue(seed=i, n_cells=N_CELLS, mode="null", image_id=f"r{i}").adata
        for i in range(N_REPLICATES)
    ]
    categories = parts[0].obs["cell_type"].cat.categories
    obs = pd.concat([p.obs[["cell_type", "image_id"]] for p in parts], ignore_index=True)
    obs["cell_type"] = pd.Categorical(obs["cell_type"].astype(str), categories=categories)
    obs.index = obs.index.astype(str)
    adata = ad.AnnData(obs=obs)
    adata.obsm["spatial"] = np.concatenate([p.obsm["spatial"] for p in parts])
    blocks = []
    for p in parts:
        xy = p.obsm["spatial"]
        _, nn = cKDTree(xy).query(xy, k=7)
        n = len(xy)
        blocks.append(
            sparse.csr_matrix((np.ones(6 * n), nn[:, 1:].ravel(), np.arange(0, 6 * n + 1, 6)), shape=(n, n))
        )
    adata.obsp["spatial_connectivities"] = sparse.block_diag(blocks, format="csr")
    exact = nhood_enrichment(adata, "cell_type", analytical=True, copy=True)
    sizes = pd.DataFrame(exact.n_cells_per_image, columns=exact.categories)
    print(f"\n{N_REPLICATES} null replicates of {N_CELLS} cells; cells per type (min / median / max):")
    print(sizes.describe().loc[["min", "50%", "max"]].round(0).astype(int).to_string())
    return adata, exact


def _rates(p, expected, label):
    ok = np.isfinite(p)
    common = ok & (expected >= 5)
    rates = {"E >= 5": (np.mean(p[common] <= ALPHA), int(common.sum()))}
    rates["E < 5"] = (np.mean(p[ok & (expected < 5)] <= ALPHA), int((ok & (expected < 5)).sum()))
    for lo, hi in RARE_BINS:
        sel = ok & (expected >= lo) & (expected < hi)
        rates[f"{lo:g} <= E < {hi:g}"] = (np.mean(p[sel] <= ALPHA), int(sel.sum()))
    print(
        f"{label}: "
        + "; ".join(f"P(p <= {ALPHA}) = {r:.4f} for {k} ({n} tests)" for k, (r, n) in rates.items())
    )
    return rates


def _check(rates):
    rate, n = rates["E >= 5"]
    assert n > 5000
    assert 0.03 <= rate <= 0.07
    for key, (rate, n) in rates.items():
        if key != "E >= 5":
            assert n > 500, key
            assert rate <= 0.07, key


def test_permutation_p_is_calibrated_under_csr(null_replicates):
    adata, exact = null_replicates
    perm = nhood_enrichment(adata, "cell_type", n_perms=199, seed=2, progress=False, copy=True)
    np.testing.assert_array_equal(perm.count_per_image, exact.count_per_image)
    _check(_rates(perm.pvalue_per_image.ravel(), exact.expected_per_image.ravel(), "permutation, 199 perms"))


def test_analytic_p_is_calibrated_under_csr(null_replicates):
    _, exact = null_replicates
    _check(_rates(exact.pvalue_per_image.ravel(), exact.expected_per_image.ravel(), "analytic (normal)"))
    table = exact.table
    assert table.loc[table["level"] == "image", "normal_ok"].mean() > 0.5
