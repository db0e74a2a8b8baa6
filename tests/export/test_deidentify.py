"""De-identification: no original identifier, path or key in any output file (all formats)."""

from __future__ import annotations

import io
import json
import zipfile

import pandas as pd
import pytest

from spatialpath.export import Deidentify, read_tables, wide_table, write_tables
from spatialpath.model import DataModelError

pytest.importorskip("openpyxl", reason="openpyxl missing: xlsx tests skipped (add it to .venv)")

KEY = "s3cr3t-key-for-tests-only-0123456789"


@pytest.fixture
def identified(tables):
    """Tables with free text and dates that name patients."""
    long, _ = tables
    images = list(pd.unique(long["image_id"]))
    long = long.assign(
        clinician_note=long["patient_id"].map(lambda p: f"seen by Dr. Who; {p} consented"),
        surgery=long["image_id"].map({i: pd.Timestamp(2020, 1, k + 1) for k, i in enumerate(images)}),
        consent_date=long["image_id"].map({i: f"2019-12-{k + 10}" for k, i in enumerate(images)}),
    )
    return long, wide_table(long)


def _texts(path):
    """Every readable text of a file: raw bytes, every zip member, Parquet values and metadata."""
    data = path.read_bytes()
    out = [data.decode("utf-8", "replace")]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            out += [z.read(n).decode("utf-8", "replace") for n in z.namelist()]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        out.append(str(table.schema.metadata))
        out += [str(v) for col in table.to_pydict().values() for v in col]
    return "\n".join(out)


def test_no_identifier_path_or_key_in_any_output(identified, cells, syn, tmp_path):
    long, wide = identified
    inputs = tmp_path / "in" / "P001_S1_cells.h5ad"
    inputs.parent.mkdir()
    inputs.write_bytes(b"cells")
    out = tmp_path / "out"
    deid = Deidentify(key=KEY, drop=("clinician_note",))
    long = long.copy()  # ids inside user parameters and attrs (B8): replaced in manifest and Parquet
    long.attrs = {"biomarker_table": {"note": "run for P001_S1_I1", "excluded": ["P002"]}}
    user = {"input": str(inputs), "comment": "P002 excluded", "P001": {"why": "pilot P001_S2"}}
    paths = write_tables(long, wide, out, deidentify=deid, inputs=[inputs], parameters=user)
    secrets = {KEY, syn.SOURCE, "/data/trial", str(tmp_path), "Dr. Who", "2020-01-0", "2019-12-1"}
    secrets |= {str(v) for c in ("patient_id", "sample_id", "image_id") for v in cells.obs[c].unique()}
    files = sorted(p for p in out.iterdir())
    assert {p.name for p in files} == {p.name for p in paths.values()}
    for f in files:
        text = _texts(f)
        leaked = sorted(s for s in secrets if s in text)
        assert not leaked, f"{f.name} leaks {leaked}"
    got_long, got_wide = read_tables(out, "xlsx")
    assert set(got_long["patient_id"]) == {deid.pseudonym("P001"), deid.pseudonym("P002")}
    assert list(got_wide["image_id"]) == list(pd.unique(got_long["image_id"]))
    assert {"clinician_note", "surgery", "consent_date"}.isdisjoint(got_long.columns)
    assert got_long["value"].equals(long["value"])  # values untouched
    manifest = json.loads(paths["manifest"].read_text())
    assert manifest["inputs"][0]["path"] == "input_1.h5ad"
    assert manifest["parameters"]["deidentify"]["dropped_columns"] == [
        "clinician_note",
        "consent_date",
        "surgery",
    ]
    assert "out_dir" not in manifest["parameters"]
    p1, p2 = deid.pseudonym("P001"), deid.pseudonym("P002")
    assert manifest["parameters"]["comment"] == f"{p2} excluded"
    assert manifest["parameters"][p1] == {"why": f"pilot {deid.pseudonym('P001_S2')}"}
    assert manifest["parameters"]["biomarker_table"] == {
        "note": f"run for {deid.pseudonym('P001_S1_I1')}",
        "excluded": [p2],
    }
    import pyarrow.parquet as pq

    attrs = json.loads(pq.read_schema(paths["long_parquet"]).metadata[b"PANDAS_ATTRS"])
    assert attrs["biomarker_table"]["excluded"] == [p2]
    params = json.loads(got_long["parameters"].iloc[0])
    assert params == {"min_cells": 5, "source": "<redacted>"}


def test_same_key_same_pseudonyms_and_date_shift(identified, tmp_path):
    long, wide = identified
    deid = Deidentify(key=KEY, drop=("clinician_note",), shift_dates_days=-40)
    write_tables(long, wide, tmp_path / "a", formats=["csv"], deidentify=deid)
    write_tables(long, wide, tmp_path / "b", formats=["parquet"], deidentify=deid)
    a_long, _ = read_tables(tmp_path / "a", "csv")
    b_long, _ = read_tables(tmp_path / "b", "parquet")
    pd.testing.assert_frame_equal(a_long, b_long)
    assert (a_long["surgery"] == long["surgery"] - pd.Timedelta(days=40)).all()
    assert a_long["consent_date"].iloc[0] == "2019-10-31"  # 2019-12-10 - 40 days
    other = Deidentify(key=KEY + "x", drop=("clinician_note",))
    assert other.pseudonym("P001") != deid.pseudonym("P001")


def test_leftover_identifier_refused(identified, tmp_path):
    long, wide = identified
    with pytest.raises(DataModelError, match="column 'clinician_note' still holds an original identifier"):
        write_tables(long, wide, tmp_path, deidentify=Deidentify(key=KEY))
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
    with pytest.raises(DataModelError, match=r"names column\(s\) \['mrn'\] that the tables do not have"):
        write_tables(long, wide, tmp_path, deidentify=Deidentify(key=KEY, drop=("mrn",)))


def test_key_checks_and_repr():
    with pytest.raises(ValueError, match=r"at least 16 bytes; make one with secrets\.token_hex"):
        Deidentify(key="short")
    assert KEY not in repr(Deidentify(key=KEY))
    with pytest.raises(ValueError, match=r"digest_chars must be within 8\.\.64"):
        Deidentify(key=KEY, digest_chars=4)


def test_function_deidentify(tables, tmp_path):
    long, wide = tables

    def strip_ids(df):
        return df.drop(columns=[c for c in ("patient_id", "sample_id") if c in df])

    long = long.copy()
    long.attrs = {"biomarker_table": {"note": "run for P001_S1_I1"}}
    paths = write_tables(
        long, wide, tmp_path, formats=["csv"], deidentify=strip_ids, parameters={"c": "P002 excluded"}
    )
    manifest = json.loads(paths["manifest"].read_text())
    # a user function's pseudonyms are unknown: original ids in other strings are redacted
    assert manifest["parameters"]["c"] == "<redacted> excluded"
    assert manifest["parameters"]["biomarker_table"] == {"note": "run for <redacted>"}
    text = paths["long_csv"].read_text()
    assert "P001_S1," not in text
    assert "/data/trial" not in text
    manifest = json.loads(paths["manifest"].read_text())
    assert manifest["parameters"]["deidentify"]["method"].startswith("user function")
    with pytest.raises(TypeError, match="deidentify must be a Deidentify or a function"):
        write_tables(long, wide, tmp_path / "x", deidentify="yes")
