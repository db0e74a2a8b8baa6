"""COZI conditional statistics of nhood_enrichment against brute force written here."""

from __future__ import annotations

import numpy as np
import pytest

from spatialpath.datasets import simulate_cohort
from spatialpath.gr._graph import knn_graph
from spatialpath.gr._nhood import nhood_enrichment


@pytest.fixture(scope="module")
def cohort():
    c = simulate_cohort(n_patients=2, n_cells=1500, progress=False, seed=5)
    knn_graph(c, 6)
    return c


def _brute(adata, image_id):
    """S (edges A->B), C1 (A cells with >= 1 B neighbour) and n_A by loops over cells."""
    sel = np.flatnonzero((adata.obs["image_id"] == image_id).to_numpy())
    types = adata.obs["cell_type"].cat.codes.to_numpy()
    k = len(adata.obs["cell_type"].cat.categories)
    g = adata.obsp["spatial_connectivities"].tocsr()
    s, c1, n = np.zeros((k, k)), np.zeros((k, k)), np.zeros(k)
    for i in sel:
        n[types[i]] += 1
        nb = types[g.indices[g.indptr[i] : g.indptr[i + 1]]]
        for b in range(k):
            hits = (nb == b).sum()
            s[types[i], b] += hits
            c1[types[i], b] += hits > 0
    return s, c1, n


def test_conditional_count_and_ratio_equal_brute_force(cohort):
    res = nhood_enrichment(cohort, "cell_type", n_perms=99, conditional=True, progress=False, copy=True)
    for gi, image_id in enumerate(res.images):
        s, c1, n = _brute(cohort, image_id)
        present = (n[:, None] > 0) & (n[None, :] > 0)
        np.testing.assert_allclose(
            res.conditional_count_per_image[gi][present], (s / np.maximum(c1, 1))[present]
        )
        np.testing.assert_allclose(res.conditional_ratio_per_image[gi][present], (c1 / n[:, None])[present])
        assert np.isnan(res.conditional_count_per_image[gi][~present]).all()
    s_all = sum(_brute(cohort, i)[0] for i in res.images)
    c1_all = sum(_brute(cohort, i)[1] for i in res.images)
    np.testing.assert_allclose(res.conditional_count, s_all / np.maximum(c1_all, 1))


def test_conditional_z_has_the_planted_sign_and_is_written(cohort):
    nhood_enrichment(cohort, "cell_type", n_perms=199, conditional=True, progress=False)
    uns = cohort.uns["cell_type_nhood_enrichment"]
    cats = list(cohort.obs["cell_type"].cat.categories)
    z = uns["conditional_zscore_per_image"]
    # tumour cells with a tumour neighbour have many more of them than chance (nests)
    assert (z[:, cats.index("Tumour"), cats.index("Tumour")] > 3).all()
    p = uns["conditional_pvalue_per_image"]
    assert np.nanmin(p) > 0
    assert np.nanmax(p) <= 1
    assert uns["params"]["conditional"] is True


def test_conditional_off_by_default(cohort):
    res = nhood_enrichment(cohort, "cell_type", n_perms=19, progress=False, copy=True)
    assert res.conditional_count is None
    assert not any(k.startswith("conditional_") for k in res.to_uns())
    assert res.params["conditional"] is False
