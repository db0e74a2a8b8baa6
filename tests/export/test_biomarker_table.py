"""biomarker_table: long schema, QC, metadata, input forms, lossless wide pivot, collisions, pooling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spatialpath.export import (
    biomarker_table,
    long_from_wide,
    read_tables,
    wide_column_map,
    wide_table,
    write_tables,
)
from spatialpath.export._schema import KEY_COLUMNS, LONG_COLUMNS
from spatialpath.model import DataModelError


def _cell(df, image, key):
    comp, metric, ct, ctb = key
    sel = (df["image_id"] == image) & (df["compartment"] == comp) & (df["metric"] == metric)
    sel &= df["cell_type"] == ct
    sel &= df["cell_type_b"].isna() if ctb is None else df["cell_type_b"] == ctb
    assert sel.sum() == 1
    return df[sel].iloc[0]


def test_long_schema_qc_and_default_metadata(tables, cells, image_ids):
    long, _ = tables
    assert list(long.columns) == [*LONG_COLUMNS, "arm", "timepoint"]  # area_um2 varies: not metadata
    assert list(pd.unique(long["image_id"])) == image_ids
    assert isinstance(long["timepoint"].dtype, pd.CategoricalDtype)
    assert long["timepoint"].cat.ordered
    assert str(long["n_cells_a"].dtype) == "Int64"
    assert long["n_cells_b"].isna().any()
    assert (long["spatialpath_version"] == "0.1.0").all()
    per_image = long.drop_duplicates("image_id").set_index("image_id")
    assert (per_image["n_cells_total"] == 200).all()
    assert (per_image["tissue_area_mm2"] == 1.0).all()
    assert (per_image["tissue_area_source"] == "regions").all()
    assert per_image["tumour_area_mm2"].tolist() == [0.5] * 5 + [0.0]  # last image: regions, no tumour
    assert per_image["evaluable"].all()
    assert per_image["qc_note"].isna().all()
    assert per_image.loc["P001_S1_I1", "arm"] == "control"
    assert per_image.loc["P002_S1_I1", "arm"] == "treatment"


def test_qc_minimums_flag_but_keep_rows(fake_metrics, cells, image_ids, syn):
    sub = cells[~((cells.obs["image_id"] == "P001_S1_I2") & (np.arange(cells.n_obs) % 2 == 0))].copy()
    long, wide = biomarker_table(sub, syn.make_regions(image_ids), min_cells=150, min_tissue_mm2=0.5)
    qc = wide.set_index("image_id")
    assert not qc.loc["P001_S1_I2", "evaluable"]
    assert qc.loc["P001_S1_I2", "qc_note"] == "n_cells_total 100 < min_cells 150"
    assert qc["evaluable"].sum() == 5
    assert (long["image_id"] == "P001_S1_I2").any()  # rows kept, flagged
    # images without regions (and no metadata area): the metrics have no tissue area, nor has QC
    bare = image_ids[3:]
    long2, _ = biomarker_table(sub, syn.make_regions(image_ids[:3]), min_cells=1, min_tissue_mm2=0.5)
    long2 = long2[long2["image_id"].isin(bare)]
    assert (long2["tissue_area_source"] == "missing").all()
    assert not long2["evaluable"].any()
    assert long2["tumour_area_mm2"].isna().all()
    assert set(long2["qc_note"]) == {"tissue area missing"}


def test_input_forms_give_one_table(fake_metrics, cells, image_ids, syn):
    regions = syn.make_regions(image_ids)
    ref, _ = biomarker_table(cells, regions)
    per_image = {i: cells[cells.obs["image_id"] == i].copy() for i in image_ids}
    as_list, _ = biomarker_table(list(per_image.values()), regions)
    by_region_map = {i: regions[regions["image_id"] == i].drop(columns="image_id") for i in image_ids}
    no_id = {i: a.copy() for i, a in per_image.items()}
    for a in no_id.values():
        del a.obs["image_id"]
    as_map, _ = biomarker_table(no_id, by_region_map)
    for got in (as_list, as_map):
        pd.testing.assert_frame_equal(
            got.drop(columns=["arm", "timepoint"]), ref.drop(columns=["arm", "timepoint"])
        )
        assert got["arm"].astype(str).tolist() == ref["arm"].astype(str).tolist()


def test_lossless_pivot_with_nan_positions(tables):
    long, wide = tables
    cmap = wide_column_map(long, reserved=[c for c in wide.columns if "__" not in c])
    back = long_from_wide(wide, cmap)
    cols = [*[c for c in wide.columns if "__" not in c], *KEY_COLUMNS, "value", "unit", "status"]
    pd.testing.assert_frame_equal(back[cols], long[cols])  # same rows, order, values, NaN and statuses
    assert long["value"].isna().any()
    assert back["value"].isna().sum() == long["value"].isna().sum()
    # without the map, labels come back sanitised from the column names (the grammar)
    parsed = long_from_wide(wide)
    assert set(parsed["cell_type"]) == {"Tumour", "CD8pos_T", "B_cell"}
    assert parsed["value"].equals(back["value"])
    assert parsed["status"].equals(back["status"])


def test_structural_zero_vs_nan_status(tables):
    long, wide = tables
    w = wide.set_index("image_id")
    # image 0 has no B cell: density 0 is a structural zero (ok), the ratio is undefined
    assert w.loc["P001_S1_I1", "density__tissue__B_cell"] == 0.0
    assert w.loc["P001_S1_I1", "status__density__tissue__B_cell"] == "ok"
    assert np.isnan(w.loc["P001_S1_I1", "ratio__tissue__CD8pos_T__B_cell"])
    assert w.loc["P001_S1_I1", "status__ratio__tissue__CD8pos_T__B_cell"] == "zero_denominator"
    # last image has no tumour polygon: compartment_absent; and no count row at all -> NaN/NaN
    last = "P002_S1_I2"
    assert w.loc[last, "status__density__tumour__Tumour"] == "compartment_absent"
    assert np.isnan(w.loc[last, "count__tumour__Tumour"])
    assert pd.isna(w.loc[last, "status__count__tumour__Tumour"])
    row = _cell(long, last, ("tumour", "density", "Tumour", None))
    assert np.isnan(row["value"])
    assert row["status"] == "compartment_absent"


def test_column_grammar_and_order(tables):
    _, wide = tables
    values = [c for c in wide.columns if "__" in c and not c.startswith("status__")]
    assert values[:3] == ["count__tissue__Tumour", "density__tissue__Tumour", "count__tissue__CD8pos_T"]
    assert "ratio__tumour__CD8pos_T__B_cell" in values
    statuses = [c for c in wide.columns if c.startswith("status__")]
    assert statuses == ["status__" + c for c in values]
    assert wide.columns.get_loc(statuses[0]) > wide.columns.get_loc(values[-1])


def _renamed(long, mapping):
    out = long.copy()
    out["cell_type"] = out["cell_type"].replace(mapping)
    return out


def test_collision_is_an_error(tables):
    long, _ = tables
    long = long[long["cell_type"] != "CD8+ T"]
    for a, b in [("CD4+ T", "CD4pos T"), ("Treg", "TREG")]:
        clash = _renamed(long, {"Tumour": a, "B cell": b})
        with pytest.raises(DataModelError, match=r"wide column name collision.*rename one of the labels"):
            wide_table(clash)
    with pytest.raises(DataModelError, match=r"are also id, QC or metadata columns"):
        wide_table(long.assign(**{"count__tissue__Tumour": 1}))
    with pytest.raises(DataModelError, match="has no letter or digit"):
        wide_table(
            _renamed(long, {"Tumour": "+-"}).replace({"cell_type": {"pos": "x"}}).pipe(_renamed, {"+-": "**"})
        )


def test_duplicate_rows_and_varying_image_columns_refused(tables):
    long, _ = tables
    with pytest.raises(DataModelError, match="rows sharing one key"):
        wide_table(pd.concat([long, long.iloc[[0]]], ignore_index=True))
    bad = long.copy()
    bad.loc[0, "n_cells_total"] = 1
    with pytest.raises(
        DataModelError, match=r"per-image column\(s\) \['n_cells_total'\] vary within an image"
    ):
        wide_table(bad)


def test_sample_aggregation_rules(fake_metrics, cells, image_ids, syn):
    regions = syn.make_regions(image_ids)
    long, wide = biomarker_table(cells, regions, aggregate="sample", min_cells=10)
    assert list(wide["sample_id"]) == ["P001_S1", "P001_S2", "P002_S1"]
    assert "image_id" not in wide
    assert {"n_images", "n_images_evaluable"} <= set(wide.columns)
    w = wide.set_index("sample_id")
    for s in w.index:
        rows = long[
            (long["sample_id"] == s) & (long["compartment"] == "tumour") & (long["cell_type"] == "CD8+ T")
        ]
        dens = rows[(rows["metric"] == "density") & (rows["status"] == "ok")]
        expected = dens["n_cells_a"].sum() / dens["area_mm2"].sum()  # Σ cells / Σ area
        assert w.loc[s, "density__tumour__CD8pos_T"] == pytest.approx(expected)
        assert w.loc[s, "count__tumour__CD8pos_T"] == rows[rows["metric"] == "count"]["value"].sum()
        assert w.loc[s, "status__ratio__tumour__CD8pos_T__B_cell"] == "not_aggregated"
        assert np.isnan(w.loc[s, "ratio__tumour__CD8pos_T__B_cell"])
    # P002_S1: tumour only in its first image, pooled over that image's area
    assert w.loc["P002_S1", "status__density__tumour__Tumour"] == "ok"
    assert w.loc["P001_S1", "n_images"] == 2
    assert w.loc["P001_S1", "tissue_area_mm2"] == 2.0
    _, ruled = biomarker_table(cells, regions, aggregate="sample", aggregation_rules={"ratio": "ratio"})
    r = ruled.set_index("sample_id")
    assert r.loc["P001_S1", "status__ratio__tissue__CD8pos_T__B_cell"] == "ok"
    # no evaluable image in a sample
    _, none_ok = biomarker_table(cells, regions, aggregate="sample", min_cells=10_000)
    assert set(none_ok.filter(like="status__").stack()) == {"no_evaluable_image"}
    assert not none_ok["evaluable"].any()


def test_error_paths(fake_metrics, cells, image_ids, syn):
    regions = syn.make_regions(image_ids)
    with pytest.raises(DataModelError, match="samples must be an AnnData, a list of AnnData or a mapping"):
        biomarker_table("cells.h5ad")
    with pytest.raises(
        DataModelError, match="image id 'P001_S1_I1' occurs in samples\\[0\\] and samples\\[1\\]"
    ):
        biomarker_table([cells, cells])
    with pytest.raises(DataModelError, match=r"regions hold image id\(s\) \['ghost'\]"):
        biomarker_table(cells, pd.concat([regions, syn.make_regions(["ghost"])]))
    with pytest.raises(DataModelError, match="no 'image_id' column but the cells hold several images"):
        biomarker_table(cells, regions.drop(columns="image_id"))
    with pytest.raises(DataModelError, match=r"metadata column\(s\) \['area_um2'\] vary within an image"):
        biomarker_table(cells, regions, metadata=["arm", "area_um2"])
    with pytest.raises(DataModelError, match=r"metadata column\(s\) \['visit'\] are not in obs"):
        biomarker_table(cells, regions, metadata=["visit"])
    with pytest.raises(ValueError, match="aggregate must be None or 'sample'"):
        biomarker_table(cells, regions, aggregate="patient")
    with pytest.raises(DataModelError, match="unknown rule"):
        biomarker_table(cells, regions, aggregate="sample", aggregation_rules={"ratio": "mean"})
    no_sample = cells.copy()
    del no_sample.obs["sample_id"]
    with pytest.raises(DataModelError, match="aggregate='sample' needs a sample_id"):
        biomarker_table(no_sample, regions, aggregate="sample")


def test_metrics_contract_is_checked(fake_metrics, cells, image_ids, syn, monkeypatch):
    regions = syn.make_regions(image_ids)
    monkeypatch.setattr(
        fake_metrics, "compute", lambda *a, **k: syn.fake_compute(*a, **k).drop(columns="unit")
    )
    with pytest.raises(DataModelError, match=r"lacks column\(s\) \['unit'\]"):
        biomarker_table(cells, regions)
    monkeypatch.setattr(
        fake_metrics, "compute", lambda *a, **k: syn.fake_compute(*a, **k).assign(status="fine")
    )
    with pytest.raises(DataModelError, match=r"statuses \['fine'\] are not in"):
        biomarker_table(cells, regions)


def test_real_metrics_engine_when_available(cells, image_ids, syn, tmp_path):
    """With the real spatialpath.metrics (once it exists): the contract holds end to end."""
    metrics = pytest.importorskip("spatialpath.metrics", reason="spatialpath.metrics not written yet")
    if not hasattr(metrics, "compute"):
        pytest.skip("spatialpath.metrics.compute not available yet")
    long, wide = biomarker_table(cells, syn.make_regions(image_ids), min_cells=10)
    assert list(long.columns[: len(LONG_COLUMNS)]) == list(LONG_COLUMNS)
    cmap = wide_column_map(long, reserved=[c for c in wide.columns if "__" not in c])
    back = long_from_wide(wide, cmap)
    assert len(back) == len(long)
    cols = [*[c for c in wide.columns if "__" not in c], *KEY_COLUMNS, "value", "unit", "status"]
    # value by value: same rows, order, values, NaN positions, units and statuses
    pd.testing.assert_frame_equal(back[cols], long[cols], check_exact=True)
    assert long["value"].isna().any()
    assert (long["value"] == 0).any()
    assert set(long["status"]) <= set(metrics.STATUSES)
    write_tables(long, wide, tmp_path, formats=["csv", "xlsx"])
    for fmt in ("csv", "xlsx"):
        got_long, got_wide = read_tables(tmp_path, fmt)
        pd.testing.assert_frame_equal(got_long, long, check_exact=True)
        pd.testing.assert_frame_equal(got_wide, wide, check_exact=True)
