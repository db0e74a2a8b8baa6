"""The data dictionary of the biomarker tables, and column types that survive CSV and Excel.

Every column of the long and wide tables gets one row: ``table``, ``column``, ``label``,
``unit``, ``type``, ``levels`` (JSON list of categories or statuses; for the value columns and
metric rows of a coded metric such as ``immune_phenotype``, the JSON object code -> meaning from
the registry's ``value_labels``, also spelled out in ``derivation``), ``derivation``, and for
wide value/status columns the long key (``metric``, ``compartment``, ``cell_type``,
``cell_type_b``) that un-pivots them. Rows with ``table == "metric"`` define each metric (from
the metrics registry when ``spatialpath.metrics`` is importable).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from spatialpath.export._schema import AGGREGATE_STATUSES, DESCRIPTIONS, KEY_COLUMNS, STATUSES
from spatialpath.model import DataModelError

__all__ = ["DICTIONARY_COLUMNS", "data_dictionary", "dtype_code", "restore_column", "value_codes"]

DICTIONARY_COLUMNS = ("table", "column", "label", "unit", "type", "levels", "derivation", *KEY_COLUMNS)
_STRING = "string"


def dtype_code(series: pd.Series) -> tuple[str, str]:
    """Portable type name of a column and its levels (JSON) for categoricals.

    Examples
    --------
    >>> import pandas as pd
    >>> dtype_code(pd.Series(pd.Categorical(["b", "a"], categories=["b", "a"])))
    ('category', '["b", "a"]')
    >>> dtype_code(pd.Series([1, None], dtype="Int64"))
    ('Int64', '')
    """
    dt = series.dtype
    if isinstance(dt, pd.CategoricalDtype):
        cats = [c.item() if hasattr(c, "item") else c for c in dt.categories]
        return ("category_ordered" if dt.ordered else "category"), json.dumps(cats, ensure_ascii=False)
    if pd.api.types.is_datetime64_any_dtype(dt):
        if getattr(dt, "tz", None) is not None:
            raise DataModelError(f"column {series.name!r} has time-zone aware dates; convert to naive UTC")
        return "datetime64[ns]", ""
    if dt.kind == "O":
        kinds = {type(v) for v in series.dropna()}
        if not kinds <= {str}:
            raise DataModelError(
                f"column {series.name!r} mixes value types {sorted(k.__name__ for k in kinds)}; "
                "a table column must hold one type (convert it with .astype(str) or to numbers)"
            )
        return _STRING, ""
    if dt.kind in "biuf" or str(dt) in ("Int64", "boolean", "Float64"):
        return str(dt), ""
    raise DataModelError(f"column {series.name!r} has unsupported dtype {dt}; convert it to str or numbers")


def restore_column(values: pd.Series, code: str, levels: str) -> pd.Series:
    """Cast a column read from CSV or Excel back to its dictionary type."""
    if code == _STRING:
        text = [np.nan if pd.isna(v) else str(v) for v in values]
        return pd.Series(text, index=values.index, name=values.name, dtype=object)
    if code.startswith("category"):
        cats = json.loads(levels) if levels else []
        lookup = {str(c): c for c in cats}
        raw = values.astype(object).where(values.notna(), None).map(lambda v: None if v is None else str(v))
        return pd.Series(
            pd.Categorical(raw.map(lookup), categories=cats, ordered=code == "category_ordered"),
            index=values.index,
            name=values.name,
        )
    if code == "datetime64[ns]":
        return pd.to_datetime(values).astype("datetime64[ns]")
    if code == "bool":
        return values.map(lambda v: v if isinstance(v, bool | np.bool_) else str(v) == "True").astype(bool)
    if code == "boolean":
        mapped = values.map(
            lambda v: pd.NA if pd.isna(v) else (v if isinstance(v, bool) else str(v) == "True")
        )
        return mapped.astype("boolean")
    if code in ("Int64", "Float64") or code.startswith(("int", "uint")):
        return pd.to_numeric(values).astype(code)
    if code.startswith("float"):
        # Excel cannot store inf: it is written as the text "inf"/"-inf"
        return values.map(lambda v: float(v) if isinstance(v, str) else v).astype(code)
    raise DataModelError(f"unknown type {code!r} in the data dictionary")


def _metric_definitions(metrics: list[str]) -> dict[str, tuple[str, str]]:
    """``(label, definition)`` per metric from the registry (empty when it is not importable)."""
    try:
        from spatialpath.metrics import REGISTRY
    except ImportError:
        return {}
    out = {}
    for m in metrics:
        entry: Any = REGISTRY.get(m)
        if entry is None:
            continue
        parts = [
            str(getattr(entry, "definition", "") or ""),
            f"Formula: {entry.formula}." if getattr(entry, "formula", "") else "",
            f"Reference: {entry.reference}" if getattr(entry, "reference", "") else "",
        ]
        out[m] = (str(getattr(entry, "label", m)), " ".join(p for p in parts if p))
    return out


def value_codes(metrics: list[str]) -> dict[str, dict[str, str]]:
    """Code -> meaning of each coded (categorical-call) metric, from the registry's ``value_labels``.

    Examples
    --------
    >>> value_codes(["immune_phenotype", "density"])
    {'immune_phenotype': {'0': 'desert', '1': 'excluded', '2': 'inflamed'}}
    """
    try:
        from spatialpath.metrics import REGISTRY
    except ImportError:
        return {}
    out = {}
    for m in metrics:
        labels = getattr(REGISTRY.get(m), "value_labels", None)
        if labels:
            out[m] = {str(k): str(v) for k, v in sorted(labels.items())}
    return out


def _codes_text(codes: dict[str, str]) -> str:
    return "Codes: " + ", ".join(f"{k} = {v}" for k, v in codes.items()) + "."


def _row(table: str, series: pd.Series, label: str, unit: str, derivation: str) -> dict[str, Any]:
    code, levels = dtype_code(series)
    return {
        "table": table,
        "column": series.name,
        "label": label,
        "unit": unit,
        "type": code,
        "levels": levels,
        "derivation": derivation,
    }


def _describe(table: str, df: pd.DataFrame, skip: set[str]) -> list[dict[str, Any]]:
    rows = []
    for c in df.columns:
        if c in skip:
            continue
        label, unit, derivation = DESCRIPTIONS.get(
            c, (c, "", f"obs[{c!r}], constant within each image (per-image metadata)")
        )
        rows.append(_row(table, df[c], label, unit, derivation))
    return rows


def data_dictionary(
    long: pd.DataFrame, wide: pd.DataFrame, column_map: pd.DataFrame, *, aggregated: bool = False
) -> pd.DataFrame:
    """One row per column of ``long`` and ``wide``, then one per metric (see the module docstring).

    ``column_map`` is the output of :func:`~spatialpath.export.wide_column_map`.

    Parameters
    ----------
    long, wide
        The long and wide biomarker tables (:func:`~spatialpath.export.biomarker_table`).
    column_map
        Wide value column -> long key and unit (:func:`~spatialpath.export.wide_column_map`).
    aggregated
        The wide table is sample-level (:func:`~spatialpath.export.aggregate_samples`): its
        status columns may also hold the aggregation statuses.

    Returns
    -------
    pandas.DataFrame
        The columns :data:`DICTIONARY_COLUMNS`.

    Examples
    --------
    >>> from spatialpath.export import wide_column_map, wide_table
    >>> import numpy as np, pandas as pd
    >>> long = pd.DataFrame({"image_id": ["a", "a", "b", "b"], "compartment": "tumour", "metric": "density",
    ...                      "cell_type": ["CD8+ T", "B"] * 2, "cell_type_b": None,
    ...                      "value": [120.0, 0.0, np.nan, 35.5], "unit": "cells/mm2",
    ...                      "status": ["ok", "ok", "compartment_absent", "ok"],
    ...                      "parameters": "{}"})
    >>> d = data_dictionary(long, wide_table(long), wide_column_map(long))
    >>> print(d[d["table"] != "long"][["table", "column", "label", "unit"]].to_string())
         table                             column                                  label       unit
    9     wide                           image_id    Image (ROI, core, field) identifier
    10    wide          density__tumour__CD8pos_T            density of CD8+ T in tumour  cells/mm2
    11    wide                 density__tumour__B                 density of B in tumour  cells/mm2
    12    wide  status__density__tumour__CD8pos_T  status of density of CD8+ T in tumour
    13    wide         status__density__tumour__B       status of density of B in tumour
    14  metric                            density                           Cell density  cells/mm2
    """
    rows = _describe("long", long, set())
    metrics = list(dict.fromkeys(long["metric"].dropna()))
    codes = value_codes(metrics)
    for r in rows:
        if r["column"] == "value" and codes:
            r["derivation"] += (
                " Coded metrics: " + "; ".join(f"{m} ({_codes_text(c)[:-1]})" for m, c in codes.items()) + "."
            )
    levels = json.dumps(list(STATUSES) + (list(AGGREGATE_STATUSES) if aggregated else []))
    how = "pooled over the sample's evaluable images" if aggregated else "value of the long row"
    mapped: dict[str, tuple[dict[str, Any], bool]] = {}
    for rec in column_map.to_dict("records"):
        mapped[rec["column"]] = (rec, False)
        mapped[rec["status_column"]] = (rec, True)
    for c in wide.columns:
        if c not in mapped:
            rows += _describe("wide", wide[[c]], set())
            continue
        rec, is_status = mapped[c]
        key = {k: (None if pd.isna(rec[k]) else rec[k]) for k in KEY_COLUMNS}
        types = " and ".join(t for t in (key["cell_type"], key["cell_type_b"]) if t is not None)
        what = f"{key['metric']}" + (f" of {types}" if types else "") + f" in {key['compartment']}"
        where = ", ".join(f"{k}={v!r}" for k, v in key.items() if v is not None)
        if is_status:
            rows.append(_row("wide", wide[c], f"status of {what}", "", f"status of {where}") | key)
            rows[-1]["levels"] = levels
        else:
            unit = "" if pd.isna(rec["unit"]) else rec["unit"]
            rows.append(_row("wide", wide[c], what, unit, f"{how} with {where}") | key)
            if key["metric"] in codes:
                rows[-1]["levels"] = json.dumps(codes[key["metric"]], ensure_ascii=False)
                rows[-1]["derivation"] += ". " + _codes_text(codes[key["metric"]])
    definitions = _metric_definitions(metrics)
    for m in metrics:
        sub = long[long["metric"] == m]
        params = list(dict.fromkeys(sub["parameters"].dropna()))
        units = list(dict.fromkeys(sub["unit"].dropna()))
        rows.append(
            {
                "table": "metric",
                "column": m,
                "label": definitions.get(m, (m, ""))[0],
                "unit": "; ".join(units),
                "type": "float64",
                "levels": json.dumps(codes[m], ensure_ascii=False) if m in codes else "",
                "derivation": " ".join(
                    p
                    for p in (
                        definitions.get(m, ("", ""))[1],
                        _codes_text(codes[m]) if m in codes else "",
                        "Parameters: " + (params[0] if len(params) == 1 else f"{len(params)} different sets"),
                    )
                    if p
                ),
                "metric": m,
            }
        )
    out = pd.DataFrame(rows).reindex(columns=list(DICTIONARY_COLUMNS))
    return out.astype(object).where(out.notna(), np.nan)
