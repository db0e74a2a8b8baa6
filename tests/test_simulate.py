"""The simulator's planted structure, recovered by computations written here (shapely, scipy).

Nothing is compared with the simulator's own bookkeeping of which cell is where: cells are
assigned to regions by point-in-polygon tests on the stored polygons, and neighbourhoods are
counted with a KD-tree.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely
from scipy import ndimage
from scipy.spatial import cKDTree

from spatialpath.datasets import CELL_TYPES, MARKERS, NEIGHBOURHOODS, density_table, simulate_tissue
from spatialpath.model import validate_cells, validate_image, validate_labels

REL_TOL = 0.20  # the bar: sign and magnitude within 20 %


def _polys(adata):
    return {k: shapely.from_wkt(v) for k, v in adata.uns["simulation"]["regions_wkt"].items()}


def _density(adata, poly, cell_type):
    xy = adata.obsm["spatial"]
    sel = (adata.obs["cell_type"] == cell_type).to_numpy()
    inside = shapely.contains_xy(poly, xy[sel, 0], xy[sel, 1])
    return inside.sum() / (poly.area * 1e-6), int(inside.sum())


def test_cd8_exclusion_recovered(tissue_large):
    a = tissue_large.adata
    polys = _polys(a)
    d_nest, n_nest = _density(a, polys["tumour_nest"], "CD8 T")
    d_stroma, _ = _density(a, polys["fibrotic_stroma"], "CD8 T")
    planted = a.uns["simulation"]["effects"]["cd8_exclusion"]
    assert planted == pytest.approx(0.2)
    assert n_nest > 100  # enough cells for a 20 % bar
    ratio = d_nest / d_stroma
    assert ratio < 1  # sign: excluded
    assert ratio == pytest.approx(planted, rel=REL_TOL)


def test_macrophage_border_enrichment_recovered(tissue_large):
    a = tissue_large.adata
    polys = _polys(a)
    d_margin, _ = _density(a, polys["invasive_margin"], "Macrophage")
    d_stroma, _ = _density(a, polys["fibrotic_stroma"], "Macrophage")
    planted = a.uns["simulation"]["effects"]["macrophage_border_enrichment"]
    assert planted == pytest.approx(8.0)
    assert d_margin / d_stroma > 1
    assert d_margin / d_stroma == pytest.approx(planted, rel=REL_TOL)


def test_effect_parameters_are_planted():
    t = simulate_tissue(seed=11, n_cells=60_000, cd8_exclusion=0.5, macrophage_border_enrichment=3.0)
    polys = _polys(t.adata)
    cd8 = (
        _density(t.adata, polys["tumour_nest"], "CD8 T")[0]
        / _density(t.adata, polys["fibrotic_stroma"], "CD8 T")[0]
    )
    mac = (
        _density(t.adata, polys["invasive_margin"], "Macrophage")[0]
        / _density(t.adata, polys["fibrotic_stroma"], "Macrophage")[0]
    )
    assert cd8 == pytest.approx(0.5, rel=REL_TOL)
    assert mac == pytest.approx(3.0, rel=REL_TOL)


def test_zone_densities_match_truth(tissue_large):
    """Every (neighbourhood, type) density with >= 100 expected cells is within 20 % of the truth."""
    a = tissue_large.adata
    polys = _polys(a)
    truth = a.uns["simulation"]["density_per_mm2"]
    checked = 0
    for zone in NEIGHBOURHOODS:
        area_mm2 = polys[zone].area * 1e-6
        for ct in CELL_TYPES:
            if truth.loc[zone, ct] * area_mm2 < 100:
                continue
            dens, _ = _density(a, polys[zone], ct)
            assert dens == pytest.approx(truth.loc[zone, ct], rel=REL_TOL), (zone, ct)
            checked += 1
    assert checked >= 15


def test_neighbour_counts_match_planted_composition(tissue_large):
    """Brute-force KD-tree counts: a cell deep inside neighbourhood z sees lambda_zt * pi r^2 type-t cells."""
    a = tissue_large.adata
    polys = _polys(a)
    truth = a.uns["simulation"]["density_per_mm2"]
    xy = a.obsm["spatial"]
    codes = a.obs["cell_type"].cat.codes.to_numpy()
    tree = cKDTree(xy)
    r = 40.0
    for zone in NEIGHBOURHOODS:
        core = polys[zone].buffer(-r)  # disks of radius r around these centres lie inside the zone
        centres = np.flatnonzero(shapely.contains_xy(core, xy[:, 0], xy[:, 1]))
        if len(centres) < 200:
            continue
        counts = np.zeros(len(CELL_TYPES))
        for i, nb in zip(centres, tree.query_ball_point(xy[centres], r), strict=True):
            nb = [j for j in nb if j != i]
            counts += np.bincount(codes[nb], minlength=len(CELL_TYPES))
        observed = counts / len(centres)
        expected = truth.loc[zone].to_numpy() * 1e-6 * np.pi * r**2
        # neighbour counts of nearby centres share cells: require >= 300 distinct cells of a type
        big = truth.loc[zone].to_numpy() * polys[zone].area * 1e-6 >= 300
        np.testing.assert_allclose(observed[big], expected[big], rtol=REL_TOL, err_msg=zone)


def test_null_mode_is_csr_with_random_labels():
    t = simulate_tissue(seed=5, n_cells=40_000, mode="null")
    a = t.adata
    assert a.uns["simulation"]["effects"] == {"cd8_exclusion": 1.0, "macrophage_border_enrichment": 1.0}
    tissue = shapely.from_wkt(a.uns["simulation"]["regions_wkt"]["tissue"])
    xy = a.obsm["spatial"]
    lam = (a.n_obs - 1) / tissue.area
    r = 30.0
    inner = shapely.contains_xy(tissue.buffer(-r), xy[:, 0], xy[:, 1])
    tree = cKDTree(xy)
    n_nb = np.array([len(x) - 1 for x in tree.query_ball_point(xy[inner], r)])
    assert n_nb.mean() == pytest.approx(lam * np.pi * r**2, rel=0.03)
    # nearest-neighbour distances of interior cells: G(d) = 1 - exp(-lambda pi d^2)
    far = shapely.contains_xy(tissue.buffer(-25.0), xy[:, 0], xy[:, 1])
    d, _ = tree.query(xy[far], k=2)
    for q in (5.0, 10.0, 15.0):
        assert (d[:, 1] <= q).mean() == pytest.approx(1 - np.exp(-lam * np.pi * q**2), abs=0.01)
    # labels independent of position: each neighbourhood holds the global type mix
    polys = _polys(a)
    global_p = a.obs["cell_type"].value_counts(normalize=True)
    for zone in ("tumour_nest", "fibrotic_stroma"):
        inside = shapely.contains_xy(polys[zone], xy[:, 0], xy[:, 1])
        local = a.obs["cell_type"][inside].value_counts(normalize=True)
        for ct in ("Tumour", "Fibroblast", "CD8 T", "Macrophage"):
            assert local[ct] == pytest.approx(global_p[ct], rel=0.15), (zone, ct)


def test_geometry_non_convex_with_holes_and_partitioned(tissue_large):
    polys = _polys(tissue_large.adata)
    tissue = polys["tissue"]
    assert tissue.area < 0.97 * tissue.convex_hull.area
    parts = getattr(tissue, "geoms", [tissue])
    assert sum(len(p.interiors) for p in parts) >= 1
    zone_area = sum(polys[z].area for z in NEIGHBOURHOODS)
    assert zone_area == pytest.approx(tissue.area, rel=1e-6)
    assert polys["tumour"].union(polys["stroma"]).area == pytest.approx(tissue.area, rel=1e-6)
    assert polys["tumour"].intersection(polys["stroma"]).area < 1e-6 * tissue.area
    assert 0.3 < polys["tumour"].area / tissue.area < 0.6
    assert tissue_large.adata.uns["simulation"]["n_aggregates"] >= 1
    # every cell lies in the tissue
    xy = tissue_large.adata.obsm["spatial"]
    assert shapely.contains_xy(tissue.buffer(1e-6), xy[:, 0], xy[:, 1]).all()


def test_region_mask_matches_polygons(tissue_small):
    mask = tissue_small.region_mask.values
    ps = tissue_small.region_mask.attrs["pixel_size_um"]
    polys = _polys(tissue_small.adata)
    cats = tissue_small.region_mask.attrs["categories"]
    for code, zone in enumerate(cats):
        if zone == "background" or polys[zone].area < 1e4:
            continue
        assert (mask == code).sum() * ps**2 == pytest.approx(polys[zone].area, rel=0.01), zone


def test_labels_at_cell_centres(tissue_small):
    """Pixel centres at index x pixel size, x = column: sampling the mask at each cell hits its label."""
    a, labels = tissue_small.adata, tissue_small.labels
    validate_labels(labels)
    lab = labels.values
    ps = labels.attrs["pixel_size_um"]
    col = np.rint(a.obsm["spatial"][:, 0] / ps).astype(int)
    row = np.rint(a.obsm["spatial"][:, 1] / ps).astype(int)
    hit = lab[row, col] == a.obs["label"].to_numpy()
    assert hit.mean() >= 0.99
    # the swapped order must fail: x and y are not interchangeable here
    in_bounds = (col < lab.shape[0]) & (row < lab.shape[1])
    assert (lab[col[in_bounds], row[in_bounds]] == a.obs["label"].to_numpy()[in_bounds]).mean() < 0.1


def test_image_quantifies_to_table(tissue_small):
    """Mean image intensity over each nucleus ~ the cell's table value + background."""
    img, labels, a = tissue_small.image, tissue_small.labels, tissue_small.adata
    validate_image(img)
    assert list(img.c.values) == list(MARKERS)
    crop = {"y": slice(1024, 2048), "x": slice(1024, 2048)}
    lab = labels.isel(**crop).values
    ids = np.setdiff1d(np.unique(lab), [0])
    # keep nuclei not cut by the crop border
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    ids = np.setdiff1d(ids, border)
    assert len(ids) > 50
    sim = a.uns["simulation"]
    row_of = pd.Series(np.arange(a.n_obs), index=a.obs["label"].to_numpy())
    expected = a.X[row_of.loc[ids].to_numpy()] + sim["background"]
    image = img.isel(**crop).values
    for c in range(image.shape[0]):
        got = np.asarray(ndimage.mean(image[c], lab, ids))
        assert np.corrcoef(got, expected[:, c])[0, 1] > 0.97 or expected[:, c].std() < 0.05
        assert np.median(np.abs(got - expected[:, c])) < 0.05


def test_same_seed_identical_other_seed_different():
    a = simulate_tissue(seed=21, n_cells=2_000)
    b = simulate_tissue(seed=21, n_cells=2_000)
    c = simulate_tissue(seed=22, n_cells=2_000)
    np.testing.assert_array_equal(a.adata.obsm["spatial"], b.adata.obsm["spatial"])
    np.testing.assert_array_equal(a.adata.X, b.adata.X)
    assert (a.adata.obs["cell_type"] == b.adata.obs["cell_type"]).all()
    assert not np.array_equal(a.adata.obsm["spatial"], c.adata.obsm["spatial"])
    block = {"y": slice(0, 512), "x": slice(0, 512)}
    np.testing.assert_array_equal(a.image.isel(**block).values, b.image.isel(**block).values)


def test_labels_do_not_depend_on_chunking():
    a = simulate_tissue(seed=4, n_cells=1_500, chunk_px=1024)
    b = simulate_tissue(seed=4, n_cells=1_500, chunk_px=300)
    np.testing.assert_array_equal(a.labels.values, b.labels.values)


def test_output_follows_data_model(tissue_small):
    a = tissue_small.adata
    validate_cells(a, cluster_key="cell_type", library_key="image_id")
    assert a.obsm["spatial"].dtype == np.float64
    assert list(a.obs["cell_type"].cat.categories) == list(CELL_TYPES)
    assert len(a.uns["cell_type_colors"]) == len(CELL_TYPES)
    cells = a.uns["simulation"]["cells"]
    assert cells.index.equals(a.obs_names)
    assert set(cells["neighbourhood"].cat.categories) == set(NEIGHBOURHOODS)
    regions = tissue_small.regions
    assert set(regions.loc[regions["kind"] == "compartment", "name"]) == {"tumour", "stroma"}


def test_h5ad_round_trip(tissue_small, tmp_path):
    import anndata as ad

    from spatialpath.io import write_h5ad
    from spatialpath.model import get_image_metadata

    path = write_h5ad(tissue_small.adata, tmp_path / "sim.h5ad")
    back = ad.read_h5ad(path)
    meta = get_image_metadata(back, "sim_0")
    assert meta.pixel_size_um == 0.5
    assert meta.technology == "simulated"
    pd.testing.assert_frame_equal(
        back.uns["simulation"]["density_per_mm2"], tissue_small.adata.uns["simulation"]["density_per_mm2"]
    )
    assert back.uns["simulation"]["cells"].index.equals(back.obs_names)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_cells": 0}, "n_cells must be a positive integer"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"mode": "clustered"}, "mode must be 'planted' or 'null'"),
        ({"tumour_fraction": 0.95}, "tumour_fraction must be in"),
        ({"margin_width_um": -5}, "margin_width_um must be a positive number"),
        ({"cd8_exclusion": -1.0}, "cd8_exclusion must be a finite ratio"),
        ({"density": density_table().iloc[:2]}, "density must be a DataFrame with index"),
        ({"pixel_size_um": 0}, "pixel_size_um must be a positive"),
        ({"chunk_px": 4}, "chunk_px must be an integer >= 16"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_tissue(**{"n_cells": 500, **kwargs})


def test_coarse_truth_mask_in_uns(tissue_large):
    """The small raster copy of the neighbourhoods agrees with the polygons (10 µm pixels)."""
    a = tissue_large.adata
    m = a.uns["simulation"]["region_mask"]
    assert m["categories"] == ["background", *NEIGHBOURHOODS]
    polys = _polys(a)
    for code, zone in enumerate(NEIGHBOURHOODS, start=1):
        if polys[zone].area > 5e5:
            assert (m["data"] == code).sum() * m["pixel_size_um"] ** 2 == pytest.approx(
                polys[zone].area, rel=0.05
            )


def test_repr_is_informative(tissue_small):
    text = repr(tissue_small)
    assert "3,000 cells × 12 markers" in text
    assert "cd8_exclusion = 0.2" in text
    html = tissue_small._repr_html_()
    assert html.startswith("<div><b>SimulatedTissue</b>")
    assert "&#x27;spatial&#x27;" in html


def test_zero_denominator_effect_is_nan_not_a_crash():
    dens = density_table()
    dens.loc[:, "CD8 T"] = 0.0
    t = simulate_tissue(n_cells=500, density=dens)
    assert np.isnan(t.adata.uns["simulation"]["effects"]["cd8_exclusion"])
    assert (t.adata.obs["cell_type"] != "CD8 T").all()
