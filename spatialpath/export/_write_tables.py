"""Write (and read back) the biomarker tables: CSV, Parquet, Excel, data dictionary and manifest."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from spatialpath.export._deidentify import Deidentify, apply_deidentify, redact_paths
from spatialpath.export._dictionary import data_dictionary, restore_column
from spatialpath.export._excel import read_xlsx, write_xlsx
from spatialpath.export._wide import image_columns, wide_column_map
from spatialpath.provenance import (
    Manifest,
    atomic_write,
    check_output_path,
    file_record,
    utc_now,
    write_manifest,
)

__all__ = ["FORMATS", "read_tables", "write_tables"]

#: formats :func:`write_tables` writes.
FORMATS = ("csv", "parquet", "xlsx")
_TABLES = ("long", "wide")


def _paths(out: Path, name: str, formats: Sequence[str]) -> dict[str, Path]:
    paths = {}
    for fmt in ("csv", "parquet"):
        if fmt in formats:
            for t in _TABLES:
                paths[f"{t}_{fmt}"] = out / f"{name}_{t}.{fmt}"
    paths["dictionary_csv"] = out / f"{name}_dictionary.csv"
    if "xlsx" in formats:
        paths["xlsx"] = out / f"{name}.xlsx"
    paths["manifest"] = out / "manifest.json"
    return paths


def write_tables(
    long_df: pd.DataFrame,
    wide_df: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    formats: Sequence[str] = FORMATS,
    *,
    overwrite: bool = False,
    deidentify: Deidentify | Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    name: str = "biomarkers",
    inputs: Iterable[str | os.PathLike[str]] = (),
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write the long and wide biomarker tables, their data dictionary and ``manifest.json``.

    Files in ``out_dir``: ``{name}_long`` and ``{name}_wide`` as ``.csv`` and/or ``.parquet``,
    ``{name}.xlsx`` (sheets ``long``, ``wide``, ``dictionary``), ``{name}_dictionary.csv``
    (always) and ``manifest.json``. Every file is written atomically (temporary file, then
    rename). If any target exists and ``overwrite`` is False, nothing is written. Excel limits
    are checked before anything is written (see ``spatialpath.export._excel``).

    Parameters
    ----------
    long_df, wide_df
        The tables from :func:`~spatialpath.export.biomarker_table`.
    out_dir
        Output folder (created if missing; never inside an input folder).
    formats
        Any of ``"csv"``, ``"parquet"``, ``"xlsx"``.
    overwrite
        Replace existing files.
    deidentify
        A :class:`~spatialpath.export.Deidentify` (keyed hashes of ids, dropped or shifted
        columns, paths redacted), or a function applied to each table. None: tables as given.
    name
        Stem of the file names.
    inputs
        Input files of the run (recorded in the manifest; by file name only when de-identifying).
    parameters
        Extra parameters for the manifest (``long_df.attrs["biomarker_table"]`` is added, with
        the regions' provenance under ``"regions"``). When de-identifying, every string in them
        and in ``long_df.attrs`` (Parquet schema metadata) has its file paths redacted and its
        original ids (values of the id columns) replaced by their pseudonyms.

    Returns
    -------
    Paths written, by role (``long_csv``, ``wide_parquet``, ``xlsx``, ``dictionary_csv``,
    ``manifest``...).

    Raises
    ------
    FileExistsError
        If an output exists and ``overwrite`` is False (nothing is written).
    ValueError
        For an unknown format, or a table Excel cannot hold.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> long = pd.DataFrame({"image_id": ["a", "a", "b", "b"], "compartment": "tumour", "metric": "density",
    ...                      "cell_type": ["CD8+ T", "B"] * 2, "cell_type_b": None,
    ...                      "value": [120.0, 0.0, np.nan, 35.5], "unit": "cells/mm2",
    ...                      "status": ["ok", "ok", "compartment_absent", "ok"],
    ...                      "parameters": "{}"})
    >>> import tempfile
    >>> from spatialpath.export import wide_table
    >>> out = tempfile.mkdtemp()
    >>> paths = write_tables(long, wide_table(long), out, formats=["csv"])
    >>> sorted(p.name for p in paths.values())
    ['biomarkers_dictionary.csv', 'biomarkers_long.csv', 'biomarkers_wide.csv', 'manifest.json']
    """
    started = utc_now()
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats {formats} must be a non-empty subset of {list(FORMATS)}")
    if "xlsx" in formats:
        try:
            import openpyxl  # noqa: F401
        except ImportError as err:  # pragma: no cover - openpyxl is a dependency
            raise ImportError(
                "xlsx needs openpyxl: pip install openpyxl, or drop 'xlsx' from formats"
            ) from err
    out = Path(out_dir)
    inputs = list(inputs)
    paths = _paths(out, name, formats)
    for p in paths.values():
        check_output_path(p, inputs)
    existing = [p.name for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out} already holds {existing}; nothing was written. Pass overwrite=True to replace them "
            "or choose another out_dir/name"
        )
    deid_record: dict[str, Any] | None = None
    clean: Callable[[Any], Any] = redact_paths
    if deidentify is not None:
        long_df, wide_df, deid_record, clean = apply_deidentify(deidentify, long_df, wide_df)
    cmap = wide_column_map(long_df, reserved=image_columns(long_df))
    absent = [c for c in cmap["column"] if c not in wide_df.columns]
    if absent:
        raise ValueError(f"wide_df lacks column(s) {absent[:3]} of long_df; build both with biomarker_table")
    dictionary = data_dictionary(long_df, wide_df, cmap, aggregated="n_images" in wide_df.columns)
    tables = {"long": long_df, "wide": wide_df}
    from spatialpath.io import write_table

    if "xlsx" in formats:  # check Excel limits before writing any file
        from spatialpath.export._excel import check_excel

        check_excel({**tables, "dictionary": dictionary})
    written: dict[str, Path] = {}
    for fmt in ("csv", "parquet"):
        if fmt in formats:
            for t in _TABLES:
                key = f"{t}_{fmt}"
                written[key] = write_table(tables[t], paths[key], overwrite=overwrite, inputs=inputs)
    written["dictionary_csv"] = write_table(
        dictionary, paths["dictionary_csv"], overwrite=overwrite, inputs=inputs
    )
    if "xlsx" in formats:
        with atomic_write(paths["xlsx"], overwrite=overwrite, inputs=inputs) as tmp:
            write_xlsx(tmp, {**tables, "dictionary": dictionary})
        written["xlsx"] = paths["xlsx"]
    params: dict[str, Any] = {
        "name": name,
        "formats": formats,
        "overwrite": overwrite,
        "rows": {"long": len(long_df), "wide": len(wide_df)},
        "columns": {"long": len(long_df.columns), "wide": len(wide_df.columns)},
        "biomarker_table": long_df.attrs.get("biomarker_table"),
        "deidentify": deid_record,
        **dict(parameters or {}),
    }
    if deid_record is None:
        params["out_dir"] = str(out)
    else:  # paths redacted, original ids replaced in every string (user parameters included)
        params = clean(params)
    written["manifest"] = paths["manifest"]
    outputs = [p for k, p in written.items() if k != "manifest"]
    command = "spatialpath.export.write_tables(long_df, wide_df, out_dir, ...)"
    if deid_record is None:
        write_manifest(
            paths["manifest"],
            command=command,
            parameters=params,
            inputs=inputs,
            outputs=outputs,
            started_at=started,
            overwrite=overwrite,
        )
    else:
        _write_anonymous_manifest(paths["manifest"], command, params, inputs, outputs, started, overwrite)
    return written


def _write_anonymous_manifest(
    path: Path,
    command: str,
    params: dict[str, Any],
    inputs: list[str | os.PathLike[str]],
    outputs: list[Path],
    started: str,
    overwrite: bool,
) -> None:
    """``manifest.json`` whose inputs are named ``input_1.<suffix>``... (size and SHA-256 kept).

    Input file names often hold patient or sample ids, so a de-identified manifest keeps only
    what identifies the file's content, not its name.
    """
    records = []
    for i, p in enumerate(inputs, start=1):
        rec = file_record(p)
        rec.path = f"input_{i}{Path(p).suffix}"
        records.append(rec)
    manifest = Manifest(
        command=command,
        parameters=json.loads(json.dumps(params, default=str)),
        inputs=records,
        outputs=[file_record(p, relative_to=path.parent) for p in outputs],
        started_at=started,
        finished_at=utc_now(),
    )
    text = json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"
    with atomic_write(path, overwrite=overwrite, inputs=inputs) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_dictionary(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a data dictionary CSV (every column as text, empty cells missing)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])


def _restore(raw: pd.DataFrame, spec: pd.DataFrame) -> pd.DataFrame:
    out = {}
    for rec in spec.to_dict("records"):
        col = rec["column"]
        if col not in raw:
            raise ValueError(f"column {col!r} of the data dictionary is missing from the table")
        levels = "" if pd.isna(rec["levels"]) else rec["levels"]
        out[col] = restore_column(raw[col], rec["type"], levels)
    return pd.DataFrame(out, index=raw.index)


def read_tables(
    out_dir: str | os.PathLike[str], fmt: str = "csv", *, name: str = "biomarkers"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read tables written by :func:`write_tables` with the dtypes of their data dictionary.

    CSV is read with ``float_precision="round_trip"`` and only empty cells as missing, so
    ``"NA"`` stays text; Excel text is un-escaped (see ``spatialpath.export._excel``).
    Categorical columns come back with their categories and order, integers with missing
    values as ``Int64``.

    Parameters
    ----------
    out_dir
        The folder :func:`write_tables` wrote.
    fmt
        ``"csv"``, ``"parquet"`` or ``"xlsx"``: which copy to read.
    name
        Stem of the file names.

    Returns
    -------
    ``(long, wide)``, value-identical to the tables written.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> long = pd.DataFrame({"image_id": ["a", "a", "b", "b"], "compartment": "tumour", "metric": "density",
    ...                      "cell_type": ["CD8+ T", "B"] * 2, "cell_type_b": None,
    ...                      "value": [120.0, 0.0, np.nan, 35.5], "unit": "cells/mm2",
    ...                      "status": ["ok", "ok", "compartment_absent", "ok"],
    ...                      "parameters": "{}"})
    >>> import tempfile
    >>> from spatialpath.export import wide_table, write_tables
    >>> out = tempfile.mkdtemp()
    >>> paths = write_tables(long, wide_table(long), out, formats=["csv"])
    >>> long2, wide2 = read_tables(out, "csv")
    >>> long2.equals(long), wide2.equals(wide_table(long))  # same values and dtypes
    (True, True)
    """
    out = Path(out_dir)
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {list(FORMATS)}, got {fmt!r}")
    dictionary = read_dictionary(out / f"{name}_dictionary.csv")
    specs = {t: dictionary[dictionary["table"] == t] for t in _TABLES}
    raw: dict[str, pd.DataFrame] = {}
    if fmt == "xlsx":
        raw = read_xlsx(out / f"{name}.xlsx", list(_TABLES))
    for t in _TABLES:
        spec = specs[t]
        if fmt == "parquet":
            raw[t] = pd.read_parquet(out / f"{name}_{t}.parquet")
        elif fmt == "csv":
            text = spec["type"].str.startswith(("string", "category", "datetime", "bool"))
            raw[t] = pd.read_csv(
                out / f"{name}_{t}.csv",
                dtype=dict.fromkeys(spec.loc[text, "column"], str),
                keep_default_na=False,
                na_values=[""],
                float_precision="round_trip",
            )
        raw[t] = _restore(raw[t], spec)
    return raw["long"], raw["wide"]
