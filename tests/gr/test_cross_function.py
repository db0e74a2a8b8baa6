"""Cross-type K/L/G/J/g against brute-force references, CSR closed forms and planted structure."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pytest
import shapely
from anndata import AnnData
from scipy.spatial import cKDTree, distance

from spatialpath.datasets import simulate_tissue
from spatialpath.gr._cross_function import cross_function
from spatialpath.gr._window import make_window
from spatialpath.model import DataModelError

W, H = 400.0, 300.0
BOX = shapely.box(0, 0, W, H)


def _cells(n=300, seed=0, types=("A", "B"), xy=None, image=None):
    rng = np.random.default_rng(seed)
    if xy is None:
        xy = np.column_stack([rng.uniform(0, W, n), rng.uniform(0, H, n)])
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(rng.choice(list(types), len(xy)), categories=list(types))}
    )
    if image is not None:
        obs["image_id"] = image
    obs.index = [f"c{i}" for i in range(len(xy))]
    ad = AnnData(obs=obs)
    ad.obsm["spatial"] = np.asarray(xy, float)
    return ad


def _reference_k(xy, lab, a, b, r, correction):
    """K_ab by brute force in the rectangle [0, W] × [0, H] with closed-form edge corrections."""
    ia, ib = np.flatnonzero(lab == a), np.flatnonzero(lab == b)
    d = distance.cdist(xy[ia], xy[ib])
    same = a == b
    if same:
        np.fill_diagonal(d, np.inf)
    nb = len(ib) - same
    area = W * H
    u = np.abs(xy[ia][:, None, :] - xy[ib][None, :, :])
    if correction == "translation":
        e = area / ((W - u[..., 0]) * (H - u[..., 1]))
        return np.array([area / (len(ia) * nb) * np.sum(e * (d <= rk)) for rk in r])
    if correction == "none":
        return np.array([area / (len(ia) * nb) * np.sum(d <= rk) for rk in r])
    bdist = np.minimum.reduce([xy[ia, 0], W - xy[ia, 0], xy[ia, 1], H - xy[ia, 1]])
    out = []
    for rk in r:
        keep = bdist >= rk
        out.append(np.sum(d[keep] <= rk) / (nb / area * keep.sum()) if keep.any() else np.nan)
    return np.array(out)


@pytest.mark.parametrize("correction", ["translation", "border", "none"])
@pytest.mark.parametrize(("a", "b"), [("A", "B"), ("A", "A")])
def test_k_equals_a_brute_force_sum_with_closed_form_corrections(correction, a, b):
    ad = _cells()
    r = np.linspace(0, 70, 15)
    res = cross_function(ad, "cell_type", "K", a, b, r=r, correction=correction, window=BOX,
                         window_resolution_um=0.5, null=None, copy=True, progress=False)  # fmt: skip
    lab = ad.obs["cell_type"].to_numpy()
    ref = _reference_k(ad.obsm["spatial"], lab, a, b, r, correction)
    # the raster window (0.5 µm) is the only approximation: translation weights and boundary distances
    np.testing.assert_allclose(res.observed[0, 0, 1:], ref[1:], rtol=0.02)
    np.testing.assert_allclose(res.theoretical[0, 0], np.pi * r**2)


def test_l_g_and_j_against_brute_force():
    ad = _cells(n=400, seed=1)
    xy, lab = ad.obsm["spatial"], ad.obs["cell_type"].to_numpy()
    r = np.linspace(0, 40, 11)
    kw = {"window": BOX, "window_resolution_um": 0.5, "null": None, "copy": True, "progress": False, "r": r}
    res_l = cross_function(ad, "cell_type", "L", "A", "B", correction="translation", **kw)
    ref_k = _reference_k(xy, lab, "A", "B", r, "translation")
    np.testing.assert_allclose(res_l.observed[0, 0, 1:], np.sqrt(ref_k[1:] / np.pi), rtol=0.01)
    # G_AB, reduced-sample (border): fraction of A cells with b_i ≥ r having a B cell within r
    ia, ib = lab == "A", lab == "B"
    dnn = cKDTree(xy[ib]).query(xy[ia])[0]
    bdist = np.minimum.reduce([xy[ia, 0], W - xy[ia, 0], xy[ia, 1], H - xy[ia, 1]])
    ref_g = np.array([np.sum((dnn <= rk) & (bdist >= rk)) / np.sum(bdist >= rk) for rk in r])
    res_g = cross_function(ad, "cell_type", "G", "A", "B", correction="border", **kw)
    np.testing.assert_allclose(res_g.observed[0, 0], ref_g, atol=0.01)
    lam_b = ib.sum() / (W * H)
    np.testing.assert_allclose(res_g.theoretical[0, 0], 1 - np.exp(-lam_b * np.pi * r**2))
    # J_AB = (1 − G_AB) / (1 − F_B), F_B border-corrected on a fine grid of test locations
    gx, gy = np.meshgrid(np.arange(1, W, 2.0), np.arange(1, H, 2.0))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    dq = cKDTree(xy[ib]).query(grid)[0]
    bq = np.minimum.reduce([grid[:, 0], W - grid[:, 0], grid[:, 1], H - grid[:, 1]])
    ref_f = np.array([np.sum((dq <= rk) & (bq >= rk)) / np.sum(bq >= rk) for rk in r])
    res_j = cross_function(ad, "cell_type", "J", "A", "B", correction="border", **kw)
    ok = ref_f < 0.9
    np.testing.assert_allclose(res_j.observed[0, 0, ok], ((1 - ref_g) / (1 - ref_f))[ok], rtol=0.05)


def test_pair_correlation_matches_the_epanechnikov_estimator():
    ad = _cells(n=400, seed=2)
    xy, lab = ad.obsm["spatial"], ad.obs["cell_type"].to_numpy()
    r = np.linspace(0, 60, 13)
    res = cross_function(ad, "cell_type", "g", "A", "B", r=r, correction="translation", window=BOX,
                         window_resolution_um=0.5, null=None, copy=True, progress=False)  # fmt: skip
    ia, ib = lab == "A", lab == "B"
    d = distance.cdist(xy[ia], xy[ib])
    u = np.abs(xy[ia][:, None, :] - xy[ib][None, :, :])
    e = W * H / ((W - u[..., 0]) * (H - u[..., 1]))
    h = 0.15 / np.sqrt(ib.sum() / (W * H))  # Stoyan's rule with the target type's intensity
    ref = []
    for rk in r[1:]:
        t = (rk - d) / h
        kern = np.where(np.abs(t) < 1, 0.75 / h * (1 - t**2), 0.0)
        ref.append(W * H / (2 * np.pi * rk * ia.sum() * ib.sum()) * np.sum(kern * e))
    np.testing.assert_allclose(res.observed[0, 0, 1:], ref, rtol=0.02)
    assert np.isnan(res.observed[0, 0, 0])  # g is undefined at r = 0


def _csr_replicates(n_rep, n_cells=2000):
    for rep in range(n_rep):
        ad = simulate_tissue(seed=1000 + rep, n_cells=n_cells, mode="null").adata
        ad.obs["all"] = pd.Categorical(["cell"] * ad.n_obs)
        tissue = shapely.from_wkt(ad.uns["simulation"]["regions_wkt"]["tissue"])
        yield ad, tissue, make_window(tissue, resolution_um=2.0)  # one raster for the five functions


@pytest.mark.slow
def test_k_and_g_are_unbiased_under_csr_in_the_non_convex_window():
    """200 CSR patterns in the simulator's tissue outline (non-convex, with holes; ~850 µm wide)."""
    r_t = np.linspace(0, 200, 21)  # translation and no correction: up to ¼ of the window's width
    r_b = np.linspace(0, 150, 16)  # border: below the smallest inscribed radius of the 200 windows
    r_g = np.linspace(0, 30, 16)  # G rises from 0 to ~1 over 30 µm at this density
    ratios: dict[str, list[np.ndarray]] = {}
    kw = {"null": None, "copy": True, "progress": False}
    for ad, tissue, win in _csr_replicates(200):
        lam = ad.n_obs / tissue.area
        for corr, r in (("translation", r_t), ("border", r_b), ("none", r_t)):
            k = cross_function(ad, "all", "K", r=r, correction=corr, window=win, **kw)
            ratios.setdefault(f"K {corr}", []).append(k.observed[0, 0, 1:] / (np.pi * r[1:] ** 2))
        for corr in ("border", "hanisch"):
            g = cross_function(ad, "all", "G", r=r_g, correction=corr, window=win, **kw)
            ratios.setdefault(f"G {corr}", []).append(
                g.observed[0, 0, 1:] / (1 - np.exp(-lam * np.pi * r_g[1:] ** 2))
            )
    mean = {key: np.mean(v, axis=0) for key, v in ratios.items()}
    for corr in ("translation", "border"):
        assert np.all(np.abs(mean[f"K {corr}"] - 1) < 0.02), (corr, mean[f"K {corr}"])
    # without correction K is biased low, increasingly with r (the test is able to fail)
    assert mean["K none"][-1] < 0.9
    assert np.all(np.diff(mean["K none"][2:]) < 0)
    for corr in ("border", "hanisch"):
        assert np.all(np.abs(mean[f"G {corr}"] - 1) < 0.02), (corr, mean[f"G {corr}"])


def test_planted_segregation_and_clustering_have_the_right_sign():
    t = simulate_tissue(seed=5, n_cells=6000)
    ad = t.adata
    tissue = shapely.from_wkt(ad.uns["simulation"]["regions_wkt"]["tissue"])
    kw = {"r_max": 100, "window": tissue, "n_perms": 99, "copy": True, "progress": False}
    # CD8 T cells are excluded from tumour nests: fewer tumour cells around them than random labelling gives
    seg = cross_function(ad, "cell_type", "L", "CD8 T", "Tumour", alternative="less", **kw)
    assert seg.global_p[0, 0] <= 0.01
    assert np.nanmean(seg.observed[0, 0] - seg.null_mean[0, 0]) < 0
    assert seg.auc[0, 0] < 0 or seg.observed[0, 0, -1] < seg.null_mean[0, 0, -1]
    # and CD8 T cells cluster (immune aggregates): univariate L above CSR's r
    clu = cross_function(ad, "cell_type", "L", "CD8 T", "CD8 T", null="csr", alternative="greater", **kw)
    assert clu.global_p[0, 0] <= 0.01
    assert clu.auc[0, 0] > 0


def test_images_are_independent_and_seeded_by_image_id():
    one = _cells(n=250, seed=3, image="img1")
    two = _cells(n=200, seed=4, image="img2")
    both = anndata.concat([one, two], index_unique="-")
    both = both[np.random.default_rng(0).permutation(both.n_obs)].copy()  # interleaved rows
    kw = {"r": np.linspace(0, 50, 6), "n_perms": 49, "copy": True, "progress": False}
    joint = cross_function(both, "cell_type", "K", "A", "B", window={"img1": BOX, "img2": BOX}, **kw)
    alone = cross_function(two, "cell_type", "K", "A", "B", window=BOX, **kw)
    g = joint.images.index("img2")
    np.testing.assert_allclose(joint.observed[g], alone.observed[0])
    np.testing.assert_allclose(joint.null_mean[g], alone.null_mean[0])
    np.testing.assert_allclose(joint.global_p[g], alone.global_p[0])


def test_writes_uns_and_tidy_tables():
    ad = _cells(n=300, seed=6)
    cross_function(ad, "cell_type", "L", r=np.linspace(0, 40, 5), window=BOX, n_perms=39, progress=False)
    out = ad.uns["cell_type_cross_L"]
    summary = out["summary"]
    assert list(summary[["a", "b"]].itertuples(index=False, name=None)) == [
        ("A", "A"),
        ("A", "B"),
        ("B", "A"),
        ("B", "B"),
    ]
    assert set(summary.columns) >= {"auc", "global_p", "n_a", "n_b", "window_area_um2", "correction", "null"}
    n_a = (ad.obs["cell_type"] == "A").sum()
    assert summary.loc[summary.a == "A", "n_a"].eq(n_a).all()
    assert summary["window_area_um2"].iloc[0] == pytest.approx(W * H)
    assert len(out["curves"]) == 4 * 5
    assert out["params"]["n_perms"] == 39


def test_empty_types_give_nan_and_bad_input_is_refused():
    ad = _cells(n=100, seed=7, types=("A", "B", "C"))
    ad.obs["cell_type"] = ad.obs["cell_type"].cat.add_categories(["empty"])
    res = cross_function(ad, "cell_type", "K", "empty", "A", r=np.linspace(0, 30, 4), window=BOX, null=None,
                         copy=True, progress=False)  # fmt: skip
    assert np.all(np.isnan(res.observed))
    assert res.n_a[0, 0] == 0
    kw = {"window": BOX, "null": None, "copy": True, "progress": False}
    with pytest.raises(DataModelError, match="unknown cell type"):
        cross_function(ad, "cell_type", "K", "nope", **kw)
    with pytest.raises(DataModelError, match="kind must be one of"):
        cross_function(ad, "cell_type", "Z", **kw)
    with pytest.raises(DataModelError, match="not available for K"):
        cross_function(ad, "cell_type", "K", correction="hanisch", **kw)
    with pytest.raises(DataModelError, match="contains none of its"):
        cross_function(ad, "cell_type", "K", window=shapely.box(1e4, 1e4, 1e4 + 10, 1e4 + 10), null=None)
    with pytest.raises(DataModelError, match=r"largest valid r is 1(49|50)"):
        cross_function(ad, "cell_type", "K", r=np.linspace(0, 200, 5), correction="border", **kw)
    with pytest.raises(DataModelError, match="increasing"):
        cross_function(ad, "cell_type", "K", r=[0, 10, 5], **kw)
    with pytest.raises(DataModelError, match="r or r_max"):
        cross_function(ad, "cell_type", "K", r=[0, 10], r_max=5, **kw)
    with pytest.raises(DataModelError, match="null must be"):
        cross_function(ad, "cell_type", "K", window=BOX, null="poisson")
    with pytest.raises(DataModelError, match="n_perms"):
        cross_function(ad, "cell_type", "K", window=BOX, n_perms=0)
    with pytest.raises(DataModelError, match="at least 39 are needed"):
        cross_function(ad, "cell_type", "K", window=BOX, n_perms=19)
    two = _cells(n=50, seed=1, image="i1")
    two.obs["image_id"] = pd.Categorical(["i1", "i2"] * 25)
    with pytest.raises(DataModelError, match="mapping"):
        cross_function(two, "cell_type", "K", **kw)
    with pytest.raises(DataModelError, match="no entry for image"):
        cross_function(two, "cell_type", "K", window={"i1": BOX}, null=None)


@pytest.mark.slow
def test_random_labelling_tests_are_calibrated():
    """1000 null replicates (labels independent of locations): P(p ≤ 0.05) within [0.03, 0.07]."""
    win = make_window(BOX, resolution_um=2.0)
    r = np.linspace(0, 60, 13)
    pointwise, global_ = [], []
    for rep in range(1000):
        ad = _cells(n=300, seed=10_000 + rep)
        res = cross_function(ad, "cell_type", "L", "A", "B", r=r, window=win, n_perms=99, seed=rep,
                             copy=True, progress=False)  # fmt: skip
        pointwise.append(res.pointwise_p[0, 0, 10])  # r = 50 µm
        global_.append(res.global_p[0, 0])
    rate_pw, rate_gl = np.mean(np.array(pointwise) <= 0.05), np.mean(np.array(global_) <= 0.05)
    assert 0.03 <= rate_pw <= 0.07, rate_pw
    assert 0.03 <= rate_gl <= 0.07, rate_gl


def test_univariate_l_is_plotted_by_squidpy():
    import matplotlib.pyplot as plt
    import squidpy as sq

    ad = _cells(n=300, seed=8)
    cross_function(ad, "cell_type", "L", r=np.linspace(0, 40, 5), window=BOX, n_perms=39, progress=False)
    rip = ad.uns["cell_type_ripley_L"]
    assert set(rip["L_stat"]["cell_type"]) == {"A", "B"}
    summary = ad.uns["cell_type_cross_L"]["curves"]
    obs_a = summary[(summary.a == "A") & (summary.b == "A")]["observed"].to_numpy()
    np.testing.assert_array_equal(rip["L_stat"].query("cell_type == 'A'")["stats"].to_numpy(), obs_a)
    sq.pl.ripley(ad, cluster_key="cell_type", mode="L")
    plt.close("all")


def test_default_distances_stay_within_the_border_support():
    # an L of 20 µm wide arms: a quarter of its bounding box's shorter side (15 µm) exceeds its inscribed
    # radius, the circle in the corner touching both outer sides and the inner corner: 20√2/(1 + √2) µm
    strip = shapely.box(0, 0, 400, 20).union(shapely.box(0, 0, 20, 60))
    rng = np.random.default_rng(3)
    xy = np.array([p for p in rng.uniform(0, 400, (4000, 2)) * [1, 0.15] if strip.contains(shapely.Point(p))])
    ad = _cells(xy=xy, seed=3)
    res = cross_function(ad, "cell_type", "G", "A", "B", window=strip, null=None, copy=True, progress=False)
    inscribed = 20 * np.sqrt(2) / (1 + np.sqrt(2))  # 11.72 µm
    assert res.r[-1] <= inscribed
    assert res.r[-1] > 0.95 * inscribed
    # defined where focal cells lie that far inside (the arm tips are sparse: NaN near the inscribed radius)
    assert np.all(np.isfinite(res.observed[0, 0, 1:30]))
