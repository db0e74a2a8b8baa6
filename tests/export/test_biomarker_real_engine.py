"""biomarker_table with the REAL spatialpath.metrics.compute (no fake engine), values checked with shapely.

Regressions: implicit tissue and QC of regions without a ``tissue`` row, categories differing
across inputs, and ``regions=None`` (tissue from the cells).
"""

from __future__ import annotations

import json

import anndata as ad
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from spatialpath.export import biomarker_table, write_tables
from spatialpath.regions import tissue_from_cells

TUMOUR, STROMA = shapely.box(200, 200, 600, 800), shapely.box(600, 200, 900, 800)


def _cells(images, n=600, types=("CD8", "Tum", "Mac"), seed=0, sample="S1"):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 1000, size=(n * len(images), 2))
    obs = pd.DataFrame(
        {
            "image_id": pd.Categorical(np.repeat(images, n)),
            "cell_type": pd.Categorical(rng.choice(types, n * len(images)), categories=list(types)),
            "sample_id": sample,
            "patient_id": "P1",
        },
        index=[f"{images[0]}_c{i}" for i in range(n * len(images))],
    )
    a = ad.AnnData(obs=obs)
    a.obsm["spatial"] = xy
    return a


def _inside(adata, image, geom, cell_type):
    """Cells of the type inside the polygon, counted with shapely alone."""
    sel = (adata.obs["image_id"].astype(str) == image).to_numpy()
    sel &= (adata.obs["cell_type"].astype(str) == cell_type).to_numpy()
    xy = np.asarray(adata.obsm["spatial"])[sel]
    return int(shapely.contains_xy(geom, xy[:, 0], xy[:, 1]).sum())


def test_regions_without_tissue_row_qc_and_densities_agree():
    """QuPath/inForm case: tumour + stroma (+ an outer margin band), no tissue row."""
    a = _cells(["A", "B"])
    outer = TUMOUR.buffer(100).difference(TUMOUR)  # derived band, beyond the annotated tissue
    rows = [(i, c, g) for i in ("A", "B") for c, g in (("tumour", TUMOUR), ("stroma", STROMA))]
    rows.append(("A", "margin_outer", outer))
    regions = gpd.GeoDataFrame(rows, columns=["image_id", "compartment", "geometry"], geometry="geometry")
    long, wide = biomarker_table(a, regions, metrics=["count", "density"], min_cells=10, min_tissue_mm2=0.1)
    tissue = shapely.union_all([TUMOUR, STROMA])
    area = shapely.area(tissue) / 1e6  # 0.42 mm²
    w = wide.set_index("image_id")
    for image in ("A", "B"):
        assert w.loc[image, "tissue_area_mm2"] == pytest.approx(area, rel=1e-12)
        assert w.loc[image, "tissue_area_source"] == "regions"
        assert w.loc[image, "tumour_area_mm2"] == pytest.approx(shapely.area(TUMOUR) / 1e6, rel=1e-12)
        assert bool(w.loc[image, "evaluable"])
        assert pd.isna(w.loc[image, "qc_note"])
        for ct in ("CD8", "Tum", "Mac"):
            n = _inside(a, image, tissue, ct)
            assert w.loc[image, f"count__tissue__{ct}"] == n
            assert w.loc[image, f"density__tissue__{ct}"] == pytest.approx(n / area, rel=1e-12)
    # QC's tissue area is the one the metrics divided by
    tis = long[(long.compartment == "tissue") & (long.metric == "density")]
    np.testing.assert_array_equal(tis["area_mm2"].to_numpy(), tis["tissue_area_mm2"].to_numpy())
    # sample level: both images evaluable, density pooled as Σ cells / Σ area
    _, sample = biomarker_table(a, regions, metrics=["count", "density"], aggregate="sample", min_cells=10)
    s = sample.iloc[0]
    assert s["n_images_evaluable"] == 2
    assert bool(s["evaluable"])
    n_cd8 = _inside(a, "A", tissue, "CD8") + _inside(a, "B", tissue, "CD8")
    assert s["density__tissue__CD8"] == pytest.approx(n_cd8 / (2 * area), rel=1e-12)
    assert s["status__density__tissue__CD8"] == "ok"
    assert s["tissue_area_mm2"] == pytest.approx(2 * area, rel=1e-12)


@pytest.mark.parametrize("form", ["list", "mapping"])
def test_inputs_with_different_categories_keep_structural_zeros(form):
    a1 = _cells(["A"], n=300, types=("CD8", "Tum"), seed=1)
    a2 = _cells(["B"], n=300, types=("CD8", "Tum", "Treg"), seed=2)
    a2.obs_names = [f"B_c{i}" for i in range(a2.n_obs)]
    box = shapely.box(0, 0, 1000, 1000)
    regions = gpd.GeoDataFrame(
        {"image_id": ["A", "B"], "compartment": "tissue"}, geometry=[box, box], crs=None
    )
    samples = [a1, a2] if form == "list" else {"A": a1, "B": a2}
    long, wide = biomarker_table(samples, regions, metrics=["count", "density"], min_cells=10)
    w = wide.set_index("image_id")
    assert w.loc["A", "density__tissue__Treg"] == 0.0  # structural zero, not NaN
    assert w.loc["A", "status__density__tissue__Treg"] == "ok"
    assert w.loc["A", "count__tissue__Treg"] == 0.0
    for image, adata in (("A", a1), ("B", a2)):
        for ct in ("CD8", "Tum", "Treg"):
            n = _inside(adata, image, box, ct)
            assert w.loc[image, f"density__tissue__{ct}"] == pytest.approx(n / 1.0, rel=1e-12)
    # union of categories in first-seen order, in every image
    for image in ("A", "B"):
        rows = long[(long.image_id == image) & (long.metric == "count")]
        assert rows["cell_type"].tolist() == ["CD8", "Tum", "Treg"]
    assert list(a1.obs["cell_type"].cat.categories) == ["CD8", "Tum"]  # input untouched


def test_regions_none_derives_tissue_from_cells(tmp_path):
    a = _cells(["A", "B"], n=800)
    long, wide = biomarker_table(a, None, metrics=["count", "density"], min_cells=10)
    ref = tissue_from_cells(a)  # the documented default: tissue from the cells, default parameters
    params = ref.attrs["spatialpath"]["tissue_from_cells"]
    assert long.attrs["biomarker_table"]["regions"] == {"source": "tissue_from_cells", **params}
    assert set(long["compartment"]) == {"tissue"}
    w = wide.set_index("image_id")
    for image in ("A", "B"):
        geom = shapely.union_all(ref[ref["image_id"] == image].geometry.to_numpy())
        area = shapely.area(geom) / 1e6
        assert 0.9 < area <= 1.1
        assert w.loc[image, "tissue_area_mm2"] == pytest.approx(area, rel=1e-12)
        assert w.loc[image, "tissue_area_source"] == "tissue_from_cells"
        assert np.isnan(w.loc[image, "tumour_area_mm2"])  # never annotated: unknown, not 0
        assert bool(w.loc[image, "evaluable"])
        for ct in ("CD8", "Tum", "Mac"):
            n = _inside(a, image, geom, ct)
            assert w.loc[image, f"count__tissue__{ct}"] == n
            assert w.loc[image, f"density__tissue__{ct}"] == pytest.approx(n / area, rel=1e-12)
    paths = write_tables(long, wide, tmp_path, formats=["csv"])
    manifest = json.loads(paths["manifest"].read_text())
    assert manifest["parameters"]["biomarker_table"]["regions"]["source"] == "tissue_from_cells"


# ---------------------------------------------------------------- review B6, B7, B9, CN labels


def test_immune_phenotype_codes_in_dictionary(tmp_path):
    """B6: the codes 0/1/2 are explained (registry value_labels) in the CSV and Excel dictionary."""
    pytest.importorskip("openpyxl")
    a = _cells(["A"], types=("CD8 T", "Tum"))
    regions = gpd.GeoDataFrame(
        [("A", "tumour", TUMOUR), ("A", "stroma", STROMA)],
        columns=["image_id", "compartment", "geometry"],
        geometry="geometry",
    )
    long, wide = biomarker_table(a, regions, metrics=["immune_phenotype", "density"], min_cells=10)
    paths = write_tables(long, wide, tmp_path / "o", formats=["csv", "xlsx"])
    codes = '{"0": "desert", "1": "excluded", "2": "inflamed"}'
    for dd in (
        pd.read_csv(paths["dictionary_csv"], dtype=str, keep_default_na=False),
        pd.read_excel(paths["xlsx"], sheet_name="dictionary", dtype=str).fillna(""),
    ):
        rows = dd[dd["metric"] == "immune_phenotype"]
        coded = rows[~rows["column"].str.startswith("status__")]
        assert sorted(coded["table"]) == ["metric", "wide"]
        assert (coded["levels"] == codes).all()
        assert coded["derivation"].str.contains("Codes: 0 = desert, 1 = excluded, 2 = inflamed.").all()
        density = dd[(dd["metric"] == "density") & (dd["table"] == "metric")]
        assert density["levels"].tolist() == [""]  # uncoded metrics get no codes
        value = dd[(dd["table"] == "long") & (dd["column"] == "value")]
        assert "immune_phenotype (Codes: 0 = desert" in value["derivation"].iloc[0]
    call = wide.loc[0, "immune_phenotype__tissue__CD8_T"]
    assert call in (0.0, 1.0, 2.0)


def test_sample_fraction_counts_cells_of_image_without_tumour():
    """B7: an annotated image without tumour has 0 of its cells in tumour (denominator kept)."""
    a = _cells(["A", "B"], n=400, seed=3)  # one sample S1
    tissue = shapely.box(0, 0, 1000, 1000)
    regions = gpd.GeoDataFrame(
        [("A", "tissue", tissue), ("A", "tumour", TUMOUR), ("B", "tissue", tissue)],
        columns=["image_id", "compartment", "geometry"],
        geometry="geometry",
    )
    kw = {"metrics": ["count", "fraction_in_compartment"], "min_cells": 10}
    long, wide = biomarker_table(a, regions, aggregate="sample", **kw)
    in_a, all_a, all_b = (
        _inside(a, "A", TUMOUR, "CD8"),
        _inside(a, "A", tissue, "CD8"),
        _inside(a, "B", tissue, "CD8"),
    )
    assert all_b > 0
    w = wide.set_index("sample_id")
    assert w.loc["S1", "fraction_in_compartment__tissue__CD8"] == pytest.approx(in_a / (all_a + all_b))
    assert w.loc["S1", "status__fraction_in_compartment__tissue__CD8"] == "ok"
    assert w.loc["S1", "tumour_area_mm2"] == pytest.approx(0.24)  # A's 0.24 + B's structural 0
    row = long[
        (long["image_id"] == "B")
        & (long["metric"] == "fraction_in_compartment")
        & (long["cell_type"] == "CD8")
    ]
    assert row[["value", "n_cells_a", "n_cells_b", "status"]].iloc[0].tolist() == [0.0, 0, all_b, "ok"]
    # per-image wide agrees; an image with no region at all stays compartment_absent
    _, per_image = biomarker_table(a, regions[regions["image_id"] == "A"], **kw)
    st = per_image.set_index("image_id")["status__fraction_in_compartment__tissue__CD8"]
    assert st.to_dict() == {"A": "ok", "B": "compartment_absent"}


def test_region_provenance_in_manifest(tmp_path):
    """B9: regions.attrs['spatialpath'] reaches the manifest parameters, de-identified on request."""
    from spatialpath.export import Deidentify
    from spatialpath.regions import make_regions

    a = _cells(["P7_A"], n=300)
    meta = {
        "source": "qupath",
        "pixel_size_um": 0.5,
        "margin_bands": {"widths_um": [50, 100]},
        "note": "P7_A",
    }
    regions = make_regions(["tumour", "stroma"], [TUMOUR, STROMA], image_id="P7_A", meta=meta)
    long, wide = biomarker_table(a, regions, metrics=["count"], min_cells=10)
    assert long.attrs["biomarker_table"]["regions"] == {"source": "polygons", "provenance": meta}
    paths = write_tables(long, wide, tmp_path / "o", formats=["csv"])
    assert (
        json.loads(paths["manifest"].read_text())["parameters"]["biomarker_table"]["regions"]["provenance"]
        == meta
    )
    deid = Deidentify(key="k" * 20)
    paths = write_tables(long, wide, tmp_path / "d", formats=["csv"], deidentify=deid)
    got = json.loads(paths["manifest"].read_text())["parameters"]["biomarker_table"]["regions"]
    assert got["provenance"] == {**meta, "note": deid.pseudonym("P7_A")}
    # a mapping image_id -> GeoDataFrame: provenance per image
    long2, _ = biomarker_table({"P7_A": a}, {"P7_A": regions}, metrics=["count"], min_cells=10)
    assert long2.attrs["biomarker_table"]["regions"] == {"source": "polygons", "per_image": {"P7_A": meta}}


def test_cn_categories_unified_across_inputs():
    """CN labels with different categories per input: their union, a CN absent from an input is 0."""
    a1, a2 = _cells(["A"], n=300, seed=1), _cells(["B"], n=300, seed=2)
    a1.obs["cn"] = pd.Categorical(np.where(np.arange(300) % 2, "CN1", "CN2"))
    a2.obs["cn"] = pd.Categorical(np.where(np.arange(300) % 3, "CN3", "CN1"))
    tissue = shapely.box(0, 0, 1000, 1000)
    regions = gpd.GeoDataFrame(
        [("A", "tissue", tissue), ("B", "tissue", tissue)],
        columns=["image_id", "compartment", "geometry"],
        geometry="geometry",
    )
    _, wide = biomarker_table([a1, a2], regions, metrics=["cn_frequency"], min_cells=10)
    w = wide.set_index("image_id")
    assert w.loc[
        "A", ["cn_frequency__tissue__CN1", "cn_frequency__tissue__CN2", "cn_frequency__tissue__CN3"]
    ].tolist() == [0.5, 0.5, 0.0]
    assert w.loc["B", "cn_frequency__tissue__CN2"] == 0.0
    assert w.loc["B", "cn_frequency__tissue__CN1"] == pytest.approx(100 / 300)
    assert w.loc["B", "status__cn_frequency__tissue__CN2"] == "ok"
    assert list(a1.obs["cn"].cat.categories) == ["CN1", "CN2"]  # caller's data untouched


def test_metric_parameters_reach_the_engine():
    """params change the value: the fraction of CD8 cells with a Tum cell within r, against a brute force
    count (tissue = the whole 1000 µm square; cells nearer its edge than r and without a partner are
    censored, as the metric's border rule says)."""
    from scipy.spatial.distance import cdist

    a = _cells(["im1"], n=400, seed=3)
    tissue = gpd.GeoDataFrame(
        {"image_id": ["im1"], "compartment": ["tissue"]}, geometry=[shapely.box(0, 0, 1000, 1000)]
    )
    xy = np.asarray(a.obsm["spatial"])
    kinds = a.obs["cell_type"].astype(str).to_numpy()
    d = cdist(xy[kinds == "CD8"], xy[kinds == "Tum"]).min(axis=1)
    edge = np.minimum.reduce([xy[:, 0], xy[:, 1], 1000 - xy[:, 0], 1000 - xy[:, 1]])[kinds == "CD8"]
    for r in (20.0, 60.0):
        long, _ = biomarker_table(
            a, tissue, metrics=["fraction_within_radius"], params={"fraction_within_radius": {"radius_um": r}}
        )
        row = long[(long["cell_type"] == "CD8") & (long["cell_type_b"] == "Tum")]
        expected = (d <= r).sum() / ((d <= r) | (edge >= r)).sum()
        assert row["value"].iloc[0] == pytest.approx(expected, rel=1e-12)
