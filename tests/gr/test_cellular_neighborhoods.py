"""Cellular neighbourhoods: planted zones recovered, Schürch's recipe recomputed independently,
labels independent of row order, fit/predict and the model's round trips, every error path."""

from __future__ import annotations

import json
import time

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist
from sklearn.cluster import MiniBatchKMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

from spatialpath.datasets import simulate_cohort, simulate_tissue
from spatialpath.gr._cellular_neighborhoods import (
    CellularNeighborhoods,
    _windows,
    cellular_neighborhoods,
    cn_frequencies,
    cn_mixing,
    fit_cellular_neighborhoods,
    predict_cellular_neighborhoods,
)
from spatialpath.model import DataModelError
from spatialpath.pl._cn import cn_enrichment

#: CODEX 20x pixel size, Schürch et al. 2020 (as in tests/test_realdata_core.py).
CODEX_PIXEL_SIZE_UM = 0.377


def _cells(n_per_image=(150, 120), n_types=5, seed=0):
    """Uniform cells in several images, rows interleaved, with string obs_names."""
    rng = np.random.default_rng(seed)
    n = sum(n_per_image)
    image = np.repeat([f"img{i}" for i in range(len(n_per_image))], n_per_image)
    perm = rng.permutation(n)
    types = pd.Categorical.from_codes(rng.integers(0, n_types, n), [f"t{i}" for i in range(n_types)])
    obs = pd.DataFrame(
        {"image_id": pd.Categorical(image[perm]), "cell_type": types}, index=[f"c{i}" for i in range(n)]
    )
    a = ad.AnnData(obs=obs)
    a.obsm["spatial"] = rng.uniform(0, 300, (n, 2))
    return a


def _schurch_windows(adata, k=10):
    """Schürch et al.'s notebook: per image, NearestNeighbors(k).fit(X).kneighbors(X), one-hot sums."""
    onehot = pd.get_dummies(adata.obs["cell_type"]).to_numpy(float)
    out = np.zeros_like(onehot)
    for image in adata.obs["image_id"].cat.categories:
        rows = np.flatnonzero(adata.obs["image_id"] == image)
        xy = adata.obsm["spatial"][rows]
        idx = NearestNeighbors(n_neighbors=k).fit(xy).kneighbors(xy)[1]
        out[rows] = onehot[rows][idx].sum(axis=1)
    return out, onehot


# --- planted neighbourhoods -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def zones():
    """Two 30k-cell tissues with 250 µm immune aggregates (9 % of cells, so k-means with 4 clusters
    can isolate them; the default 100 µm aggregates hold ~2 % of cells and are merged away)."""
    return [simulate_tissue(seed=s, n_cells=30_000, aggregate_radius_um=250).adata for s in (0, 1)]


def test_planted_neighbourhoods_are_recovered(zones):
    for adata in zones:
        truth = adata.uns["simulation"]["cells"].loc[adata.obs_names, "neighbourhood"]
        labels, model = cellular_neighborhoods(adata, n_clusters=4, n_restarts=5, copy=True)
        assert adjusted_rand_score(truth, labels) >= 0.9
        assert model.inertia > 0
        assert 0 <= model.restart < 5
    # the preset itself (one MiniBatchKMeans run, seed 0) on the first tissue
    truth = zones[0].uns["simulation"]["cells"].loc[zones[0].obs_names, "neighbourhood"]
    labels, _ = cellular_neighborhoods(zones[0], n_clusters=4, copy=True)
    assert adjusted_rand_score(truth, labels) >= 0.9


def test_restarts_keep_the_lowest_inertia(zones):
    a = zones[1]
    one = [fit_cellular_neighborhoods(a, n_clusters=4, seed=s) for s in range(3)]
    best = fit_cellular_neighborhoods(a, n_clusters=4, n_restarts=3)
    assert best.inertia == pytest.approx(min(m.inertia for m in one))
    np.testing.assert_array_equal(best.centroids, one[best.restart].centroids)


def test_schurch_preset_cns_nest_in_planted_zones_on_the_default_tissue():
    """On the default tissue (100 µm aggregates, ~2 % of cells) 4 CNs miss the aggregates, but the
    preset's 10 CNs nest in the planted zones: each CN mapped to the zone holding most of its cells
    gives ARI 0.935 here (0.913-0.955 over seeds 0-19, median 0.941), every zone with its own CN."""
    adata = simulate_tissue(seed=0, n_cells=50_000).adata
    truth = adata.uns["simulation"]["cells"].loc[adata.obs_names, "neighbourhood"].astype(str)
    cellular_neighborhoods(adata, "cell_type")  # the preset: 10-NN counts, MiniBatchKMeans(10, seed 0)
    cn = adata.obs["cn"]
    assert len(cn.cat.categories) == 10
    majority = pd.crosstab(cn, truth).idxmax(axis=1)  # CN -> planted zone with most of its cells
    assert set(majority) == set(truth)  # the immune aggregates get a CN of their own
    assert adjusted_rand_score(truth, cn.map(majority).astype(str)) >= 0.9


# --- Schürch's recipe, recomputed --------------------------------------------------------------------


def test_windows_counts_and_enrichment_match_schurch_notebook():
    a = _cells((200, 160, 90), n_types=5)
    s, bounds = _sorted(a)
    mine = _windows(s.obsm["spatial"], _codes(s), bounds, 5, 10, None, False)
    ref, onehot = _schurch_windows(s)
    np.testing.assert_array_equal(mine, ref)
    assert (ref.sum(axis=1) == 10).all()

    labels, model = cellular_neighborhoods(a, "cell_type", n_clusters=6, copy=True)
    rows = a.obs_names.get_indexer(s.obs_names)  # a's row of each cell in canonical order
    km = MiniBatchKMeans(n_clusters=6, random_state=0).fit(
        ref
    )  # the notebook: MiniBatchKMeans(10, random_state=0)
    centres = km.cluster_centers_
    match = [int(np.flatnonzero((np.abs(centres - c) < 1e-9).all(axis=1))[0]) for c in model.centroids]
    assert sorted(match) == list(range(6))
    expected_labels = np.empty(a.n_obs, int)
    expected_labels[rows] = km.labels_
    relabel = {old: new for new, old in enumerate(match)}
    np.testing.assert_array_equal(labels.cat.codes.to_numpy(), [relabel[x] for x in expected_labels])
    sizes = np.bincount(labels.cat.codes, minlength=6)
    assert (np.diff(sizes) <= 0).all()
    assert (sizes == model.n_cells).all()

    tissue_avgs = onehot.mean(axis=0)  # the notebook's values.mean(axis=0) over the one-hot cells
    niche = centres[match]
    fc = np.log2(((niche + tissue_avgs) / (niche + tissue_avgs).sum(axis=1, keepdims=True)) / tissue_avgs)
    np.testing.assert_allclose(model.enrichment.to_numpy(), fc, rtol=1e-12)
    assert list(model.enrichment.columns) == ["t0", "t1", "t2", "t3", "t4"]
    np.testing.assert_allclose(model.tissue_frequencies, tissue_avgs)


def _sorted(a):
    """The cells in canonical order (image, then obs_name) and the bounds of each image."""
    s = a[a.obs.assign(name=a.obs_names).sort_values(["image_id", "name"]).index].copy()
    sizes = s.obs["image_id"].value_counts(sort=False).to_numpy()  # categories are sorted names
    return s, np.concatenate([[0], np.cumsum(sizes)])


def _codes(a):
    return a.obs["cell_type"].cat.codes.to_numpy().astype(np.int64)


def test_centre_cell_is_in_its_window_even_at_shared_positions():
    # 14 cells of 14 different types at one position (more than n_neighbors) and 100 cells far away
    rng = np.random.default_rng(0)
    xy = np.vstack([np.zeros((14, 2)), rng.uniform(500, 900, (100, 2))])
    codes = np.concatenate([np.arange(14), rng.integers(0, 14, 100)])
    x = _windows(xy, codes, np.array([0, 114]), 14, 10, None, False)
    assert (x[np.arange(114), codes] >= 1).all()  # every cell counts itself
    assert (x.sum(axis=1) == 10).all()
    assert (x[:14].max(axis=1) == 1).all()  # the pile's windows hold 10 of the 14 piled cells


def test_radius_windows_match_brute_force():
    a = _cells((150, 120), n_types=4)
    s, bounds = _sorted(a)
    codes = _codes(s)
    x = _windows(s.obsm["spatial"], codes, bounds, 4, None, 40.0, True)
    onehot = np.eye(4)[codes]
    same_image = s.obs["image_id"].to_numpy()[:, None] == s.obs["image_id"].to_numpy()[None, :]
    near = (cdist(s.obsm["spatial"], s.obsm["spatial"]) <= 40.0) & same_image
    ref = near.astype(float) @ onehot
    np.testing.assert_allclose(x, ref / ref.sum(axis=1, keepdims=True))
    model = fit_cellular_neighborhoods(a, n_neighbors=None, radius=40.0, n_clusters=3)
    assert model.normalize
    assert model.radius == 40.0
    assert model.n_neighbors is None
    np.testing.assert_allclose(model.centroids.sum(axis=1), 1.0)
    counts = fit_cellular_neighborhoods(a, n_neighbors=None, radius=40.0, n_clusters=3, normalize=False)
    assert not counts.normalize
    assert counts.centroids.sum(axis=1).max() > 1.5


# --- row order and alignment ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(n_patients=2, images_per_sample=2, n_cells=2_500, progress=False)


def test_labels_do_not_depend_on_row_order(cohort):
    ref, model = cellular_neighborhoods(cohort, n_clusters=5, copy=True)
    rng = np.random.default_rng(1)
    shuffled = cohort[rng.permutation(cohort.n_obs)].copy()
    labels, m2 = cellular_neighborhoods(shuffled, n_clusters=5, copy=True)
    pd.testing.assert_series_equal(labels.loc[ref.index], ref)
    np.testing.assert_array_equal(m2.centroids, model.centroids)
    # two images interleaved row by row (scimap #28 misassigned rows in exactly this layout)
    images = cohort.obs["image_id"].cat.categories[:2]
    a, b = (cohort[cohort.obs["image_id"] == i].copy() for i in images)
    blocked = ad.concat([a, b])
    order = np.argsort(np.concatenate([np.arange(a.n_obs), np.arange(b.n_obs)]) * 2
                       + np.repeat([0, 1], [a.n_obs, b.n_obs]), kind="stable")  # fmt: skip
    interleaved = blocked[order].copy()
    assert interleaved.obs["image_id"].iloc[0] != interleaved.obs["image_id"].iloc[1]
    l1, _ = cellular_neighborhoods(blocked, n_clusters=5, copy=True)
    l2, _ = cellular_neighborhoods(interleaved, n_clusters=5, copy=True)
    pd.testing.assert_series_equal(l2.loc[l1.index], l1)
    # each image alone, predicted with the cohort's model, gives the cohort's labels (rows aligned)
    for image in cohort.obs["image_id"].cat.categories:
        sub = cohort[cohort.obs["image_id"] == image].copy()
        alone = predict_cellular_neighborhoods(sub, model, copy=True)
        pd.testing.assert_series_equal(alone, ref.loc[sub.obs_names])


def test_written_keys_and_frequencies(cohort):
    a = cohort.copy()
    cellular_neighborhoods(a, n_clusters=5)
    assert a.obs["cn"].dtype == "category"
    assert list(a.obs["cn"].cat.categories) == ["CN1", "CN2", "CN3", "CN4", "CN5"]
    uns = a.uns["cn"]
    assert set(uns) == {"model", "enrichment", "params"}
    assert uns["params"]["method"] == "fit"
    assert uns["params"]["library_key"] == "image_id"
    assert uns["enrichment"].shape == (5, 8)
    freq = cn_frequencies(a)
    assert list(freq.columns) == ["image_id", "cn", "n_cells", "fraction"]
    assert len(freq) == 4 * 5
    np.testing.assert_allclose(freq.groupby("image_id", observed=True)["fraction"].sum(), 1.0)
    ref = pd.crosstab(a.obs["image_id"], a.obs["cn"]).stack()
    got = freq.set_index(["image_id", "cn"])["n_cells"]
    assert (got.loc[ref.index].to_numpy() == ref.to_numpy()).all()
    assert "fraction" not in cn_frequencies(a, normalize=False)


def test_mixing_matches_nearest_other_cell(cohort):
    a = cohort.copy()
    cellular_neighborhoods(a, n_clusters=4)
    t = cn_mixing(a)
    assert len(t) == 4 * 4 * 4
    assert int(t["n_cells"].sum()) == a.n_obs
    for image in a.obs["image_id"].cat.categories[:2]:
        sub = a[a.obs["image_id"] == image]
        nn = NearestNeighbors(n_neighbors=1).fit(sub.obsm["spatial"]).kneighbors()[1][:, 0]  # the notebook
        ref = pd.crosstab(sub.obs["cn"].to_numpy(), sub.obs["cn"].to_numpy()[nn])
        got = t[t["image_id"] == image].pivot(index="cn", columns="cn_neighbor", values="n_cells")
        np.testing.assert_array_equal(got.loc[ref.index, ref.columns].to_numpy(), ref.to_numpy())
        frac = t[(t["image_id"] == image) & (t["n_cells"] > 0)]
        np.testing.assert_allclose(frac.groupby("cn", observed=True)["fraction"].sum(), 1.0)


# --- fit / predict and the model ----------------------------------------------------------------------


def test_predict_equals_fit_and_model_round_trips(cohort, tmp_path):
    a = cohort.copy()
    cellular_neighborhoods(a, n_clusters=6)
    fitted = a.obs["cn"].copy()
    model = CellularNeighborhoods.from_dict(a.uns["cn"]["model"])
    pd.testing.assert_series_equal(
        predict_cellular_neighborhoods(a, model, copy=True), fitted, check_names=False
    )
    loaded = CellularNeighborhoods.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_array_equal(loaded.centroids, model.centroids)
    assert loaded.to_dict() == model.to_dict()
    pd.testing.assert_series_equal(
        predict_cellular_neighborhoods(a, loaded, copy=True), fitted, check_names=False
    )
    for key in [k for k in a.uns if k != "cn"]:
        del a.uns[key]
    a.write_h5ad(tmp_path / "cn.h5ad")
    back = ad.read_h5ad(tmp_path / "cn.h5ad")
    predict_cellular_neighborhoods(back, back.uns["cn"]["model"], key_added="cn2")
    np.testing.assert_array_equal(back.obs["cn2"].to_numpy(), fitted.to_numpy())
    assert back.uns["cn2"]["params"]["method"] == "predict"
    text = repr(model)
    assert "6 CNs × 8 cell types" in text
    assert "10 nearest cells (centre included), counts" in text
    assert "<table" in model._repr_html_()


def test_types_are_matched_by_name(cohort):
    model = fit_cellular_neighborhoods(cohort, n_clusters=5)
    ref = predict_cellular_neighborhoods(cohort, model, copy=True)
    reordered = cohort.copy()
    reordered.obs["cell_type"] = reordered.obs["cell_type"].cat.reorder_categories(
        reordered.obs["cell_type"].cat.categories[::-1]
    )
    pd.testing.assert_series_equal(predict_cellular_neighborhoods(reordered, model, copy=True), ref)
    no_b = cohort[cohort.obs["cell_type"] != "B cell"].copy()  # a sample without one of the types
    kept = predict_cellular_neighborhoods(no_b, model, copy=True)
    no_b.obs["cell_type"] = no_b.obs["cell_type"].cat.remove_unused_categories()
    pd.testing.assert_series_equal(predict_cellular_neighborhoods(no_b, model, copy=True), kept)
    renamed = cohort.copy()
    renamed.obs["cell_type"] = renamed.obs["cell_type"].cat.rename_categories({"Treg": "T regulatory"})
    with pytest.raises(DataModelError, match=r"not fitted on: \['T regulatory'\].*fit a new model"):
        predict_cellular_neighborhoods(renamed, model)


# --- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"radius": 30.0}, r"exactly one window.*set the other to None"),
        ({"n_neighbors": None}, r"exactly one window"),
        ({"n_neighbors": 0}, r"n_neighbors must be an integer >= 1, got 0"),
        ({"n_neighbors": 2.5}, r"n_neighbors must be an integer"),
        ({"n_neighbors": None, "radius": -1.0}, r"radius must be a distance > 0"),
        ({"n_neighbors": None, "radius": np.inf}, r"radius must be a distance > 0"),
        ({"n_clusters": 0}, r"n_clusters must be an integer >= 1"),
        ({"n_clusters": 10_000}, r"n_clusters=10000 is more than the 270 cells"),
        ({"seed": -1}, r"seed must be an integer >= 0"),
        ({"n_restarts": 0}, r"n_restarts must be an integer >= 1"),
        ({"kmeans_kwargs": {"random_state": 1}}, r"pass it as seed="),
        ({"kmeans_kwargs": {"n_clusters": 3}}, r"pass it as n_clusters="),
        ({"kmeans_kwargs": {"batchsize": 100}}, r"not a MiniBatchKMeans parameter"),
        ({"kmeans_kwargs": {"init": np.zeros((3, 5))}}, r"must be a number, string or bool"),
    ],
)
def test_parameter_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cellular_neighborhoods(_cells(), **kwargs)


def test_data_errors():
    a = _cells()
    bad = a.copy()
    bad.obs["cell_type"] = bad.obs["cell_type"].cat.add_categories(["ghost"])
    with pytest.raises(
        DataModelError, match=r"categories with no cells: \['ghost'\].*remove_unused_categories"
    ):
        cellular_neighborhoods(bad)
    bad = a.copy()
    bad.obs["cell_type"] = bad.obs["cell_type"].astype(str)
    with pytest.raises(DataModelError, match=r"must be categorical"):
        cellular_neighborhoods(bad)
    bad = a.copy()
    bad.obs.iloc[3, bad.obs.columns.get_loc("cell_type")] = np.nan
    with pytest.raises(DataModelError, match=r"missing values"):
        cellular_neighborhoods(bad)
    bad = a.copy()
    bad.obs["cell_type"] = pd.Categorical(["t0"] * bad.n_obs)
    with pytest.raises(DataModelError, match=r"at least 2 cell types"):
        cellular_neighborhoods(bad)
    with pytest.raises(DataModelError, match=r"adata.obs\['nope'\] is missing"):
        cellular_neighborhoods(a, "nope")
    bad = a.copy()
    bad.obsm["spatial"][5] = np.nan
    with pytest.raises(DataModelError, match=r"NaN or infinite coordinates"):
        cellular_neighborhoods(bad)
    bad = a.copy()
    bad.obs_names = ["same"] * 2 + list(bad.obs_names[2:])
    with pytest.raises(DataModelError, match=r"obs_names are not unique.*obs_names_make_unique"):
        cellular_neighborhoods(bad)
    small = _cells((150, 120, 6))
    with pytest.raises(DataModelError, match=r"fewer cells than n_neighbors=10: \[\('img2', 6\)\]"):
        cellular_neighborhoods(small)
    assert (
        cellular_neighborhoods(small, n_neighbors=None, radius=50.0, n_clusters=3, copy=True)[0].notna().all()
    )
    with pytest.raises(DataModelError, match=r"adata.obs\['slide'\] is missing"):
        cellular_neighborhoods(a, library_key="slide")


def test_model_and_helper_errors(cohort):
    model = fit_cellular_neighborhoods(_cells(), n_clusters=3)
    with pytest.raises(ValueError, match=r"not a CellularNeighborhoods dictionary"):
        CellularNeighborhoods.from_dict({"centroids": [[1.0]]})
    with pytest.raises(TypeError, match=r"model must be a CellularNeighborhoods"):
        predict_cellular_neighborhoods(_cells(), model.centroids)
    with pytest.raises(DataModelError, match=r"adata.obs\['cn'\] is missing"):
        cn_frequencies(_cells())
    with pytest.raises(DataModelError, match=r"adata.obs\['cn'\] is missing"):
        cn_mixing(_cells())
    with pytest.raises(ValueError, match=r"holds no CN model.*cellular_neighborhoods\(adata\)"):
        cn_enrichment(_cells())
    with pytest.raises(ValueError, match=r"cell types \['zz'\] are not in the model"):
        cn_enrichment(model, cell_types=["zz"])
    with pytest.raises(TypeError, match=r"expected an AnnData, a CellularNeighborhoods"):
        cn_enrichment(model.centroids)


def test_enrichment_heatmap_shows_the_model():
    a = _cells()
    cellular_neighborhoods(a, n_clusters=3)
    model = CellularNeighborhoods.from_dict(a.uns["cn"]["model"])
    for source in (a, model, model.to_dict(), a.uns["cn"]):
        fig = cn_enrichment(source, annotate=True)
        shown = fig.axes[0].images[0].get_array()
        np.testing.assert_allclose(shown, model.enrichment.T.to_numpy())
        assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(model.cell_types)
        assert fig.axes[0].get_xticklabels()[0].get_text().startswith("CN1\n")
        assert len(fig.axes[0].texts) == 3 * 5
    fig = cn_enrichment(model, cell_types=["t3", "t1"], vmax=2.0)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), model.enrichment[["t3", "t1"]].T.to_numpy())
    assert fig.axes[0].images[0].get_clim() == (-2.0, 2.0)


# --- real data --------------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_schurch_preset_on_the_codex_crc_cohort(shared):
    cells = pd.read_csv(shared("schurch_crc_codex_cells", "MIF_CRC_cells.csv.gz"))
    # what the table holds: no published CN labels to compare with (README: no neighborhood labels)
    assert list(cells.columns) == ["Group", "ID", "imageID", "x", "y", "cellType"]
    obs = pd.DataFrame(
        {
            "image_id": pd.Categorical(cells["imageID"].astype(str)),
            "patient_id": cells["ID"].astype(str).to_numpy(),
            "cell_type": pd.Categorical(cells["cellType"]),
        },
        index=cells.index.astype(str),
    )
    adata = ad.AnnData(obs=obs)
    adata.obsm["spatial"] = cells[["x", "y"]].to_numpy(float) * CODEX_PIXEL_SIZE_UM
    start = time.perf_counter()
    cellular_neighborhoods(
        adata, "cell_type"
    )  # the preset: 10-NN per image, MiniBatchKMeans(10, random_state=0)
    elapsed = time.perf_counter() - start
    assert elapsed < 30, f"258k cells, 140 images took {elapsed:.1f} s"
    assert adata.obs["cn"].notna().all()
    assert adata.obs["cn"].nunique() == 10
    freq = cn_frequencies(adata)
    assert freq["image_id"].nunique() == 140
    np.testing.assert_allclose(freq.groupby("image_id", observed=True)["fraction"].sum(), 1.0)
    enrichment = adata.uns["cn"]["enrichment"]
    assert np.isfinite(enrichment.to_numpy()).all()
    # a tumour CN (Schürch's "bulk tumour"): the CN most enriched in tumour cells is dominated by them
    tumour_cn = enrichment["tumor_cells"].idxmax()
    in_cn = adata.obs.loc[adata.obs["cn"] == tumour_cn, "cell_type"]
    assert in_cn.value_counts(normalize=True).idxmax() == "tumor_cells"
    # cohort-consistent prediction: one patient's images, predicted alone, keep their labels
    one = adata[adata.obs["patient_id"] == "1"].copy()
    got = predict_cellular_neighborhoods(one, adata.uns["cn"]["model"], copy=True)
    pd.testing.assert_series_equal(got, adata.obs.loc[one.obs_names, "cn"], check_names=False)
