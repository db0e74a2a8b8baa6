"""Read single-cell tables (MCMICRO, steinbock, inForm, plain x/y) into the micrometre data model.

:func:`read_cell_table` checks its arguments, reads the table (:mod:`spatialpath.io._cell_files`),
detects and parses its schema (:mod:`spatialpath.io._cell_schemas`,
:mod:`spatialpath.io._cell_parsers`), converts positions to micrometres and assembles ``obs``
and the per-image metadata. See ``docs/io-cell-tables.md``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from spatialpath.io._cell_files import PIXEL_SIZE_RTOL, TableSource, load_table
from spatialpath.io._cell_parsers import ParsedTable, inform_position_frame, parse_table
from spatialpath.io._cell_schemas import DEFAULT_TECHNOLOGY, ROLES, SCHEMAS, UNIT_NAMES, detect_schema
from spatialpath.io._common import PathLike, ReaderError, cells_to_anndata, require_pixel_size
from spatialpath.keys import Key
from spatialpath.model import TECHNOLOGIES, ImageMetadata

__all__ = ["read_cell_table"]

#: accepted spellings of ``units=`` (lower case) -> "um" or "px".
_UNITS = {**UNIT_NAMES, "µm": "um"}
#: string columns with at most this fraction of distinct values become categoricals.
_CATEGORICAL_MAX_FRACTION = 0.5


def read_cell_table(
    path: PathLike | pd.DataFrame,
    *,
    schema: str = "auto",
    pixel_size_um: float | None = None,
    units: str | None = None,
    image_id: str | None = None,
    columns: Mapping[str, Any] | None = None,
    technology: str | None = None,
) -> ad.AnnData:
    """Read a single-cell table into AnnData with centroids in micrometres.

    Reads MCMICRO/scimap quantification tables, steinbock outputs (a steinbock folder, the
    per-image ``intensities*/`` and ``regionprops*/`` CSVs, ``cells.csv`` or ``cells.h5ad``),
    inForm/Vectra ``cell_seg_data`` tables and plain tables with x/y columns. Positions in
    pixels are multiplied by ``pixel_size_um``; a pixel size is never guessed.

    Parameters
    ----------
    path
        A ``.csv``/``.txt``/``.tsv`` file (optionally ``.gz``; the separator and a decimal comma
        are detected from the first lines), a steinbock ``cells.h5ad`` or folder, or a
        DataFrame already in memory.
    schema
        ``"auto"`` (default), ``"mcmicro"``, ``"steinbock"``, ``"inform"`` or ``"xy"``. Auto
        detection, from the column names:

        - ``inform``: ``Cell X Position`` and ``Cell Y Position``;
        - ``mcmicro``: ``CellID`` and ``X_centroid``, ``Y_centroid`` (or ``X_position``,
          ``Y_position``);
        - ``steinbock``: ``Object`` and ``centroid-0``, ``centroid-1``; folders, ``.h5ad`` files
          and ``.csv`` files inside an ``intensities*``/``regionprops*`` folder are always steinbock;
        - ``xy``: none of the above, and exactly one x and one y column among common names
          (``x``, ``X_um``, ``cell_x``, ``centroid_x``, ``x_position``, ``Location_Center_X``, ...).

        Several matching schemas, or none, raise an error listing the columns found.
    pixel_size_um
        Micrometres per pixel: required when positions are in pixels (MCMICRO, inForm tables in
        pixels, plain tables with ``units="px"``). For steinbock it defaults to the image's
        ``acquisition_width_um / width_px`` in ``images.csv`` (or the h5ad's image columns).
        With positions in µm it is only recorded in the metadata.
    units
        ``"um"`` or ``"px"``: units of the position columns. ``None`` takes them from the file
        (inForm header, a unit in an x/y column name) or the schema (MCMICRO and steinbock
        centroids are pixels). A plain table without stated units needs ``units="um"`` or
        ``pixel_size_um`` (then the positions are pixels). Units that contradict the file raise.
    image_id
        Image identifier for a table of one image without an image column (default: the file
        name; for MCMICRO the part before ``--``).
    columns
        Overrides of the detected columns: any of ``x``, ``y``, ``cell_type``, ``image_id``,
        ``sample_id``, ``patient_id``, ``cell_id``, ``compartment`` mapped to a column name
        (or ``None`` to ignore the detected one), and ``markers``: a list of columns for ``X``.
    technology
        One of :data:`spatialpath.model.TECHNOLOGIES` for the image metadata; default by
        schema: steinbock ``"imc"``, inform ``"vectra"``, others ``"other"``.

    Returns
    -------
    AnnData with one row per cell: ``X`` float32 marker intensities (inForm: compartment mean
    intensities, other statistics in ``layers``), ``obsm["spatial"]`` float64 (x, y) in µm,
    ``obs`` with ``image_id`` (and ``cell_type``, ``sample_id``, ``patient_id``,
    ``compartment``, ``cell_id``, ``area_um2`` when known) plus every other column of the
    table, and one :class:`spatialpath.model.ImageMetadata` per image in
    ``uns["spatialpath"]["images"]``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ReaderError
        If the table matches no schema or several, lacks the columns of ``schema``, or has
        missing or non-numeric positions; the message lists the columns found.
    ValueError
        For an unknown ``schema``, ``units``, ``technology`` or ``columns`` key, and for
        positions in pixels without ``pixel_size_um``.

    Examples
    --------
    >>> import tempfile, pathlib, pandas as pd
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> pd.DataFrame(
    ...     {"CellID": [1, 2], "CD3": [5.0, 0.5], "X_centroid": [10.0, 20.0], "Y_centroid": [4.0, 8.0],
    ...      "Area": [30, 42]}
    ... ).to_csv(folder / "core1--unmicst_cell.csv", index=False)
    >>> adata = read_cell_table(folder / "core1--unmicst_cell.csv", pixel_size_um=0.65)
    >>> adata.obsm["spatial"].tolist()
    [[6.5, 2.6], [13.0, 5.2]]
    >>> adata.var_names.tolist(), adata.obs["image_id"].tolist(), adata.obs["cell_id"].tolist()
    (['CD3'], ['core1', 'core1'], [1, 2])
    >>> pd.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0], "cellType": ["T", "B"]}).to_csv(
    ...     folder / "cells.csv", index=False)
    >>> read_cell_table(folder / "cells.csv", units="um").obs["cell_type"].tolist()
    ['T', 'B']
    """
    schema = _check_choice(schema, ("auto", *SCHEMAS), "schema")
    units = _check_units(units)
    overrides = _check_columns(columns)
    if technology is not None:
        _check_choice(technology, TECHNOLOGIES, "technology")
    if pixel_size_um is not None:
        pixel_size_um = require_pixel_size(pixel_size_um, source="read_cell_table")

    src = load_table(path, schema)
    if len(src.df) == 0:
        raise ReaderError(f"{src.name} has no cells: the table has a header but no rows")
    if schema == "auto":
        xy_given = bool(overrides.get("x")) and bool(overrides.get("y"))
        schema = src.schema or detect_schema(list(src.df.columns), xy_given=xy_given)
    elif src.schema is not None and src.schema != schema:
        raise ReaderError(f"{src.name} is a {src.schema} output, but schema={schema!r} was given")
    parsed = parse_table(schema, src.df, overrides, markers=src.markers)
    if src.var is not None:
        extra_var = src.var.reindex(parsed.var.index)
        for col in extra_var.columns:
            parsed.var[col] = extra_var[col].to_numpy()
    _assign_images(parsed, src, image_id)
    ps_by_image = {k: v["pixel_size_um"] for k, v in src.images.items() if "pixel_size_um" in v}
    factor, ps = _to_um(parsed, units, pixel_size_um, ps_by_image, src.name)
    xy_um = parsed.xy * (factor if np.ndim(factor) == 0 else factor[:, None])
    _check_positions(xy_um, parsed, src.name)
    obs = _finish_obs(parsed, factor)
    images = _image_records(obs, parsed, src, ps, xy_um, technology or DEFAULT_TECHNOLOGY[schema])
    adata = cells_to_anndata(
        xy_um, X=parsed.X, var_names=list(parsed.var.index), obs=obs, images=images, source=src.name
    )
    for col in parsed.var.columns:
        adata.var[col] = parsed.var[col].to_numpy()
    for name, layer in parsed.layers.items():
        adata.layers[name] = layer
    return adata


# --- argument checks ----------------------------------------------------------------------------


def _check_choice(value: Any, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(allowed)}")
    return value


def _check_units(units: str | None) -> str | None:
    if units is None:
        return None
    if str(units).lower() not in _UNITS:
        raise ValueError(
            f"unknown units {units!r}; use 'um' (micrometres) or 'px' (pixels, with pixel_size_um)"
        )
    return _UNITS[str(units).lower()]


def _check_columns(columns: Mapping[str, Any] | None) -> dict[str, Any]:
    columns = dict(columns or {})
    unknown = [k for k in columns if k not in ROLES]
    if unknown:
        raise ValueError(f"unknown columns= keys {unknown}; allowed: {', '.join(ROLES)}")
    if "markers" in columns and (isinstance(columns["markers"], str) or columns["markers"] is None):
        raise ValueError("columns={'markers': ...} must be a list of column names")
    bad = {k: v for k, v in columns.items() if k != "markers" and v is not None and not isinstance(v, str)}
    if bad:
        raise ValueError(f"columns= values must be column names (str) or None, got {bad}")
    return columns


# --- units, obs and metadata --------------------------------------------------------------------


def _to_um(
    parsed: ParsedTable,
    units: str | None,
    pixel_size_um: float | None,
    ps_by_image: Mapping[str, float],
    name: str,
) -> tuple[float | np.ndarray, float | dict[str, float] | None]:
    """Factor from the file's units to µm (scalar or per cell) and the pixel size to record."""
    if units is not None and parsed.units_stated and units != parsed.units:
        raise ReaderError(f"units={units!r}, but {parsed.units_evidence}")
    resolved = units or parsed.units
    if resolved is None:
        if pixel_size_um is None:
            raise ValueError(
                f"{name}: {parsed.units_evidence}, so micrometres cannot be told from pixels. Pass "
                "units='um' if the positions are micrometres, or pixel_size_um=<micrometres per pixel> "
                "if they are pixels. spatialpath never guesses."
            )
        resolved = "px"
    parsed.extra["units_in_file"] = resolved
    parsed.extra["units_evidence"] = parsed.units_evidence if units is None else f"units={units!r} given"
    if resolved == "um":
        return 1.0, pixel_size_um
    if pixel_size_um is not None:
        for img, ps in ps_by_image.items():
            if not np.isclose(ps, pixel_size_um, rtol=PIXEL_SIZE_RTOL):
                warnings.warn(
                    f"pixel_size_um={pixel_size_um} differs from the {ps:.4g} µm/px that steinbock's "
                    f"images.csv gives for {img}; using {pixel_size_um}",
                    UserWarning,
                    stacklevel=3,
                )
                break
        return pixel_size_um, pixel_size_um
    images = parsed.obs.get(Key.obs.image_id)
    if ps_by_image and images is not None and images.astype(str).isin(list(ps_by_image)).all():
        factor = images.astype(str).map(ps_by_image).to_numpy(dtype=np.float64)
        return factor, dict(ps_by_image)
    require_pixel_size(None, source=f"{name} ({parsed.units_evidence})")
    raise AssertionError("unreachable")  # pragma: no cover


def _check_positions(xy_um: np.ndarray, parsed: ParsedTable, name: str) -> None:
    bad = ~np.isfinite(xy_um).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        cols = f"{parsed.columns['x']!r}, {parsed.columns['y']!r}"
        raise ReaderError(
            f"{name}: {int(bad.sum())} of {len(bad)} cells have missing or infinite positions in {cols} "
            f"(first rows, 0-based: {rows}). Drop them first, e.g. df = pandas.read_csv(...).dropna("
            f"subset=[{cols}]), then read_cell_table(df, ...)."
        )


def _assign_images(parsed: ParsedTable, src: TableSource, image_id: str | None) -> None:
    """Fill ``obs["image_id"]`` from the image column, ``image_id=`` or the file name."""
    obs = parsed.obs
    if Key.obs.image_id not in obs:
        name = image_id or src.stem
        if name is None:
            raise ValueError("the DataFrame has no image column; pass image_id='<name of the image>'")
        obs.insert(0, Key.obs.image_id, name)
        return
    n_missing = int(obs[Key.obs.image_id].isna().sum())
    if n_missing:
        raise ReaderError(
            f"{src.name}: the image column {parsed.columns['image_id']!r} is empty for {n_missing} cells; "
            "every cell needs an image"
        )
    if image_id is None:
        return
    found = pd.unique(obs[Key.obs.image_id].astype(str))
    if len(found) > 1:
        raise ValueError(
            f"image_id={image_id!r} is for tables of one image, but {src.name} has an image column "
            f"({parsed.columns['image_id']!r}) with {len(found)} images; pass columns={{'image_id': None}} "
            "to ignore that column"
        )
    obs[Key.obs.image_id] = image_id
    for store in (src.images, src.files_by_image, parsed.image_extra):
        if found[0] in store:
            store[image_id] = store.pop(found[0])


def _finish_obs(parsed: ParsedTable, factor: float | np.ndarray) -> pd.DataFrame:
    """Area in µm², categoricals and unique cell names."""
    obs = parsed.obs
    if parsed.area is not None and Key.obs.area_um2 not in obs:
        col, unit = parsed.area
        area = obs[col].to_numpy(dtype=np.float64)
        if unit == "um2":
            obs[Key.obs.area_um2] = area
        elif parsed.extra.get("units_in_file") == "px":
            obs[Key.obs.area_um2] = area * np.square(factor)
    for key in (
        Key.obs.image_id,
        Key.obs.sample_id,
        Key.obs.patient_id,
        Key.obs.cell_type,
        Key.obs.compartment,
    ):
        if key in obs:
            obs[key] = _categorical(obs[key])
    for col in obs.columns:
        if obs[col].dtype == object:
            values = obs[col]
            many = values.nunique() > _CATEGORICAL_MAX_FRACTION * len(values)
            obs[col] = _as_text(values) if many else _categorical(values)
    obs.columns = obs.columns.astype(str)
    obs.index = _obs_names(obs)
    return obs


def _categorical(values: pd.Series) -> pd.Categorical:
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.rename_categories(lambda c: str(c)) if len(values.cat.categories) else values
    return _as_text(values).astype("category")


def _as_text(values: pd.Series) -> pd.Series:
    """Values as strings, missing values kept missing."""
    return values.where(values.isna(), values.astype(str))


def _obs_names(obs: pd.DataFrame) -> pd.Index:
    """Cell ids when unique, else ``<image_id>_<cell id>``, else row numbers."""
    if Key.obs.cell_id in obs:
        ids = obs[Key.obs.cell_id].astype(str)
        if ids.is_unique:
            return pd.Index(ids.to_numpy())
        prefixed = obs[Key.obs.image_id].astype(str) + "_" + ids
        if prefixed.is_unique:
            return pd.Index(prefixed.to_numpy())
    return pd.Index(np.arange(len(obs)).astype(str))


def _image_records(
    obs: pd.DataFrame,
    parsed: ParsedTable,
    src: TableSource,
    ps: float | dict[str, float] | None,
    xy_um: np.ndarray,
    technology: str,
) -> list[ImageMetadata]:
    images = obs[Key.obs.image_id].astype(str)
    single: dict[str, dict[str, str]] = {}
    for key in (Key.obs.patient_id, Key.obs.sample_id):
        if key in obs:
            pairs = pd.DataFrame({"image": images, "v": obs[key].astype(object)}).dropna().drop_duplicates()
            pairs["v"] = pairs["v"].astype(str)
            one = pairs.drop_duplicates("image", keep=False)
            single[key] = dict(zip(one["image"], one["v"], strict=True))
    channels = list(dict.fromkeys(parsed.var["marker"])) if "marker" in parsed.var else list(parsed.var.index)
    common = {**parsed.extra, "schema": parsed.schema, "columns": dict(parsed.columns)}
    records = []
    for img in pd.unique(images.to_numpy()):
        info = src.images.get(img, {})
        extra = {**common, **info.get("extra", {}), **parsed.image_extra.get(img, {})}
        if "pixel_size_source" in info and isinstance(ps, dict):
            extra["pixel_size_source"] = info["pixel_size_source"]
        if parsed.schema == "inform" and "field_centre_um" in extra:
            extra["position_frame"] = inform_position_frame(
                xy_um[images.to_numpy() == img], extra["field_centre_um"]
            )
        files = src.files_by_image.get(img, src.files) + info.get("files", [])
        records.append(
            ImageMetadata(
                image_id=img,
                technology=technology,
                pixel_size_um=ps.get(img) if isinstance(ps, dict) else ps,
                patient_id=single.get(Key.obs.patient_id, {}).get(img),
                sample_id=single.get(Key.obs.sample_id, {}).get(img),
                shape_px=info.get("shape_px"),
                channels=[str(c) for c in channels],
                source_files=list(dict.fromkeys(files)),
                extra=extra,
            )
        )
    return records
