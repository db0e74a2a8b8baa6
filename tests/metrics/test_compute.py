"""compute(): the long table's schema, several images, absent compartments, every error path."""

from __future__ import annotations

import json

import anndata as ad
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

import spatialpath.metrics as spm
from spatialpath.model import DataModelError

COLUMNS = ["image_id", "compartment", "metric", "cell_type", "cell_type_b", "value", "unit",
           "n_cells_a", "n_cells_b", "area_mm2", "status", "parameters"]  # fmt: skip


@pytest.fixture(scope="module")
def two_images():
    """Image 'i1' has tumour + stroma; 'i2' has only a tissue polygon; type 'B' has no cell in i2."""
    rng = np.random.default_rng(0)
    xy1 = rng.uniform(0, 400, size=(300, 2))
    xy2 = rng.uniform(0, 400, size=(200, 2))
    t1 = rng.choice(["T", "CD8 T", "B"], size=300)
    t2 = rng.choice(["T", "CD8 T"], size=200)
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(np.r_[t1, t2], categories=["T", "CD8 T", "B", "Never"]),
            "image_id": pd.Categorical(["i1"] * 300 + ["i2"] * 200),
        },
        index=[f"c{i}" for i in range(500)],
    )
    a = ad.AnnData(obs=obs)
    a.obsm["spatial"] = np.r_[xy1, xy2]
    regions = gpd.GeoDataFrame(
        {"image_id": ["i1", "i1", "i1", "i2"], "compartment": ["tissue", "tumour", "stroma", "tissue"]},
        geometry=[shapely.box(0, 0, 400, 400), shapely.box(0, 0, 200, 400), shapely.box(200, 0, 400, 400),
                  shapely.box(0, 0, 400, 400)],
    )  # fmt: skip
    return a, regions


def test_schema_and_order(two_images):
    a, regions = two_images
    t = spm.compute(a, regions)
    assert list(t.columns) == COLUMNS == list(spm.COLUMNS)
    assert list(pd.unique(t["image_id"])) == ["i1", "i2"]
    assert list(pd.unique(t["compartment"])) == ["tissue", "tumour", "stroma"]
    assert list(pd.unique(t["metric"])) == spm.default_metrics()
    assert set(t["status"]) <= set(spm.STATUSES)
    assert t["value"].dtype == float
    assert str(t["n_cells_a"].dtype) == "Int64"
    assert (t["value"].isna() == (t["status"] != "ok")).all()
    for m, p in t.groupby("metric")["parameters"].first().items():
        assert json.loads(p) == spm.get_metric(m).defaults
    # every category in every image and compartment, absent types as structural zeros
    c = t.query("metric == 'count'")
    assert len(c) == 2 * 3 * 4
    assert c.query("image_id == 'i2' and compartment == 'tissue' and cell_type == 'B'")["value"].item() == 0
    assert c.query("cell_type == 'Never' and status == 'ok'")["value"].eq(0).all()


def test_absent_compartment_rows(two_images):
    a, regions = two_images
    t = spm.compute(a, regions, ["density", "nn_distance_mean", "density_ratio", "neighbourhood_entropy"])
    absent = t.query("image_id == 'i2' and compartment == 'tumour'")
    assert len(absent)
    assert (absent["status"] == "compartment_absent").all()
    assert absent["value"].isna().all()
    assert absent["area_mm2"].isna().all()
    ratio = t.query("image_id == 'i2' and metric == 'density_ratio'")
    assert (ratio["status"] == "compartment_absent").all()
    assert set(ratio["compartment"]) == {"tissue"}
    ok = t.query("image_id == 'i1' and metric == 'density' and compartment == 'tumour'")
    assert np.allclose(ok["area_mm2"], 0.08)
    assert (ok["status"] == "ok").all()


def test_params_reach_the_metric_and_the_json(two_images):
    a, regions = two_images
    t = spm.compute(
        a, regions, ["mixing_score"], params={"mixing_score": {"radius_um": 35.0, "min_cells": 2}}
    )
    assert (t["parameters"] == '{"min_cells":2,"radius_um":35.0}').all()
    assert (t["status"] == "ok").any()


def test_missing_tissue_row_is_the_union_and_single_image(two_images):
    a, _ = two_images
    one = a[a.obs["image_id"] == "i1"].copy()
    boxes = [shapely.box(0, 0, 200, 400), shapely.box(200, 0, 400, 400)]
    regions = gpd.GeoDataFrame({"compartment": ["tumour", "stroma"]}, geometry=boxes)
    t = spm.compute(one, regions, ["count"], library_key=None)
    assert set(t["image_id"]) == {"all"}
    tissue = t.query("compartment == 'tissue'")
    assert tissue["value"].sum() == one.n_obs
    assert tissue["area_mm2"].iloc[0] == pytest.approx(0.16)


def test_cells_outside_every_region_are_left_out(two_images):
    a, regions = two_images
    small = regions.assign(geometry=[shapely.box(0, 0, 100, 100)] * 4)
    t = spm.compute(a, small, ["count"])
    n = t.query("image_id == 'i1' and compartment == 'tissue'")["value"].sum()
    xy = a.obsm["spatial"][:300]
    assert n == ((xy <= 100).all(axis=1)).sum()


# --- error paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metrics": "density"}, r"must be a list of names, got the string 'density'; use \['density'\]"),
        ({"metrics": []}, r"metrics is empty"),
        ({"metrics": ["densty"]}, r"unknown metric 'densty'; registered metrics"),
        ({"metrics": ["count"], "params": {"density": {}}},
         r"params given for metric\(s\) \['density'\] that are not computed"),
        ({"metrics": ["density"], "params": {"density": 3}}, r"params\['density'\] must be a dict"),
        ({"metrics": ["mixing_score"], "params": {"mixing_score": {"r": 1}}},
         r"unknown parameter\(s\) \['r'\]"),
        ({"metrics": ["mixing_score"], "params": {"mixing_score": {"radius_um": 0}}},
         r"expected a finite number > 0"),
        ({"cluster_key": "celltype"}, r"adata.obs\['celltype'\] is missing"),
        ({"library_key": "sample"}, r"adata.obs\['sample'\] is missing: it names each cell's image"),
        ({"metrics": ["cn_frequency"]},
         r"adata.obs\['cn'\] \(CN labels\) is missing: run spatialpath.gr.cellular_neighborhoods"),
    ],
)  # fmt: skip
def test_refusals(two_images, kwargs, match):
    a, regions = two_images
    with pytest.raises(DataModelError, match=match):
        spm.compute(a, regions, **kwargs)


def test_phenotype_type_parameter_is_checked_against_categories(two_images):
    a, regions = two_images
    with pytest.raises(
        DataModelError, match=r"params\['immune_phenotype'\]\['immune_type'\] = 'CD8' is not a category"
    ):
        spm.compute(a, regions, ["immune_phenotype"], params={"immune_phenotype": {"immune_type": "CD8"}})
    t = spm.compute(a, regions, ["immune_phenotype"])  # 'CD8 T' is a category here
    assert t["cell_type"].tolist() == ["CD8 T", "CD8 T"]


def test_refusals_of_inputs(two_images):
    a, regions = two_images
    with pytest.raises(DataModelError, match="regions lacks column"):
        spm.compute(a, regions.drop(columns="compartment"))
    with pytest.raises(DataModelError, match=r"regions must be a geopandas\.GeoDataFrame"):
        spm.compute(a, pd.DataFrame({"compartment": ["tissue"]}))
    with pytest.raises(
        DataModelError, match=r"regions has no 'image_id' column but the cells come from 2 images"
    ):
        spm.compute(a, regions.drop(columns="image_id"))
    b = a.copy()
    del b.obsm["spatial"]
    with pytest.raises(DataModelError, match=r"obsm\['spatial'\] is missing"):
        spm.compute(b, regions)
    b = a.copy()
    b.obsm["spatial"] = b.obsm["spatial"].copy()
    b.obsm["spatial"][0, 0] = np.nan
    with pytest.raises(DataModelError, match="finite positions in µm"):
        spm.compute(b, regions)
    b = a.copy()
    b.obs["cell_type"] = b.obs["cell_type"].astype(str)
    with pytest.raises(DataModelError, match="must be categorical"):
        spm.compute(b, regions)
    b = a.copy()
    b.obs["cn"] = "CN1"
    with pytest.raises(DataModelError, match=r"adata.obs\['cn'\] must be categorical"):
        spm.compute(b, regions, ["cn_frequency"])


def test_plain_data_refusals():
    box = {"tissue": shapely.box(0, 0, 10, 10)}
    with pytest.raises(DataModelError, match=r"xy must be an \(n, 2\) array of finite µm positions"):
        spm.ImageData.from_arrays([1, 2, 3], ["A"] * 3, box)
    with pytest.raises(DataModelError, match="cell_types has 1 entries for 2 positions"):
        spm.ImageData.from_arrays([[1, 1], [2, 2]], ["A"], box)
    with pytest.raises(DataModelError, match=r"cell types \['C'\] are not in categories"):
        spm.ImageData.from_arrays([[1, 1]], ["C"], box, categories=["A"])
    with pytest.raises(DataModelError, match="regions is empty"):
        spm.ImageData.from_arrays([[1, 1]], ["A"], {})
    img = spm.ImageData.from_arrays([[1, 1]], ["A"], box)
    with pytest.raises(DataModelError, match=r"cn_frequency needs CN labels 'cn'"):
        spm.cn_frequency(img)
    with pytest.raises(DataModelError, match=r"parameter immune_type='CD8 T' is not a cell type"):
        spm.immune_phenotype(img)


def test_cross_auc_error_names_the_metric():
    rng = np.random.default_rng(0)
    img = spm.ImageData.from_arrays(
        rng.uniform(0, 60, (60, 2)), ["A", "B"] * 30, {"tissue": shapely.box(0, 0, 60, 60)}
    )
    with pytest.raises(
        DataModelError, match=r"metric 'g_cross_auc', image 'image': correction 'bogus' is not"
    ):
        spm.g_cross_auc(img, correction="bogus")


def test_regions_in_pixels_over_cells_in_um_are_refused():
    from spatialpath.datasets import simulate_cohort, simulation_regions

    adata = simulate_cohort(n_patients=1, n_cells=1500, seed=2, progress=False)
    regions = simulation_regions(adata)
    assert regions.is_valid.all()  # the simulator writes repaired, snapped WKT
    spm.compute(adata, regions, metrics=["density"])  # µm over µm: fine
    pixels = regions.copy()
    pixels["geometry"] = pixels.geometry.scale(1 / 0.377, 1 / 0.377, origin=(0, 0))  # a QuPath export in px
    with pytest.raises(DataModelError, match=r"probably in pixels.*pixel_size_um"):
        spm.compute(adata, pixels, metrics=["density"])


def _cells(xy, types, image="A", categories=None):
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(types, categories=categories),
            "image_id": pd.Categorical([image] * len(xy)),
        },
        index=[f"c{i}" for i in range(len(xy))],
    )
    a = ad.AnnData(obs=obs)
    a.obsm["spatial"] = np.asarray(xy, float)
    return a


def test_implicit_tissue_leaves_out_derived_margin_compartments():
    """Tumour + stroma annotations (no tissue row) plus margin bands: tissue = tumour ∪ stroma only."""
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 1000, size=(2000, 2))
    types = rng.choice(["CD8", "Tum"], size=2000)
    tumour, stroma = shapely.box(200, 200, 600, 800), shapely.box(600, 200, 900, 800)
    # margin bands drawn here with shapely (independent of spatialpath.regions): the outer band
    # reaches beyond the annotated tissue, as margin_bands' does without a tissue row
    outer = tumour.buffer(100).difference(tumour)
    inner = tumour.difference(tumour.buffer(-100))
    core = tumour.buffer(-100)
    names = ["tumour", "stroma", "margin_outer", "margin_inner", "margin", "tumour_core"]
    geoms = [tumour, stroma, outer, inner, outer.union(inner), core]
    regions = gpd.GeoDataFrame({"image_id": "A", "compartment": names}, geometry=geoms)
    t = spm.compute(_cells(xy, types), regions, ["count", "density"])
    tissue = shapely.union_all([tumour, stroma])
    area = shapely.area(tissue) / 1e6
    assert area == pytest.approx(0.42)  # not the union with the outer band (0.591 mm²)
    inside = shapely.contains_xy(tissue, xy[:, 0], xy[:, 1])
    for ct in ("CD8", "Tum"):
        n = int((inside & (types == ct)).sum())
        d = t[(t.compartment == "tissue") & (t.metric == "density") & (t.cell_type == ct)].iloc[0]
        c = t[(t.compartment == "tissue") & (t.metric == "count") & (t.cell_type == ct)].iloc[0]
        assert c["value"] == n
        assert d["area_mm2"] == pytest.approx(area, rel=1e-12)
        assert d["value"] == pytest.approx(n / area, rel=1e-12)
        assert d["status"] == "ok"
    assert {"margin_outer", "margin", "margin_inner", "tumour_core"} == spm.DERIVED_COMPARTMENTS
    # an image with only derived compartments has no implicit tissue: absent, not the bands' union
    only = spm.compute(_cells(xy, types), regions[regions.compartment == "margin"], ["density"])
    tis = only[only.compartment == "tissue"]
    assert (tis["status"] == "compartment_absent").all()
    assert tis["area_mm2"].isna().all()
    # ImageData.from_arrays follows the same rule
    img = spm.ImageData.from_arrays(xy, types, dict(zip(names, geoms, strict=True)))
    assert img.area_mm2("tissue") == pytest.approx(area, rel=1e-12)
    assert img.n_cells("tissue") == int(inside.sum())
