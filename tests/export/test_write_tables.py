"""write_tables / read_tables: value-identical CSV, Parquet and Excel; dictionary; Excel limits;
no overwrite; manifest."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from spatialpath.export import _excel, data_dictionary, read_tables, wide_column_map, wide_table, write_tables
from spatialpath.provenance import sha256_file

openpyxl = pytest.importorskip("openpyxl", reason="openpyxl missing: xlsx tests skipped (add it to .venv)")

TRICKY_TEXT = ["NA", "=1+1", "-x", "'=y", "@SUM(A1)", " lead", "null", "1.0"]


@pytest.fixture
def tricky(tables):
    """The biomarker tables with floats, text and types that break naive writers."""
    long, _ = tables
    long = long.copy()
    special = [0.1 + 0.2, 1e-300, 5e-324, 1 / 3, np.inf, -np.inf, 2.0**60, -0.0]
    long.loc[: len(special) - 1, "value"] = special
    images = list(pd.unique(long["image_id"]))
    per_image = dict(zip(images, TRICKY_TEXT, strict=False))
    long["site"] = long["image_id"].map(per_image)
    long["screened"] = long["image_id"].map({i: k % 2 == 0 for k, i in enumerate(images)})
    long["visit"] = long["image_id"].map({i: pd.Timestamp(2021, 3, k + 1) for k, i in enumerate(images)})
    long["site_code"] = pd.Categorical(long["site"], categories=sorted(set(per_image.values()))[::-1])
    return long, wide_table(long)


def _written_files(out):
    return sorted(p.name for p in out.iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx"])
def test_value_identical_round_trip(tricky, tmp_path, fmt):
    long, wide = tricky
    write_tables(long, wide, tmp_path, formats=[fmt])
    got_long, got_wide = read_tables(tmp_path, fmt)
    pd.testing.assert_frame_equal(got_long, long, check_exact=True)
    pd.testing.assert_frame_equal(got_wide, wide, check_exact=True)
    # exact floats, signed zero and the NaN pattern
    assert np.array_equal(got_long["value"].to_numpy(), long["value"].to_numpy(), equal_nan=True)
    assert np.signbit(got_long["value"].to_numpy()[7])
    assert str(got_long["n_cells_b"].dtype) == "Int64"
    assert got_long["n_cells_b"].isna().any()
    assert got_long["timepoint"].cat.ordered
    assert list(got_long["site_code"].cat.categories) == list(long["site_code"].cat.categories)


def test_files_dictionary_and_manifest(tables, tmp_path):
    long, wide = tables
    paths = write_tables(long, wide, tmp_path)
    assert _written_files(tmp_path) == sorted(
        [
            "biomarkers.xlsx",
            "biomarkers_dictionary.csv",
            "biomarkers_long.csv",
            "biomarkers_long.parquet",
            "biomarkers_wide.csv",
            "biomarkers_wide.parquet",
            "manifest.json",
        ]
    )
    d = pd.read_csv(paths["dictionary_csv"], dtype=str, keep_default_na=False)
    assert list(d[d["table"] == "long"]["column"]) == list(long.columns)
    assert list(d[d["table"] == "wide"]["column"]) == list(wide.columns)
    assert (d[d["table"].isin(["long", "wide"])][["label", "type", "derivation"]] != "").all().all()
    row = d[d["column"] == "density__tumour__CD8pos_T"].iloc[0]
    assert (row["metric"], row["compartment"], row["cell_type"], row["unit"]) == (
        "density",
        "tumour",
        "CD8+ T",
        "cells/mm2",
    )
    metrics = d[d["table"] == "metric"].set_index("column")
    assert metrics.loc["density", "label"] == "Cell density"
    assert metrics.loc["density", "derivation"].startswith("Cells of the type per mm²")
    status_levels = json.loads(d[d["column"] == "status__count__tissue__Tumour"]["levels"].iloc[0])
    assert "compartment_absent" in status_levels
    wb = openpyxl.load_workbook(paths["xlsx"], read_only=True)
    assert wb.sheetnames == ["long", "wide", "dictionary"]
    manifest = json.loads(paths["manifest"].read_text())
    outputs = {o["path"]: o["sha256"] for o in manifest["outputs"]}
    assert set(outputs) == set(_written_files(tmp_path)) - {"manifest.json"}
    assert all(sha256_file(tmp_path / p) == h for p, h in outputs.items())
    params = manifest["parameters"]
    assert params["biomarker_table"]["min_cells"] == 10
    assert params["rows"] == {"long": len(long), "wide": 6}
    assert params["out_dir"] == str(tmp_path)
    assert params["deidentify"] is None
    assert manifest["command"].startswith("spatialpath.export.write_tables(")


def test_never_overwrite_without_flag(tables, tmp_path):
    long, wide = tables
    paths = write_tables(long, wide, tmp_path, formats=["csv"])
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths.values()}
    changed = long.assign(value=long["value"] + 1)
    with pytest.raises(FileExistsError, match=r"nothing was written\. Pass overwrite=True"):
        write_tables(changed, wide_table(changed), tmp_path, formats=["csv", "parquet"])
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths.values()} == before
    assert not (tmp_path / "biomarkers_long.parquet").exists()  # not even the new files
    write_tables(changed, wide_table(changed), tmp_path, formats=["csv"], overwrite=True)
    got, _ = read_tables(tmp_path, "csv")
    assert got["value"].equals(changed["value"])


def test_excel_row_limit_splits_sheets(tricky, tmp_path, monkeypatch):
    long, wide = tricky
    monkeypatch.setattr(_excel, "EXCEL_MAX_ROWS", 11)  # 10 data rows per sheet
    write_tables(long, wide, tmp_path, formats=["xlsx"])
    names = openpyxl.load_workbook(tmp_path / "biomarkers.xlsx", read_only=True).sheetnames
    n = -(-len(long) // 10)
    assert names[:n] == ["long", *[f"long_{i}" for i in range(2, n + 1)]]
    assert all(len(s) <= 31 for s in names)
    got_long, got_wide = read_tables(tmp_path, "xlsx")
    pd.testing.assert_frame_equal(got_long, long, check_exact=True)
    pd.testing.assert_frame_equal(got_wide, wide, check_exact=True)


def test_excel_column_limit_refused_before_writing(tables, tmp_path, monkeypatch):
    long, wide = tables
    monkeypatch.setattr(_excel, "EXCEL_MAX_COLUMNS", 30)
    with pytest.raises(ValueError, match=r"table 'wide' has \d+ columns; an Excel sheet holds at most 30"):
        write_tables(long, wide, tmp_path)
    assert not tmp_path.exists() or _written_files(tmp_path) == []


def test_sheet_names_at_most_31_characters():
    names = _excel.sheet_names("a/very:long*table?name[with]bad\\characters", 12)
    assert all(len(s) <= 31 for s in names)
    assert names[11].endswith("_12")
    assert not any(c in s for s in names for c in "[]:*?/\\")


def test_formula_injection_escaped_in_excel_only(tricky, tmp_path):
    long, wide = tricky
    write_tables(long, wide, tmp_path, formats=["csv", "xlsx"])
    wb = openpyxl.load_workbook(tmp_path / "biomarkers.xlsx")  # not read-only: see cell types
    ws = wb["long"]
    header = [c.value for c in ws[1]]
    cells = [ws.cell(row=r, column=header.index("site") + 1) for r in range(2, ws.max_row + 1)]
    assert {c.data_type for c in cells} == {"s"}  # text, never a formula
    shown = {c.value for c in cells}
    assert {"'=1+1", "'-x", "''=y", "'@SUM(A1)", "NA", " lead"} <= shown
    assert not any(c.data_type == "f" for row in wb["dictionary"].iter_rows() for c in row)
    inf_cells = [ws.cell(row=r, column=header.index("value") + 1).value for r in (6, 7)]
    assert inf_cells == ["inf", "'-inf"]
    csv = pd.read_csv(tmp_path / "biomarkers_long.csv", dtype=str, keep_default_na=False)
    assert "=1+1" in set(csv["site"])  # CSV is written verbatim (machine-readable)


def test_excel_cell_limits(tables, tmp_path):
    long, wide = tables
    with pytest.raises(ValueError, match="an Excel cell holds 32767"):
        write_tables(long.assign(qc_note="x" * 40_000), wide, tmp_path, formats=["xlsx"])
    with pytest.raises(ValueError, match="control characters"):
        write_tables(long.assign(qc_note="bell\x07"), wide, tmp_path, formats=["xlsx"])
    assert not tmp_path.exists() or _written_files(tmp_path) == []


def test_write_errors(tables, tmp_path):
    long, wide = tables
    with pytest.raises(ValueError, match=r"formats \['csv', 'json'\] must be a non-empty subset"):
        write_tables(long, wide, tmp_path, formats=["csv", "json"])
    with pytest.raises(ValueError, match="wide_df lacks column"):
        write_tables(long, wide.drop(columns="count__tissue__Tumour"), tmp_path)
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "cells.h5ad").write_bytes(b"x")
    with pytest.raises(ValueError, match="inside the input folder"):
        write_tables(long, wide, inputs / "out", inputs=[inputs / "cells.h5ad"])
    mixed = long.assign(site=[1 if i % 2 else "a" for i in range(len(long))])
    with pytest.raises(Exception, match="mixes value types"):
        data_dictionary(mixed, wide, wide_column_map(long))
    with pytest.raises(ValueError, match="fmt must be one of"):
        read_tables(tmp_path, "json")


def test_sample_level_tables_round_trip(fake_metrics, cells, image_ids, syn, tmp_path):
    from spatialpath.export import biomarker_table

    long, wide = biomarker_table(cells, syn.make_regions(image_ids), aggregate="sample")
    write_tables(long, wide, tmp_path, formats=["csv"])
    _got_long, got_wide = read_tables(tmp_path, "csv")
    pd.testing.assert_frame_equal(got_wide, wide, check_exact=True)
    d = pd.read_csv(tmp_path / "biomarkers_dictionary.csv", dtype=str, keep_default_na=False)
    levels = json.loads(d[d["column"] == "status__ratio__tissue__CD8pos_T__B_cell"]["levels"].iloc[0])
    assert "not_aggregated" in levels
    assert os.path.getsize(tmp_path / "biomarkers_long.csv") > 0
