r"""Excel workbooks that re-read value-identically, within Excel's limits, safe from formula injection.

- **Rows**: a sheet holds at most 1,048,576 rows including the header; a longer table is split
  across sheets ``long``, ``long_2``, ``long_3``... (read back in that order).
- **Columns**: at most 16,384; a wider table is refused (write it as CSV or Parquet).
- **Cells**: text of at most 32,767 characters, without XML control characters; else refused.
- **Sheet names**: at most 31 characters, none of ``[]:*?/\\``.
- **Formula injection**: a text cell starting with ``= + - @``, tab or carriage return (after
  any leading apostrophes) is written with one more leading ``'``, so no spreadsheet evaluates
  it; :func:`unescape_cell` removes exactly that apostrophe when reading.
- **Numbers**: written with every digit of their shortest round-trip form (openpyxl alone keeps
  16 significant digits); ``inf``/``-inf`` as text, NaN and missing values as empty cells.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "EXCEL_MAX_CELL_CHARS",
    "EXCEL_MAX_COLUMNS",
    "EXCEL_MAX_ROWS",
    "check_excel",
    "escape_cell",
    "read_xlsx",
    "sheet_names",
    "unescape_cell",
    "write_xlsx",
]

#: rows per sheet, header included (Excel 2007+).
EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_COLUMNS = 16_384
EXCEL_MAX_CELL_CHARS = 32_767
SHEET_NAME_MAX = 31
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_ILLEGAL = re.compile(r"[\000-\010]|[\013-\014]|[\016-\037]")


def escape_cell(text: str) -> str:
    """Prefix ``'`` to text a spreadsheet could read as a formula (reversible).

    Examples
    --------
    >>> escape_cell("=1+1"), escape_cell("-inf"), escape_cell("CD8 T"), escape_cell("'=x")
    ("'=1+1", "'-inf", 'CD8 T', "''=x")
    """
    return "'" + text if text.lstrip("'").startswith(_FORMULA_START) else text


def unescape_cell(text: str) -> str:
    """Invert :func:`escape_cell`.

    Examples
    --------
    >>> all(unescape_cell(escape_cell(s)) == s for s in ["=a", "'=a", "''@b", "'x", "x", ""])
    True
    """
    if text.startswith("'") and text[1:].lstrip("'").startswith(_FORMULA_START):
        return text[1:]
    return text


def sheet_names(base: str, n_parts: int) -> list[str]:
    """Sheet names for a table split in ``n_parts``: ``base``, ``base_2``... (≤ 31 characters).

    Examples
    --------
    >>> sheet_names("long", 3)
    ['long', 'long_2', 'long_3']
    >>> [len(s) for s in sheet_names("a_very_long_table_name_for_a_sheet_tab", 2)]
    [31, 31]
    """
    clean = re.sub(r"[\[\]:*?/\\]", "_", base).strip("'") or "sheet"
    names = []
    for i in range(1, n_parts + 1):
        suffix = "" if i == 1 else f"_{i}"
        names.append(clean[: SHEET_NAME_MAX - len(suffix)] + suffix)
    return names


def _n_parts(df: pd.DataFrame) -> int:
    per_sheet = EXCEL_MAX_ROWS - 1  # the header takes one row
    return max(1, math.ceil(len(df) / per_sheet))


def check_excel(tables: Mapping[str, pd.DataFrame]) -> None:
    """Refuse what Excel cannot hold (before anything is written).

    Raises
    ------
    ValueError
        For a table wider than 16,384 columns, a text cell over 32,767 characters or with
        control characters.
    """
    for name, df in tables.items():
        if df.shape[1] > EXCEL_MAX_COLUMNS:
            raise ValueError(
                f"table {name!r} has {df.shape[1]} columns; an Excel sheet holds at most "
                f"{EXCEL_MAX_COLUMNS}. Write it without 'xlsx' in formats (CSV and Parquet have no limit)."
            )
        for col in [str(c) for c in df.columns]:
            if len(col) > EXCEL_MAX_CELL_CHARS:
                raise ValueError(f"table {name!r}: a column name exceeds {EXCEL_MAX_CELL_CHARS} characters")
        for c in df.columns:
            if df[c].dtype != object and not isinstance(df[c].dtype, pd.CategoricalDtype):
                continue
            text = df[c].dropna().astype(str)
            too_long = text.str.len() > EXCEL_MAX_CELL_CHARS - 1
            if too_long.any():
                raise ValueError(
                    f"table {name!r}, column {c!r}: a value has {int(text.str.len().max())} characters; "
                    f"an Excel cell holds {EXCEL_MAX_CELL_CHARS}. Shorten it or skip 'xlsx'."
                )
            bad = text.str.contains(_ILLEGAL)
            if bad.any():
                raise ValueError(
                    f"table {name!r}, column {c!r}: value {text[bad].iloc[0]!r} holds control characters "
                    "Excel cannot store; remove them or skip 'xlsx'."
                )


def _column_cells(series: pd.Series, ws: Any) -> list[Any]:
    from openpyxl.cell import WriteOnlyCell

    def number(x: float | int) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None if math.isnan(x) else escape_cell(repr(x))
        exact = float(f"{x:.16g}") == x and abs(x) < 2**53 and not (x == 0 and math.copysign(1, x) < 0)
        if exact:  # openpyxl's own 16-digit format reads back the same number
            return x
        cell = WriteOnlyCell(ws, value=0)  # write every digit: openpyxl keeps only 16
        cell._value = repr(x) if isinstance(x, float) else str(x)
        return cell

    dt = series.dtype
    if isinstance(dt, pd.CategoricalDtype) or dt.kind == "O":
        return [None if pd.isna(v) else escape_cell(str(v)) for v in series.astype(object)]
    if pd.api.types.is_datetime64_any_dtype(dt):
        return [None if pd.isna(v) else v.to_pydatetime() for v in series]
    if dt.kind == "b" or str(dt) == "boolean":
        return [None if pd.isna(v) else bool(v) for v in series.astype(object)]
    if dt.kind in "iu" or str(dt) == "Int64":
        return [None if pd.isna(v) else number(int(v)) for v in series.astype(object)]
    return [number(float(v)) for v in series.to_numpy(dtype=float, na_value=np.nan)]


def write_xlsx(path: str | Path, tables: Mapping[str, pd.DataFrame]) -> dict[str, list[str]]:
    """Write each table to its sheet(s) of a new workbook; return the sheet names per table."""
    from openpyxl import Workbook

    check_excel(tables)
    wb = Workbook(write_only=True)
    sheets: dict[str, list[str]] = {}
    per_sheet = EXCEL_MAX_ROWS - 1
    for name, df in tables.items():
        names = sheet_names(name, _n_parts(df))
        sheets[name] = names
        for part, sheet in enumerate(names):
            ws = wb.create_sheet(sheet)
            chunk = df.iloc[part * per_sheet : (part + 1) * per_sheet]
            ws.append([escape_cell(str(c)) for c in df.columns])
            columns = [_column_cells(chunk[c], ws) for c in chunk.columns]
            for row in zip(*columns, strict=True):
                ws.append(list(row))
    wb.save(path)
    return sheets


def read_xlsx(path: str | Path, names: list[str]) -> dict[str, pd.DataFrame]:
    """Read the tables ``names`` (with their split sheets) as raw object columns, unescaped."""
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True, data_only=True)
    out = {}
    try:
        for name in names:
            parts = [s for s in wb.sheetnames if s == name or re.fullmatch(re.escape(name) + r"_\d+", s)]
            parts.sort(key=lambda s: 1 if s == name else int(s.rsplit("_", 1)[1]))
            if not parts:
                raise ValueError(f"{path} has no sheet {name!r} (sheets: {wb.sheetnames})")
            frames = []
            for sheet in parts:
                rows = list(wb[sheet].iter_rows(values_only=True))
                header = [unescape_cell(str(h)) for h in rows[0]]
                body = [
                    [unescape_cell(v) if isinstance(v, str) else v for v in r]
                    + [None] * (len(header) - len(r))
                    for r in rows[1:]
                ]
                frames.append(pd.DataFrame(body, columns=header, dtype=object))
            out[name] = pd.concat(frames, ignore_index=True)
    finally:
        wb.close()
    return out
