"""The wide biomarker table: one row per image, one column per (metric, compartment, type[, type_b]).

Column grammar
--------------
``metric__compartment[__cell_type[__cell_type_b]]``: the parts are joined by a double
underscore; each part is *sanitised* (``+`` becomes ``pos``, accents are dropped, every run of
other characters becomes one ``_``, leading and trailing ``_`` are stripped), so a part never
contains ``__`` and the name splits back unambiguously. The status of each value column sits in
the parallel column ``status__<name>``. Two different long keys mapping to one name (also when
the names differ only in case) are refused.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import pandas as pd

from spatialpath.export._schema import KEY_COLUMNS, ROW_COLUMNS
from spatialpath.keys import Key
from spatialpath.model import DataModelError

__all__ = ["SEP", "STATUS_PREFIX", "long_from_wide", "sanitize_label", "wide_column_map", "wide_table"]

#: separator of the parts of a wide column name.
SEP = "__"
#: prefix of the status column parallel to each value column.
STATUS_PREFIX = "status" + SEP
#: columns of the column map (one row per wide value column).
MAP_COLUMNS = ("column", "status_column", *KEY_COLUMNS, "unit")


def sanitize_label(label: object) -> str:
    """Sanitise one part of a wide column name (stable: depends on the label only).

    Parameters
    ----------
    label
        A compartment, metric or cell-type label (any object; ``str()`` is taken).

    Examples
    --------
    >>> sanitize_label("CD8+ T cell"), sanitize_label("PD-L1"), sanitize_label("Schürch  (2020)")
    ('CD8pos_T_cell', 'PD_L1', 'Schurch_2020')
    """
    text = unicodedata.normalize("NFKD", str(label).replace("+", "pos"))
    text = text.encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_")
    if not text:
        raise DataModelError(
            f"label {label!r} has no letter or digit, so it cannot name a wide column; "
            "rename it (e.g. a cell-type category) to contain letters or digits"
        )
    return text


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def _name(key: Sequence[object]) -> str:
    compartment, metric, cell_type, cell_type_b = key
    parts = [metric, compartment]
    if not _is_missing(cell_type):
        parts.append(cell_type)
        if not _is_missing(cell_type_b):
            parts.append(cell_type_b)
    elif not _is_missing(cell_type_b):
        raise DataModelError(
            f"metric {metric!r} in {compartment!r} has cell_type_b {cell_type_b!r} but no cell_type; "
            "a two-type metric needs both"
        )
    return SEP.join(sanitize_label(p) for p in parts)


def wide_column_map(long: pd.DataFrame, *, reserved: Sequence[str] = ()) -> pd.DataFrame:
    """One row per wide value column: its name, status column, long key and unit.

    Columns are in the order their key first appears in ``long``.

    Parameters
    ----------
    long
        Long table with the key columns (``compartment``, ``metric``, ``cell_type``,
        ``cell_type_b``) and ``unit``.
    reserved
        Names the value and status columns must not take (the per-image columns).

    Raises
    ------
    DataModelError
        If two different keys map to one name (compared case-insensitively), a name equals a
        ``reserved`` (id, QC or metadata) column, or one key carries several units.

    Examples
    --------
    >>> import pandas as pd
    >>> long = pd.DataFrame({"compartment": ["tumour"], "metric": ["density"], "cell_type": ["CD8+ T"],
    ...                      "cell_type_b": [None], "unit": ["cells/mm2"]})  # fmt: skip
    >>> wide_column_map(long)[["column", "status_column"]].iloc[0].tolist()
    ['density__tumour__CD8pos_T', 'status__density__tumour__CD8pos_T']
    """
    keys = long[[*KEY_COLUMNS, "unit"]].astype(object).where(long[[*KEY_COLUMNS, "unit"]].notna(), None)
    units = keys.groupby(list(KEY_COLUMNS), dropna=False, sort=False)["unit"].nunique(dropna=False)
    if (units > 1).any():
        bad = units[units > 1].index[0]
        raise DataModelError(
            f"metric key (compartment, metric, cell_type, cell_type_b) = {bad} has several units; "
            "one wide column holds one unit: fix the metric's unit or split the metric"
        )
    first = keys.drop_duplicates(subset=list(KEY_COLUMNS)).reset_index(drop=True)
    first.insert(0, "column", [_name(k) for k in first[list(KEY_COLUMNS)].itertuples(index=False)])
    first.insert(1, "status_column", STATUS_PREFIX + first["column"])
    _check_collisions(first, reserved)
    return first[list(MAP_COLUMNS)]


def _check_collisions(cmap: pd.DataFrame, reserved: Sequence[str]) -> None:
    folded = cmap["column"].str.lower()
    dup = folded.duplicated(keep=False)
    if dup.any():
        clash = cmap[dup].sort_values("column", key=lambda s: s.str.lower())
        rows = [tuple(r) for r in clash[list(KEY_COLUMNS)].head(2).itertuples(index=False)]
        raise DataModelError(
            f"wide column name collision: long keys {rows[0]} and {rows[1]} (compartment, metric, "
            f"cell_type, cell_type_b) both map to {clash['column'].iloc[0]!r} (names are compared "
            "ignoring case); rename one of the labels so their sanitised names differ"
        )
    names = set(folded) | set(cmap["status_column"].str.lower())
    taken = [c for c in reserved if c.lower() in names]
    if taken:
        raise DataModelError(
            f"wide column name(s) {taken} are also id, QC or metadata columns; rename the metadata "
            "column or the metric labels"
        )


def _check_unique_rows(long: pd.DataFrame, by: Sequence[str]) -> None:
    dup = long.duplicated(subset=list(by), keep=False)
    if dup.any():
        row = long.loc[dup, list(by)].iloc[0].to_dict()
        raise DataModelError(
            f"the long table has {int(dup.sum())} rows sharing one key, e.g. {row}; each (image, "
            "compartment, metric, cell_type, cell_type_b) must occur once: drop duplicated rows"
        )


def _key_tuples(df: pd.DataFrame) -> list[tuple]:
    keys = df[list(KEY_COLUMNS)].astype(object)
    return [tuple(k) for k in keys.where(keys.notna(), None).itertuples(index=False)]


def column_index(long: pd.DataFrame, cmap: pd.DataFrame) -> np.ndarray:
    """Position in ``cmap`` of each long row's wide column."""
    lookup = {k: i for i, k in enumerate(_key_tuples(cmap))}
    missing = [k for k in _key_tuples(long) if k not in lookup]
    if missing:
        raise DataModelError(f"long key {missing[0]} has no column in the column map; rebuild the map")
    return np.array([lookup[k] for k in _key_tuples(long)], dtype=np.int64)


def image_columns(long: pd.DataFrame) -> list[str]:
    """Columns of ``long`` that are constant within an image (ids, QC, metadata)."""
    return [c for c in long.columns if c not in ROW_COLUMNS]


def wide_table(long: pd.DataFrame, *, column_map: pd.DataFrame | None = None) -> pd.DataFrame:
    """Pivot a long biomarker table to one row per image (a lossless pivot).

    Each value column is followed, after all value columns, by its ``status__`` column. A cell
    whose (image, key) has no long row is missing in both the value and the status column; a
    long row with a missing value keeps its status (e.g. ``zero_denominator``), so structural
    zeros (``0.0``, ``ok``) and undefined values (NaN + status) stay distinct.
    :func:`long_from_wide` inverts the pivot.

    Parameters
    ----------
    long
        Long table as made by :func:`~spatialpath.export.biomarker_table`: the
        columns of ``_schema.ROW_COLUMNS`` plus per-image columns (ids, QC, metadata).
    column_map
        Output of :func:`wide_column_map` (computed when None).

    Returns
    -------
    The per-image columns of ``long``, then the value columns, then the status columns.

    Raises
    ------
    DataModelError
        On a name collision (see :func:`wide_column_map`), duplicated long keys, or a per-image
        column that varies within an image.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> long = pd.DataFrame({"image_id": ["a", "a", "b", "b"], "compartment": "tumour", "metric": "density",
    ...                      "cell_type": ["CD8+ T", "B"] * 2, "cell_type_b": None,
    ...                      "value": [120.0, 0.0, np.nan, 35.5], "unit": "cells/mm2",
    ...                      "status": ["ok", "ok", "compartment_absent", "ok"]})
    >>> wide = wide_table(long)
    >>> print(wide.T.to_string())  # one row per image, shown transposed
                                          0                   1
    image_id                              a                   b
    density__tumour__CD8pos_T         120.0                 NaN
    density__tumour__B                  0.0                35.5
    status__density__tumour__CD8pos_T    ok  compartment_absent
    status__density__tumour__B           ok                  ok
    """
    img = Key.obs.image_id
    per_image = image_columns(long)
    cmap = wide_column_map(long, reserved=per_image) if column_map is None else column_map
    _check_unique_rows(long, [img, *KEY_COLUMNS])
    ids = long[per_image].drop_duplicates(subset=[img]).reset_index(drop=True)
    varying = [c for c in per_image if long.groupby(img, sort=False)[c].nunique(dropna=False).max() > 1]
    if varying:
        raise DataModelError(f"per-image column(s) {varying} vary within an image; they must be constant")
    col_idx = column_index(long, cmap)
    row_idx = pd.Index(ids[img]).get_indexer(long[img])
    values = np.full((len(ids), len(cmap)), np.nan)
    values[row_idx, col_idx] = long["value"].to_numpy(dtype=float, na_value=np.nan)
    status = np.full((len(ids), len(cmap)), np.nan, dtype=object)
    status[row_idx, col_idx] = long["status"].to_numpy(dtype=object)
    value_df = pd.DataFrame(values, columns=list(cmap["column"]))
    status_df = pd.DataFrame(status, columns=list(cmap["status_column"]))
    return pd.concat([ids, value_df, status_df], axis=1)


def long_from_wide(
    wide: pd.DataFrame, column_map: pd.DataFrame | None = None, *, id_columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Un-pivot a wide biomarker table back to long rows (the inverse of :func:`wide_table`).

    Every wide cell with a status becomes one long row (value NaN or not); cells with neither
    value nor status had no long row and are dropped.

    Parameters
    ----------
    wide
        Output of :func:`wide_table`.
    column_map
        The column map (:func:`wide_column_map`, or the value rows of the data dictionary):
        restores the original labels. Without it the labels are parsed from the column names
        by the grammar, so they come back sanitised.
    id_columns
        Per-image columns to carry (default: every column that is neither a value nor a status
        column).

    Returns
    -------
    The id columns, then ``compartment, metric, cell_type, cell_type_b, value, unit, status``
    (``unit`` only with a column map), in wide-row then column-map order.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> long = pd.DataFrame({"image_id": ["a", "a", "b", "b"], "compartment": "tumour", "metric": "density",
    ...                      "cell_type": ["CD8+ T", "B"] * 2, "cell_type_b": None,
    ...                      "value": [120.0, 0.0, np.nan, 35.5], "unit": "cells/mm2",
    ...                      "status": ["ok", "ok", "compartment_absent", "ok"]})
    >>> back = long_from_wide(wide_table(long), wide_column_map(long))
    >>> print(back[["image_id", "cell_type", "value", "status"]].to_string())
      image_id cell_type  value              status
    0        a    CD8+ T  120.0                  ok
    1        a         B    0.0                  ok
    2        b    CD8+ T    NaN  compartment_absent
    3        b         B   35.5                  ok
    """
    if column_map is None:
        status_cols = [c for c in wide.columns if str(c).startswith(STATUS_PREFIX)]
        records = []
        for sc in status_cols:
            name = sc[len(STATUS_PREFIX) :]
            parts = name.split(SEP)
            if not 2 <= len(parts) <= 4 or name not in wide.columns:
                raise DataModelError(f"wide column {name!r} does not follow metric__compartment[__type[__b]]")
            metric, compartment, *types = parts
            types += [None] * (2 - len(types))
            records.append((name, sc, compartment, metric, *types))
        column_map = pd.DataFrame(records, columns=list(MAP_COLUMNS[:-1]))
    cmap = column_map
    value_cols = set(cmap["column"]) | set(cmap["status_column"])
    ids = list(id_columns) if id_columns is not None else [c for c in wide.columns if c not in value_cols]
    status = wide[list(cmap["status_column"])].to_numpy(dtype=object)
    present = pd.notna(status)
    rows, cols = np.nonzero(present)
    out = wide[ids].iloc[rows].reset_index(drop=True)
    for k in KEY_COLUMNS:  # missing labels as NaN, like the long table
        labels = cmap[k].to_numpy(dtype=object)
        out[k] = np.where(pd.isna(labels), np.nan, labels)[cols]
    out["value"] = wide[list(cmap["column"])].to_numpy(dtype=float, na_value=np.nan)[rows, cols]
    if "unit" in cmap:
        out["unit"] = cmap["unit"].to_numpy(dtype=object)[cols]
    out["status"] = status[rows, cols]
    return out
