"""Neighbourhood enrichment: squidpy parity on real data, planted effects, reproducibility, errors."""

from __future__ import annotations

import warnings

import anndata as ad
import numba
import numpy as np
import pandas as pd
import pytest
import squidpy as sq
from matplotlib.figure import Figure
from scipy import sparse
from scipy.spatial import cKDTree

from spatialpath.datasets import simulate_cohort, simulate_tissue
from spatialpath.gr._nhood import NhoodEnrichmentResult, nhood_enrichment
from spatialpath.model import DataModelError
from spatialpath.pl._nhood import nhood_heatmap

#: CODEX 20x pixel size, Schürch et al. 2020 (SOURCE.md asks to verify).
CODEX_PIXEL_SIZE_UM = 0.377


def knn_graph(adata, k=6, library_key=None):
    """Directed k-NN graph per image with scipy (the keys squidpy writes)."""
    xy = adata.obsm["spatial"]
    n = adata.n_obs
    cols = np.empty((n, k), np.int64)
    images = np.zeros(n) if library_key is None else adata.obs[library_key].to_numpy()
    for image in pd.unique(images):
        rows = np.flatnonzero(images == image)
        _, nn = cKDTree(xy[rows]).query(xy[rows], k=k + 1)
        cols[rows] = rows[nn[:, 1:]]
    adata.obsp["spatial_connectivities"] = sparse.csr_matrix(
        (np.ones(n * k), cols.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n)
    )
    return adata


@pytest.fixture(scope="module")
def tissue():
    return knn_graph(simulate_tissue(seed=5, n_cells=4000).adata)


@pytest.fixture(scope="module")
def cohort():
    a = simulate_cohort(n_patients=3, images_per_sample=2, n_cells=800, progress=False)
    return knn_graph(a, library_key="image_id")


# --- squidpy parity on real data, image by image ------------------------------------------------


def _real(shared, which, n_images):
    if which == "codex":
        cells = pd.read_csv(shared("schurch_crc_codex_cells", "MIF_CRC_cells.csv.gz"))
        scale, patient = CODEX_PIXEL_SIZE_UM, "ID"
    else:
        cells = pd.read_csv(shared("spicyR_damond_t1d_imc", "diabetesData_cells.csv.gz"))
        scale, patient = 1.0, "case"  # IMC: 1 px = 1 µm
    sizes = cells.groupby("imageID").size()
    images = sizes[sizes.between(1500, 4000)].index[:n_images]
    cells = cells[cells["imageID"].isin(images)].reset_index(drop=True)
    obs = pd.DataFrame(
        {
            "image_id": pd.Categorical(cells["imageID"].astype(str).to_numpy()),
            "patient_id": cells[patient].astype(str).to_numpy(),
            "cell_type": pd.Categorical(cells["cellType"].to_numpy()),
        },
        index=cells.index.astype(str),
    )
    adata = ad.AnnData(obs=obs)
    adata.obsm["spatial"] = cells[["x", "y"]].to_numpy(float) * scale
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sq.gr.spatial_neighbors_knn(adata, n_neighs=6, library_key="image_id")
    return adata


def _squidpy_nhood(adata, **kw):
    """squidpy's nhood_enrichment, restoring numba's thread count: its ``parallelize`` sets it to 1
    in the calling thread and never restores it (squidpy 1.8.2 ``_utils._callback_wrapper``)."""
    threads = numba.get_num_threads()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sq.gr.nhood_enrichment(adata, "cell_type", copy=True, show_progress_bar=False, **kw)
    finally:
        numba.set_num_threads(threads)


@pytest.mark.realdata
@pytest.mark.parametrize("which", ["codex", "imc"])
def test_counts_equal_and_z_match_squidpy_image_by_image(shared, which):
    adata = _real(shared, which, n_images=4)
    res = nhood_enrichment(adata, "cell_type", n_perms=1000, seed=0, progress=False, copy=True)
    categories = list(adata.obs["cell_type"].cat.categories)
    assert res.categories == categories
    for g, image in enumerate(res.images):
        one = adata[adata.obs["image_id"] == image].copy()
        one.obs["cell_type"] = one.obs["cell_type"].cat.set_categories(categories)  # keep absent types
        ref = _squidpy_nhood(one, n_perms=1000, seed=0)
        np.testing.assert_array_equal(res.count_per_image[g], ref.counts)
        both = np.isfinite(ref.zscore) & np.isfinite(res.zscore_per_image[g])
        np.testing.assert_array_equal(np.isfinite(ref.zscore), np.isfinite(res.zscore_per_image[g]))
        r = np.corrcoef(ref.zscore[both], res.zscore_per_image[g][both])[0, 1]
        print(f"{which} {image}: {one.n_obs} cells, {both.sum()} pairs, corr(z, squidpy z) = {r:.4f}")
        assert r > 0.99
    pooled = _squidpy_nhood(adata, n_perms=200, library_key="image_id")
    np.testing.assert_array_equal(res.count, pooled.counts)


# --- definitions and structure ---------------------------------------------------------------------


def test_uns_keys_dtypes_and_squidpy_plot(tissue, tmp_path):
    adata = tissue.copy()
    nhood_enrichment(adata, "cell_type", n_perms=50, progress=False)
    res = adata.uns["cell_type_nhood_enrichment"]
    k = len(adata.obs["cell_type"].cat.categories)
    assert res["zscore"].shape == (k, k)
    assert res["zscore"].dtype == np.float64
    assert res["count"].dtype == np.uint32
    assert int(res["count"].sum()) == adata.obsp["spatial_connectivities"].nnz
    for key in ("expected", "variance", "log2_ratio", "pvalue", "qvalue"):
        assert res[key].shape == (k, k)
        assert res[f"{key}_per_image"].shape == (1, k, k)
    assert list(res["images"]) == ["sim_0"]
    assert list(res["patients"]) == ["sim_0"]
    assert res["params"]["n_perms"] == 50
    assert res["params"]["library_key"] == "image_id"
    np.testing.assert_array_equal(res["zscore_per_patient"], res["zscore_per_image"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sq.pl.nhood_enrichment(adata, "cell_type")  # squidpy reads our keys
    adata.write_h5ad(tmp_path / "nhood.h5ad")
    back = ad.read_h5ad(tmp_path / "nhood.h5ad")
    np.testing.assert_array_equal(back.uns["cell_type_nhood_enrichment"]["zscore"], res["zscore"])


def test_statistics_are_consistent_and_table_matches_arrays(cohort):
    res = nhood_enrichment(cohort, "cell_type", n_perms=200, progress=False, copy=True)
    assert isinstance(res, NhoodEnrichmentResult)
    assert res.counts is res.count
    np.testing.assert_array_equal(res.count, res.count_per_image.sum(axis=0))
    assert res.patients == ["P001", "P002", "P003"]
    assert res.n_images_per_patient.tolist() == [2, 2, 2]
    np.testing.assert_array_equal(res.count_per_patient[0], res.count_per_image[:2].sum(axis=0))
    ok = np.isfinite(res.zscore_per_image)
    z = (res.count_per_image - res.expected_per_image) / np.sqrt(res.variance_per_image)
    np.testing.assert_allclose(res.zscore_per_image[ok], z[ok])
    with np.errstate(divide="ignore"):
        l2 = np.log2(res.count_per_image / res.expected_per_image)
    np.testing.assert_allclose(res.log2_ratio_per_image[ok], l2[ok])
    assert np.all((res.pvalue_per_image[ok] > 0) & (res.pvalue_per_image[ok] <= 1))
    assert np.all(res.qvalue_per_image[ok] >= res.pvalue_per_image[ok])
    t = res.table
    assert len(t) == (6 + 3 + 1) * 64
    cohort_rows = t[t["level"] == "cohort"]
    np.testing.assert_array_equal(cohort_rows["count"].to_numpy().reshape(8, 8), res.count)
    row = t[(t["level"] == "image") & (t["image_id"] == res.images[1])]
    np.testing.assert_allclose(row["zscore"].to_numpy().reshape(8, 8), res.zscore_per_image[1])
    assert (row["n_a"].to_numpy().reshape(8, 8)[:, 0] == res.n_cells_per_image[1]).all()
    assert list(t.columns[:6]) == ["level", "image_id", "patient_id", "n_images", "cell_type", "cell_type_b"]


def test_absent_type_gives_nan_for_that_image_only(cohort):
    adata = cohort.copy()
    first = (adata.obs["image_id"] == adata.obs["image_id"].cat.categories[0]).to_numpy()
    labels = adata.obs["cell_type"].copy()
    labels[first & (labels == "B cell").to_numpy()] = "CD4 T"
    adata.obs["cell_type"] = labels
    for analytical in (False, True):
        res = nhood_enrichment(
            adata, "cell_type", n_perms=100, analytical=analytical, progress=False, copy=True
        )
        b = res.categories.index("B cell")
        for key in ("zscore", "pvalue", "qvalue", "log2_ratio"):
            per_image = getattr(res, f"{key}_per_image")
            assert np.isnan(per_image[0, b, :]).all()
            assert np.isnan(per_image[0, :, b]).all()
            assert np.isfinite(getattr(res, key)[b, b])  # present in other images: pooled is defined
        assert res.count_per_image[0, b].sum() == 0


def test_image_without_edges_gives_nan_z_and_p_one(cohort):
    adata = cohort.copy()
    first = (adata.obs["image_id"] == adata.obs["image_id"].cat.categories[0]).to_numpy()
    g = adata.obsp["spatial_connectivities"].tocsr()
    adata.obsp["spatial_connectivities"] = sparse.diags((~first).astype(float)) @ g  # drop its out-edges
    adata.obsp["spatial_connectivities"].eliminate_zeros()
    for analytical in (False, True):
        res = nhood_enrichment(
            adata, "cell_type", n_perms=50, analytical=analytical, progress=False, copy=True
        )
        assert res.count_per_image[0].sum() == 0
        assert np.isnan(res.zscore_per_image[0]).all()
        present = res.n_cells_per_image[0] > 0
        assert (res.pvalue_per_image[0][np.ix_(present, present)] == 1).all()
        assert np.isfinite(res.zscore_per_image[1]).any()


def test_symmetric_graph_gives_symmetric_counts(tissue):
    adata = tissue.copy()
    g = adata.obsp["spatial_connectivities"]
    adata.obsp["spatial_connectivities"] = ((g + g.T) > 0).astype(np.float32)
    res = nhood_enrichment(adata, "cell_type", analytical=True, copy=True)
    np.testing.assert_array_equal(res.count, res.count.T)
    np.testing.assert_allclose(res.zscore, res.zscore.T, equal_nan=True)


# --- planted effects ----------------------------------------------------------------------------


@pytest.mark.parametrize("analytical", [False, True])
def test_planted_effects_are_recovered_with_the_right_sign(tissue, analytical):
    res = nhood_enrichment(tissue, "cell_type", n_perms=300, analytical=analytical, progress=False, copy=True)
    z = pd.DataFrame(res.zscore, index=res.categories, columns=res.categories)
    print(z.round(1).to_string())
    assert z.loc["CD8 T", "Tumour"] < -3  # CD8 T cells excluded from tumour nests
    assert z.loc["Tumour", "CD8 T"] < -3
    assert z.loc["Macrophage", "CD8 T"] > 3  # both dense in the invasive margin
    assert z.loc["CD8 T", "Macrophage"] > 3
    assert z.loc["B cell", "CD4 T"] > 3  # immune aggregates
    assert z.loc["CD4 T", "B cell"] > 3
    assert z.loc["Tumour", "Tumour"] > 3


def test_planted_effect_sizes_move_the_log2_ratio():
    """Same seed, effects switched off vs on. z-scores grow with sample size and depend on the whole
    composition, so the contrast uses the log2 ratio observed / expected."""

    def log2(**effects):
        a = knn_graph(simulate_tissue(seed=5, n_cells=4000, **effects).adata)
        r = nhood_enrichment(a, "cell_type", analytical=True, copy=True)
        return pd.DataFrame(r.log2_ratio, index=r.categories, columns=r.categories)

    none, planted = log2(cd8_exclusion=1.0, macrophage_border_enrichment=1.0), log2()
    cd8 = (none.loc["CD8 T", "Tumour"], planted.loc["CD8 T", "Tumour"])
    mac = (none.loc["Macrophage", "CD8 T"], planted.loc["Macrophage", "CD8 T"])
    print(
        f"log2 ratio CD8 T->Tumour {cd8[0]:.2f} -> {cd8[1]:.2f}; "
        f"Macrophage->CD8 T {mac[0]:.2f} -> {mac[1]:.2f}"
    )
    assert cd8[1] < cd8[0] - 0.4  # exclusion from nests: fewer CD8-tumour contacts
    assert mac[1] > mac[0] + 0.3  # macrophages crowd the margin, where CD8 T cells are dense


# --- reproducibility ----------------------------------------------------------------------------


def _fields(res):
    return {k: v for k, v in vars(res).items() if isinstance(v, np.ndarray)}


def test_bit_identical_with_one_or_two_threads_and_row_order(cohort):
    runs = []
    for threads in (1, 2):
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        runs.append(nhood_enrichment(cohort, "cell_type", n_perms=100, seed=7, progress=False, copy=True))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    shuffled = cohort[np.random.default_rng(0).permutation(cohort.n_obs)].copy()
    runs.append(nhood_enrichment(shuffled, "cell_type", n_perms=100, seed=7, progress=False, copy=True))
    for other in runs[1:]:
        for key, value in _fields(runs[0]).items():
            np.testing.assert_array_equal(value, _fields(other)[key], err_msg=key)
    other_seed = nhood_enrichment(cohort, "cell_type", n_perms=100, seed=8, progress=False, copy=True)
    assert not np.array_equal(other_seed.expected_per_image, runs[0].expected_per_image)


# --- bad input: one clear error each ----------------------------------------------------------


def _small():
    a = simulate_tissue(seed=1, n_cells=300).adata
    return knn_graph(a)


def test_error_non_categorical_labels():
    a = _small()
    a.obs["cell_type"] = a.obs["cell_type"].astype(str)
    with pytest.raises(DataModelError, match="must be categorical"):
        nhood_enrichment(a, "cell_type", progress=False)


def test_error_missing_labels():
    a = _small()
    a.obs.loc[a.obs_names[:3], "cell_type"] = np.nan
    with pytest.raises(DataModelError, match="3 missing values"):
        nhood_enrichment(a, "cell_type", progress=False)


def test_error_single_cell_type():
    a = _small()
    a.obs["one"] = pd.Categorical(["Tumour"] * a.n_obs)
    with pytest.raises(DataModelError, match="needs at least 2 cell types"):
        nhood_enrichment(a, "one", progress=False)


def test_error_image_with_fewer_than_3_cells():
    a = _small()
    a.obs["image_id"] = pd.Categorical(["big"] * (a.n_obs - 2) + ["tiny"] * 2)
    with pytest.raises(DataModelError, match=r"fewer than 3 cells: \[\('tiny', 2\)\]"):
        nhood_enrichment(a, "cell_type", progress=False)


def test_error_nan_coordinates():
    a = _small()
    a.obsm["spatial"][5] = np.nan
    with pytest.raises(DataModelError, match="1 cells with NaN or infinite coordinates"):
        nhood_enrichment(a, "cell_type", progress=False)


def test_error_no_graph():
    a = _small()
    del a.obsp["spatial_connectivities"]
    with pytest.raises(DataModelError, match=r"run spatialpath\.gr\.spatial_graph"):
        nhood_enrichment(a, "cell_type", progress=False)


def test_error_graph_for_other_cells(monkeypatch):
    a = _small()
    other = {"spatial_connectivities": sparse.eye(a.n_obs + 5, format="csr")}  # AnnData itself refuses this
    monkeypatch.setattr(ad.AnnData, "obsp", property(lambda self: other))
    with pytest.raises(DataModelError, match="built for other cells"):
        nhood_enrichment(a, "cell_type", progress=False)


def test_error_images_not_nested_in_patients():
    a = _small()
    a.obs["patient_id"] = ["p1", "p2"] * (a.n_obs // 2)
    with pytest.raises(DataModelError, match="images must nest in patients"):
        nhood_enrichment(a, "cell_type", progress=False)


def test_error_bad_n_perms():
    with pytest.raises(ValueError, match="n_perms must be a positive integer"):
        nhood_enrichment(_small(), "cell_type", n_perms=0, progress=False)


# --- heatmap ------------------------------------------------------------------------------------


def test_heatmap_from_adata_and_result(cohort):
    adata = cohort.copy()
    nhood_enrichment(adata, "cell_type", analytical=True)
    fig = nhood_heatmap(adata, "cell_type")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    res = adata.uns["cell_type_nhood_enrichment"]
    np.testing.assert_allclose(ax.images[0].get_array().filled(np.nan), res["zscore"], equal_nan=True)
    assert len(ax.texts) == int((np.nan_to_num(res["qvalue"], nan=1) < 0.05).sum())
    assert [t.get_text() for t in ax.get_xticklabels()] == list(res["categories"])
    result = nhood_enrichment(adata, "cell_type", analytical=True, copy=True)
    image = result.images[2]
    fig = nhood_heatmap(result, value="log2_ratio", image=image)
    shown = fig.axes[0].images[0].get_array()
    expected = result.log2_ratio_per_image[2]
    finite = expected[np.isfinite(expected)]
    lim = np.abs(finite).max()
    np.testing.assert_allclose(shown.filled(np.nan), np.clip(expected, -lim, lim), equal_nan=True)
    assert np.isneginf(expected).any()  # pairs with no edge: -inf, drawn in the lowest colour
    assert image in fig.axes[0].get_title()
    nhood_heatmap(result, patient="P002", value="count")
    with pytest.raises(ValueError, match="is not in the result"):
        nhood_heatmap(result, image="nope")
    with pytest.raises(ValueError, match=r"nhood_enrichment\(adata, 'other_key'\) first"):
        nhood_heatmap(adata, "other_key")
    import matplotlib.pyplot as plt

    plt.close("all")
