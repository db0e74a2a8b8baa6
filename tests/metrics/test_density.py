"""Counts, proportions, densities, ratio and fraction in tumour vs shapely counts and planted truth."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

import spatialpath.metrics as spm


@pytest.fixture(scope="module")
def table(sim20k, make_regions):
    a = sim20k.adata
    return spm.compute(a, make_regions(a), ["count", "proportion", "density", "density_ratio",
                                           "fraction_in_compartment"])  # fmt: skip


def test_densities_equal_shapely_counts_over_polygon_areas(sim20k, table):
    a = sim20k.adata
    xy = a.obsm["spatial"]
    wkt = a.uns["simulation"]["regions_wkt"]
    for comp in ("tissue", "tumour", "stroma"):
        poly = shapely.from_wkt(wkt[comp])
        inside = shapely.contains_xy(poly, xy[:, 0], xy[:, 1]) | shapely.intersects_xy(
            poly.boundary, xy[:, 0], xy[:, 1]
        )
        ref = pd.Series(a.obs["cell_type"].to_numpy()[inside]).value_counts()
        got = table.query("metric == 'density' and compartment == @comp").set_index("cell_type")
        for t in a.obs["cell_type"].cat.categories:
            n = int(ref.get(t, 0))
            assert got.loc[t, "n_cells_a"] == n
            assert got.loc[t, "value"] == n / got.loc[t, "area_mm2"]
            assert got.loc[t, "value"] == pytest.approx(n / (poly.area / 1e6), rel=1e-9)
            assert got.loc[t, "area_mm2"] == pytest.approx(poly.area / 1e6, rel=1e-9)


def test_planted_densities_are_recovered_within_sampling_error(sim20k, table):
    """uns['simulation']['density_per_mm2'] is the expected density per planted zone x type (given
    n_cells); a compartment's expectation is the zone-area-weighted mean over the zones it covers."""
    a = sim20k.adata
    sim = a.uns["simulation"]
    dens = sim["density_per_mm2"]
    wkt = sim["regions_wkt"]
    zones = {z: shapely.from_wkt(wkt[z]) for z in dens.index}
    for comp in ("tissue", "tumour", "stroma"):
        poly = shapely.from_wkt(wkt[comp])
        w = np.array([zones[z].intersection(poly).area for z in dens.index]) / 1e6
        expected = (w @ dens.to_numpy()) / (poly.area / 1e6)
        got = table.query("metric == 'density' and compartment == @comp").set_index("cell_type")["value"]
        sd = np.sqrt(np.maximum(expected * poly.area / 1e6, 1)) / (poly.area / 1e6)  # Poisson sd of a density
        z = (got.loc[list(dens.columns)].to_numpy() - expected) / sd
        assert np.abs(z).max() < 4.5, (comp, dict(zip(dens.columns, np.round(z, 2), strict=True)))


def test_structural_zeros_and_undefined_values(sim20k, table):
    # Tumour cells are absent from the stroma: count, density, proportion 0 and ok
    rows = table.query("compartment == 'stroma' and cell_type == 'Tumour'")
    assert set(rows["metric"]) == {"count", "proportion", "density"}
    assert (rows["value"] == 0).all()
    assert (rows["status"] == "ok").all()
    # ... so the tumour/stroma ratio of Tumour is undefined: NaN with zero_denominator
    r = table.query("metric == 'density_ratio' and cell_type == 'Tumour'").iloc[0]
    assert np.isnan(r["value"])
    assert r["status"] == "zero_denominator"
    assert r["compartment"] == "tissue"
    # NaN only with a non-ok status, and never a non-ok status with a value
    assert (table["value"].isna() == (table["status"] != "ok")).all()
    prop = table.query("metric == 'proportion'").groupby("compartment")["value"].sum()
    assert np.allclose(prop, 1.0)


def test_ratio_and_fraction_in_tumour_by_hand(sim20k, table):
    d = table.query("metric == 'density'").pivot(index="cell_type", columns="compartment", values="value")
    ratio = table.query("metric == 'density_ratio'").set_index("cell_type")["value"]
    assert ratio["CD8 T"] == pytest.approx(d.loc["CD8 T", "tumour"] / d.loc["CD8 T", "stroma"])
    n = table.query("metric == 'count'").pivot(index="cell_type", columns="compartment", values="value")
    frac = table.query("metric == 'fraction_in_compartment'").set_index("cell_type")["value"]
    assert frac["CD8 T"] == pytest.approx(n.loc["CD8 T", "tumour"] / n.loc["CD8 T", "tissue"])
    assert frac["Tumour"] == pytest.approx(1.0, abs=0.01)


def test_absent_type_category_and_absent_compartment():
    square = shapely.box(0, 0, 1000, 1000)
    img = spm.ImageData.from_arrays(
        [[10, 10], [20, 20]], ["A", "A"], {"tissue": square}, categories=["A", "B"]
    )
    by_type = {r["cell_type"]: r for r in spm.density(img)}
    assert by_type["B"]["value"] == 0
    assert by_type["B"]["status"] == "ok"
    r = spm.density(img, "tumour")[0]  # the image has no tumour region
    assert np.isnan(r["value"])
    assert r["status"] == "compartment_absent"
    r = spm.density_ratio(img)[0]
    assert r["status"] == "compartment_absent"


def test_empty_compartment_gives_zero_counts_and_undefined_proportions():
    regions = {"tissue": shapely.box(0, 0, 100, 100), "tumour": shapely.box(50, 50, 100, 100)}
    img = spm.ImageData.from_arrays([[10, 10]], ["A"], regions)
    assert spm.cell_count(img, "tumour")[0]["value"] == 0
    assert spm.density(img, "tumour")[0]["value"] == 0
    p = spm.proportion(img, "tumour")[0]
    assert np.isnan(p["value"])
    assert p["status"] == "zero_denominator"
    f = spm.fraction_in_compartment(img)[0]
    assert f["value"] == 0
    assert f["status"] == "ok"


def test_overlapping_compartments_count_a_cell_in_both():
    regions = gpd.GeoDataFrame(
        {"image_id": "i", "compartment": ["tumour", "lymphoid"]},
        geometry=[shapely.box(0, 0, 100, 100), shapely.box(80, 0, 200, 100)],
    )
    import anndata as ad

    a = ad.AnnData(obs=pd.DataFrame({"cell_type": pd.Categorical(["A", "A", "B"]), "image_id": "i"},
                                    index=["0", "1", "2"]))  # fmt: skip
    a.obsm["spatial"] = np.array([[10.0, 10], [90, 10], [150, 10]])
    t = spm.compute(a, regions, ["count"])
    n = t.set_index(["compartment", "cell_type"])["value"]
    assert n[("tissue", "A")] == 2
    assert n[("tumour", "A")] == 2
    assert n[("lymphoid", "A")] == 1
    assert n[("lymphoid", "B")] == 1
    area = t.groupby("compartment")["area_mm2"].first()
    assert area["tissue"] == pytest.approx(0.02)  # the union, not the sum (0.022)
