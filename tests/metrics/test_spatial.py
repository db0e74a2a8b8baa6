"""Clark–Evans (CSR and lattices), neighbourhood entropy vs scipy, CN frequencies, cross AUC."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from scipy.spatial import cKDTree
from scipy.stats import entropy

import spatialpath.metrics as spm
from spatialpath.datasets import simulate_tissue
from spatialpath.gr import cellular_neighborhoods, cn_frequencies, cross_function


def test_clark_evans_is_one_under_csr():
    """simulate_tissue(mode='null'): uniform positions in a non-convex tissue with holes, labels
    independent of position, so every type is CSR. Mean over 6 replicates x 8 types."""
    ce = {"cdf": [], "none": []}
    for seed in range(6):
        a = simulate_tissue(seed=seed, n_cells=5000, mode="null").adata
        tissue = shapely.from_wkt(a.uns["simulation"]["regions_wkt"]["tissue"])
        img = spm.ImageData.from_arrays(a.obsm["spatial"], a.obs["cell_type"], {"tissue": tissue})
        for corr, values in ce.items():
            values += [r["value"] for r in spm.clark_evans(img, correction=corr) if r["status"] == "ok"]
    assert len(ce["cdf"]) >= 40
    assert np.mean(ce["cdf"]) == pytest.approx(1.0, abs=0.025)  # measured 0.992 ± 0.005
    assert np.mean(ce["none"]) > np.mean(ce["cdf"])  # no edge correction: biased upwards (1.015)


@pytest.mark.parametrize("lattice", ["square", "hexagonal"])
def test_clark_evans_closed_form_on_lattices(lattice):
    s, n = 10.0, 30
    i, j = np.meshgrid(np.arange(n), np.arange(n))
    if lattice == "square":
        xy, cell_area, expected = np.column_stack([i.ravel() * s, j.ravel() * s]), s * s, 2.0
    else:  # R = s / (0.5 / sqrt(λ)), λ = 2 / (√3 s²): 2·√(2/√3) = 2.1491
        xy = np.column_stack([(i + 0.5 * (j % 2)).ravel() * s, j.ravel() * s * np.sqrt(3) / 2])
        cell_area, expected = s * s * np.sqrt(3) / 2, 2 * np.sqrt(2 / np.sqrt(3))
    # a window of exactly n² lattice cells, so λ = 1 / cell_area
    w = n * s
    h = n * cell_area / s
    box = shapely.box(-s / 4, -s / 4, w - s / 4, h - s / 4)
    assert box.area == pytest.approx(n * n * cell_area)
    img = spm.ImageData.from_arrays(xy, ["A"] * len(xy), {"tissue": box})
    for corr in ("cdf", "none"):
        assert spm.clark_evans(img, correction=corr)[0]["value"] == pytest.approx(expected, rel=1e-9)


def test_clark_evans_clustered_below_one_and_statuses():
    rng = np.random.default_rng(1)
    centres = rng.uniform(100, 900, size=(10, 2))
    xy = np.concatenate([c + rng.normal(0, 8, size=(30, 2)) for c in centres])
    img = spm.ImageData.from_arrays(xy, ["A"] * len(xy), {"tissue": shapely.box(0, 0, 1000, 1000)},
                                    categories=["A", "B"])  # fmt: skip
    rows = spm.clark_evans(img)
    assert rows[0]["value"] < 0.5
    assert rows[1]["status"] == "below_min_cells"
    assert np.isnan(rows[1]["value"])


def test_mean_nn_distance_cdf_is_censored_when_g_is_incomplete():
    assert np.isnan(spm.mean_nn_distance_cdf(np.array([50.0, 60.0]), np.array([5.0, 10.0])))


def test_neighbourhood_entropy_matches_scipy():
    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 300, size=(400, 2))
    types = rng.choice(list("ABCD"), size=400, p=[0.4, 0.3, 0.2, 0.1])
    regions = {"tissue": shapely.box(0, 0, 300, 300), "left": shapely.box(0, 0, 150, 300)}
    img = spm.ImageData.from_arrays(xy, types, regions)
    k = 8
    _, idx = cKDTree(xy).query(xy, k=k + 1)
    ref = []
    for i in range(len(xy)):
        nb = [j for j in idx[i] if j != i][:k]
        _, counts = np.unique(types[nb], return_counts=True)
        ref.append(entropy(counts, base=2))
    ref = np.array(ref)
    got = spm.neighbourhood_entropy(img, k=k)[0]
    assert got["value"] == pytest.approx(ref.mean(), rel=1e-12)
    left = spm.neighbourhood_entropy(img, "left", k=k)[0]
    assert left["value"] == pytest.approx(ref[xy[:, 0] <= 150].mean(), rel=1e-12)
    assert spm.neighbourhood_entropy(img, "right")[0]["status"] == "compartment_absent"
    nat = spm.neighbourhood_entropy(img, k=k, base=np.e)[0]["value"]
    assert nat == pytest.approx(got["value"] * np.log(2))


def test_cn_frequency_matches_gr_cn_frequencies(sim20k, make_regions):
    a = sim20k.adata.copy()
    cellular_neighborhoods(a, n_clusters=4)
    t = spm.compute(a, make_regions(a), ["cn_frequency"])
    ref = cn_frequencies(a).set_index("cn")["fraction"]
    tissue = t.query("compartment == 'tissue'").set_index("cell_type")
    # every cell is in the simulator's tissue polygon, so the tissue rows equal the whole image
    assert tissue["n_cells_b"].iloc[0] == a.n_obs
    np.testing.assert_allclose(tissue.loc[ref.index.astype(str), "value"], ref.to_numpy())
    assert np.allclose(t.groupby("compartment")["value"].sum(), 1.0)
    # the tumour compartment is dominated by the tumour-nest CN(s); the stroma by others
    assert t.query("compartment == 'tumour'")["value"].max() > 0.5


def test_cross_auc_equals_cross_function_summary():
    t = simulate_tissue(seed=0, n_cells=5000)
    a = t.adata[t.adata.obs["cell_type"].isin(["CD8 T", "Tumour"])].copy()
    a.obs["cell_type"] = a.obs["cell_type"].cat.remove_unused_categories()
    tissue = shapely.from_wkt(a.uns["simulation"]["regions_wkt"]["tissue"])
    img = spm.ImageData.from_arrays(a.obsm["spatial"], a.obs["cell_type"], {"tissue": tissue},
                                    categories=list(a.obs["cell_type"].cat.categories))  # fmt: skip
    got = {}
    for kind, func in (("L", spm.l_cross_auc), ("G", spm.g_cross_auc)):
        ref = cross_function(a, "cell_type", kind, r_max=50.0, window=tissue, null=None, copy=True,
                             progress=False).summary()  # fmt: skip
        rows = {(r["cell_type"], r["cell_type_b"]): r for r in func(img)}
        assert len(ref) == len(rows) == 4
        for _, s in ref.iterrows():
            got[(kind, s["a"], s["b"])] = rows[(s["a"], s["b"])]["value"]
            assert got[(kind, s["a"], s["b"])] == pytest.approx(s["auc"], rel=1e-6, abs=1e-9)
    # CD8 T cells are kept out of the tumour nests: fewer tumour cells around them than at random
    assert got[("L", "CD8 T", "Tumour")] < 0
    assert got[("G", "CD8 T", "Tumour")] < 0
    few = spm.l_cross_auc(img, min_cells=10**6)
    assert {r["status"] for r in few} == {"below_min_cells"}
