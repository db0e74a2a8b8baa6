"""Parse a cell table by its schema: positions, marker matrix and per-cell columns.

Each ``_parse_*`` function takes one table (a DataFrame, already read from disk) and returns a
:class:`ParsedTable`: positions in the file's own units, the marker matrix, and the per-cell
columns with the hierarchy columns renamed to the data model's names. The schemas and their
column names are :mod:`spatialpath.io._cell_schemas`; files, units and AnnData are handled by
:mod:`spatialpath.io._cell_table`. See ``docs/io-cell-tables.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from spatialpath.io._cell_schemas import (
    MCMICRO_MORPHOLOGY,
    REQUIRED,
    ROLES,
    find_xy,
    id_columns,
    list_columns,
    position_units,
    steinbock_markers,
)
from spatialpath.io._common import ReaderError
from spatialpath.keys import Key

__all__ = ["ParsedTable", "inform_position_frame", "parse_table"]

#: data-model name of each role column in ``obs``.
_OBS_NAME = {r: getattr(Key.obs, r) for r in ROLES[2:-1]}

#: inForm per-compartment statistics: "<Compartment> <marker> <Statistic>[ (<unit>)]".
_INFORM_STAT = re.compile(
    r"^(?P<comp>Nucleus|Cytoplasm|Membrane|Entire Cell) (?P<marker>.+) "
    r"(?P<stat>Min|Mean|Max|Std Dev|Total)(?: \((?P<unit>[^()]*)\))?$"
)
_INFORM_LAYER = {"Min": "min", "Max": "max", "Std Dev": "std_dev", "Total": "total"}
_INFORM_VERSION = re.compile(r"^inForm ([\d.,]+)$")
_FIELD_CENTRE = re.compile(r"\[(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)\]")
_IMAGE_SUFFIX = re.compile(r"[.,](im3|qptiff|tiff?|svs|ndpi)$", re.IGNORECASE)  # "," in decimal-comma exports
_PERCENT = re.compile(r"^\s*-?\d+(?:[.,]\d+)?\s*%\s*$")


@dataclass
class ParsedTable:
    """One table read by a schema, before units are resolved."""

    schema: str
    xy: np.ndarray
    units: str | None
    units_stated: bool
    units_evidence: str
    obs: pd.DataFrame
    X: np.ndarray
    var: pd.DataFrame
    layers: dict[str, np.ndarray] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)
    area: tuple[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    image_extra: dict[str, dict[str, Any]] = field(default_factory=dict)


def parse_table(
    schema: str, df: pd.DataFrame, overrides: Mapping[str, Any], *, markers: Sequence[str] | None = None
) -> ParsedTable:
    """Parse ``df`` as ``schema`` (one of :data:`SCHEMAS`), applying the ``columns=`` overrides.

    ``markers`` (steinbock files) names the marker columns when the file layout tells them.
    """
    parser = {"mcmicro": _parse_mcmicro, "steinbock": _parse_steinbock, "inform": _parse_inform}
    if schema == "xy":
        return _parse_xy(df, overrides)
    return parser[schema](df, overrides, markers)


# --- shared by every schema ---------------------------------------------------------------------


def _roles(
    df: pd.DataFrame,
    schema: str,
    fixed: Mapping[str, str],
    overrides: Mapping[str, Any],
    detect: Sequence[str],
) -> dict[str, str]:
    """Role -> column: the schema's ``fixed`` ones, then ``detect``-ed common names, then overrides."""
    roles = {role: col for role, col in fixed.items() if col in df.columns}
    taken = set(roles.values()) | {c for r, c in overrides.items() if r != "markers" and c is not None}
    for role in detect:
        if role in roles or role in overrides:
            continue
        hits = [c for c in id_columns(df.columns, role) if c not in taken]
        if len(hits) > 1:
            raise ReaderError(
                f"{schema} table: several columns could be {role!r}: {hits}; choose one with "
                f"columns={{{role!r}: ...}} (or {role!r}: None for none)"
            )
        if hits:
            roles[role] = hits[0]
            taken.add(hits[0])
    for role, col in overrides.items():
        if role == "markers":
            continue
        if col is None:
            roles.pop(role, None)
            continue
        if col not in df.columns:
            raise ReaderError(
                f"columns={{{role!r}: {col!r}}}: no such column. Columns found: {list_columns(df.columns)}"
            )
        roles[role] = col
    for axis in ("x", "y"):
        if axis not in roles:
            raise ReaderError(
                f"{schema} table has no {axis} position column. Columns found: {list_columns(df.columns)}. "
                f"The {schema} schema needs {REQUIRED[schema]}; name them with columns={{'x': ..., 'y': ...}}"
            )
    return roles


def _split(
    schema: str,
    df: pd.DataFrame,
    roles: Mapping[str, str],
    markers: Sequence[str],
    *,
    units: str | None,
    units_stated: bool,
    evidence: str,
    drop: Iterable[str] = (),
) -> ParsedTable:
    """Positions, marker matrix and obs (role columns renamed) from ``df``."""
    markers = list(markers)
    used = {roles["x"], roles["y"], *markers, *drop}
    xy = np.column_stack([_numeric(df[roles[a]], schema, a) for a in ("x", "y")])
    obs = df[[c for c in df.columns if c not in used]].copy()
    rename = {roles[r]: _OBS_NAME[r] for r in _OBS_NAME if r in roles}
    clash = [name for col, name in rename.items() if name in obs.columns and name not in rename]
    if clash:
        raise ReaderError(f"{schema} table already has columns {clash}; rename them before reading")
    obs = obs.rename(columns=rename)
    X = df[markers].to_numpy(dtype=np.float32) if markers else np.zeros((len(df), 0), np.float32)
    var = pd.DataFrame(index=pd.Index([str(m) for m in markers]))
    return ParsedTable(
        schema=schema,
        xy=xy,
        units=units,
        units_stated=units_stated,
        units_evidence=evidence,
        obs=obs,
        X=X,
        var=var,
        columns={r: str(c) for r, c in roles.items()},
    )


def _is_number(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def _numeric(col: pd.Series, schema: str, axis: str) -> np.ndarray:
    if not _is_number(col):
        raise ReaderError(
            f"{schema} table: the {axis} position column {col.name!r} is not numeric (dtype {col.dtype}, "
            f"first values {col.head(3).tolist()}); name the right column with columns={{{axis!r}: ...}}"
        )
    return col.to_numpy(dtype=np.float64)


def _marker_override(
    overrides: Mapping[str, Any], df: pd.DataFrame, default: Sequence[str] | None
) -> list[str] | None:
    """The ``columns={"markers": [...]}`` override, checked, or ``default``."""
    if "markers" not in overrides:
        return None if default is None else list(default)
    markers = overrides["markers"]
    missing = [m for m in markers if m not in df.columns]
    if missing:
        raise ReaderError(
            f"columns={{'markers': ...}}: no such columns {missing}. "
            f"Columns found: {list_columns(df.columns)}"
        )
    return list(markers)


def _numeric_columns(df: pd.DataFrame, exclude: Iterable[str]) -> list[str]:
    ex = set(exclude)
    return [c for c in df.columns if c not in ex and _is_number(df[c])]


# --- MCMICRO / scimap ---------------------------------------------------------------------------


def _parse_mcmicro(
    df: pd.DataFrame, overrides: Mapping[str, Any], markers: Sequence[str] | None
) -> ParsedTable:
    pair = ("X_centroid", "Y_centroid") if "X_centroid" in df.columns else ("X_position", "Y_position")
    fixed = {"cell_id": "CellID", "x": pair[0], "y": pair[1]}
    roles = _roles(df, "mcmicro", fixed, overrides, ("image_id", "sample_id", "patient_id", "cell_type"))
    markers = _marker_override(overrides, df, markers)
    if markers is None:
        markers = _numeric_columns(df, {*roles.values(), *MCMICRO_MORPHOLOGY})
    parsed = _split(
        "mcmicro",
        df,
        roles,
        markers,
        units="px",
        units_stated=False,
        evidence="MCMICRO centroids are in pixels of the registered image",
    )
    if "Area" in parsed.obs.columns:
        parsed.area = ("Area", "px")
    return parsed


# --- steinbock ----------------------------------------------------------------------------------


def _parse_steinbock(
    df: pd.DataFrame, overrides: Mapping[str, Any], markers: Sequence[str] | None
) -> ParsedTable:
    fixed = {"cell_id": "Object", "x": "centroid-1", "y": "centroid-0", "image_id": "Image"}
    roles = _roles(df, "steinbock", fixed, overrides, ())
    markers = _marker_override(overrides, df, markers)
    if markers is None:
        markers = [c for c in steinbock_markers(df.columns) if c not in roles.values()]
        markers = _numeric_columns(df[markers], ())
    parsed = _split(
        "steinbock",
        df,
        roles,
        markers,
        units="px",
        units_stated=False,
        evidence="steinbock regionprops centroids are in pixels (centroid-0 = row, centroid-1 = column)",
    )
    if Key.obs.image_id in parsed.obs:
        parsed.obs[Key.obs.image_id] = (
            parsed.obs[Key.obs.image_id].astype(str).str.replace(r"\.tiff?$", "", regex=True)
        )
    if "area" in parsed.obs.columns:
        parsed.area = ("area", "px")
    return parsed


# --- inForm / Vectra ----------------------------------------------------------------------------


def _inform_units(columns: Sequence[str]) -> tuple[str | None, str]:
    um = [c for c in columns if re.search(r"\((sq )?microns\)|\(µm\)|\(um\)", str(c))]
    px = [c for c in columns if re.search(r"\(pixels\)", str(c))]
    if um and not px:
        return "um", f"inForm header gives lengths in microns (e.g. {um[0]!r})"
    if px and not um:
        return "px", f"inForm header gives lengths in pixels (e.g. {px[0]!r})"
    if um and px:
        return None, f"inForm header mixes microns ({um[0]!r}) and pixels ({px[0]!r})"
    return None, "inForm header states no length unit"


def _percent_to_number(df: pd.DataFrame) -> pd.DataFrame:
    """Turn inForm's "0.17 %" (or "0,17 %") text columns into numbers (in percent)."""
    for c in df.columns:
        values = df[c].dropna()
        if df[c].dtype != object or values.empty or not _PERCENT.match(str(values.iloc[0])):
            continue
        if values.astype(str).str.match(_PERCENT).all():
            df[c] = pd.to_numeric(df[c].str.replace("%", "").str.replace(",", ".").str.strip())
    return df


def _parse_inform(
    df: pd.DataFrame, overrides: Mapping[str, Any], markers: Sequence[str] | None
) -> ParsedTable:
    df = _percent_to_number(df.copy())
    extra: dict[str, Any] = {}
    version_cols = [c for c in df.columns if _INFORM_VERSION.match(str(c))]
    for c in version_cols:
        extra["inform_version"] = _INFORM_VERSION.match(str(c)).group(1).replace(",", ".")
    fixed = {
        "x": "Cell X Position",
        "y": "Cell Y Position",
        "cell_id": "Cell ID",
        "cell_type": "Phenotype",
        "compartment": "Tissue Category",
        "image_id": "Sample Name",
        "sample_id": "Slide ID",
    }
    roles = _roles(df, "inform", fixed, overrides, ())
    units, evidence = _inform_units(df.columns)
    marker_cols = _marker_override(overrides, df, markers)
    layers: dict[str, np.ndarray] = {}
    var = None
    drop: list[str] = list(version_cols)
    if marker_cols is None:
        stats = [(c, m.groupdict()) for c in df.columns if (m := _INFORM_STAT.match(str(c)))]
        means = [(c, g) for c, g in stats if g["stat"] == "Mean"]
        marker_cols = [c for c, _ in means]
        names = [f"{g['comp']} {g['marker']}" for _, g in means]
        var = pd.DataFrame(
            {
                "marker": [g["marker"] for _, g in means],
                "compartment": [g["comp"] for _, g in means],
                "unit": [g["unit"] or "" for _, g in means],
                "source_column": marker_cols,
            },
            index=pd.Index(names),
        )
        for stat, layer in _INFORM_LAYER.items():
            by_name = {f"{g['comp']} {g['marker']}": c for c, g in stats if g["stat"] == stat}
            if names and set(by_name) == set(names):
                layers[layer] = df[[by_name[n] for n in names]].to_numpy(dtype=np.float32)
                drop += list(by_name.values())
    parsed = _split(
        "inform",
        df,
        roles,
        marker_cols,
        units=units,
        units_stated=units is not None,
        evidence=evidence,
        drop=drop,
    )
    if var is not None:
        parsed.var = var
    parsed.layers = layers
    parsed.extra = extra
    if Key.obs.image_id in parsed.obs:
        sample = parsed.obs[Key.obs.image_id].astype(str)
        parsed.obs[Key.obs.image_id] = sample.str.replace(_IMAGE_SUFFIX, "", regex=True)
        for name in parsed.obs[Key.obs.image_id].unique():
            if m := _FIELD_CENTRE.search(name):
                parsed.image_extra[name] = {"field_centre_um": [float(m.group(1)), float(m.group(2))]}
    for area in ("Entire Cell Area (sq microns)", "Entire Cell Area (pixels)"):
        if area in parsed.obs.columns:
            parsed.area = (area, "um2" if "microns" in area else "px")
    return parsed


def inform_position_frame(xy_um: np.ndarray, centre_um: Sequence[float]) -> str:
    """``"slide"`` if positions lie around the field centre given in the sample name, else ``"field"``.

    inForm writes positions relative to the field's top-left corner (older versions) or in
    slide coordinates (newer versions, with the field centre in the sample name).
    """
    centre = np.asarray(centre_um, dtype=float)
    to_centre = np.median(np.abs(xy_um - centre))
    to_zero = np.median(np.abs(xy_um))
    return "slide" if to_centre < to_zero else "field"


# --- plain x/y tables ---------------------------------------------------------------------------


def _parse_xy(df: pd.DataFrame, overrides: Mapping[str, Any]) -> ParsedTable:
    found = find_xy(list(df.columns))
    fixed = {}
    for axis in ("x", "y"):
        if axis not in overrides and len(found[axis]) > 1:
            raise ReaderError(
                f"xy table: several columns could be {axis}: {found[axis]}; choose with "
                f"columns={{{axis!r}: ...}}. Columns found: {list_columns(df.columns)}"
            )
        if found[axis]:
            fixed[axis] = found[axis][0]
    roles = _roles(
        df,
        "xy",
        fixed,
        overrides,
        ("cell_type", "image_id", "sample_id", "patient_id", "cell_id", "compartment"),
    )
    stated = {position_units(roles[a], a) for a in ("x", "y")}
    stated.discard(None)
    if len(stated) > 1:
        raise ReaderError(
            f"xy table: the x and y column names state different units ({roles['x']!r}, {roles['y']!r})"
        )
    units = stated.pop() if stated else None
    evidence = (
        f"the column names {roles['x']!r}, {roles['y']!r} state {units}"
        if units
        else "a plain x/y table does not state its units"
    )
    markers = _marker_override(overrides, df, [])
    return _split("xy", df, roles, markers, units=units, units_stated=units is not None, evidence=evidence)
