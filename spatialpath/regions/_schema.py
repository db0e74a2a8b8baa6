"""Compartment names, building a regions table, and the metadata it carries in ``attrs``.

A regions table is a :class:`geopandas.GeoDataFrame` with one row per (image, compartment):
``image_id`` (optional for a single image), ``compartment`` and ``geometry`` (Polygon or
MultiPolygon in µm, the cells' frame; see :mod:`spatialpath.regions._membership`), and optionally
``frame``: the image frame (the field of view, WKT polygon in µm) of the row's image. The frame is
kept per row because ``pd.concat`` of per-image tables drops ``attrs``; without it the image edge
would be taken for a tumour border. How a table was made (pixel size, parameters, the image frame)
is also recorded in ``regions.attrs["spatialpath"]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from spatialpath.keys import Key
from spatialpath.model import DataModelError

__all__ = [
    "FRAME",
    "MARGIN",
    "MARGIN_INNER",
    "MARGIN_OUTER",
    "OUTSIDE",
    "STROMA",
    "TISSUE",
    "TUMOUR",
    "TUMOUR_CORE",
    "frame_geometry",
    "frame_wkt",
    "make_regions",
    "region_meta",
]

#: the whole tissue section (e.g. :func:`tissue_from_cells`).
TISSUE: Final = "tissue"
#: tumour (epithelium) compartment.
TUMOUR: Final = "tumour"
#: stroma compartment.
STROMA: Final = "stroma"
#: invasive-margin band inside the tumour border (:func:`margin_bands`).
MARGIN_INNER: Final = "margin_inner"
#: invasive-margin band outside the tumour border.
MARGIN_OUTER: Final = "margin_outer"
#: the whole invasive margin (inner ∪ outer band; the Immunoscore "IM").
MARGIN: Final = "margin"
#: tumour minus the inner margin band (the Immunoscore "CT").
TUMOUR_CORE: Final = "tumour_core"
#: label of cells in no compartment (:func:`assign_cells`).
OUTSIDE: Final = "outside"
#: optional column: the image frame of each row (WKT polygon, µm), kept through ``pd.concat``.
FRAME: Final = "frame"


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (str, shapely.Geometry)):
        return value == "" if isinstance(value, str) else bool(value.is_empty)
    return bool(np.ndim(value) == 0 and pd.isna(value))


def frame_geometry(value: Any) -> Any:
    """An image frame as a polygon: from a polygon, WKT, or box bounds ``(x0, y0, x1, y1)`` µm.

    None (or NaN, an empty string or geometry) gives None.

    Examples
    --------
    >>> frame_geometry((0, 0, 2, 1)).area, frame_geometry("POLYGON ((0 0, 1 0, 1 1, 0 0))").area
    (2.0, 0.5)
    """
    if _missing(value):
        return None
    if isinstance(value, shapely.Geometry):
        geom = value
    elif isinstance(value, str):
        try:
            geom = shapely.from_wkt(value)
        except shapely.errors.GEOSException as err:
            raise DataModelError(f"image frame {value[:80]!r} is not a WKT polygon ({err})") from None
    else:
        bounds = [float(v) for v in np.ravel(value)]
        if len(bounds) != 4:
            raise DataModelError(
                f"an image frame is a polygon or box bounds (x0, y0, x1, y1) µm, got {value!r}"
            )
        geom = shapely.box(*bounds)
    if geom.geom_type not in {"Polygon", "MultiPolygon"} or not geom.area > 0:
        raise DataModelError(f"an image frame must be a polygon of positive area (µm), got {geom.wkt[:80]}")
    return geom


def frame_wkt(value: Any) -> str | None:
    """An image frame (see :func:`frame_geometry`) as full-precision WKT, the ``frame`` column's form."""
    geom = frame_geometry(value)
    return None if geom is None else shapely.to_wkt(geom, rounding_precision=-1)


def make_regions(
    compartments: Sequence[str],
    geometries: Sequence[Any],
    *,
    image_id: str | Sequence[str] | None = None,
    meta: Mapping[str, Any] | None = None,
    frame: Any = None,
) -> gpd.GeoDataFrame:
    """Build a regions table from compartment names and polygons (µm).

    Parameters
    ----------
    compartments, geometries
        One name and one shapely Polygon/MultiPolygon per row.
    image_id
        One id for every row, one per row, or None (single image: no ``image_id`` column).
    meta
        Recorded as ``attrs["spatialpath"]`` (how the regions were made).
    frame
        The image frame of every row (box bounds ``(x0, y0, x1, y1)`` µm, a polygon or WKT): adds
        the :data:`FRAME` column (WKT), which survives ``pd.concat`` of per-image tables. None: no
        column.

    Examples
    --------
    >>> import shapely
    >>> r = make_regions(["tumour"], [shapely.box(0, 0, 10, 10)], image_id="roi1")
    >>> r.columns.tolist(), r.area.tolist()
    (['image_id', 'compartment', 'geometry'], [100.0])
    """
    geoms = np.asarray(list(geometries), dtype=object)
    data: dict[str, Any] = {}
    if image_id is not None:
        ids = [image_id] * len(geoms) if isinstance(image_id, str) else [str(i) for i in image_id]
        data[Key.obs.image_id] = ids
    data[Key.obs.compartment] = [str(c) for c in compartments]
    if frame is not None:
        data[FRAME] = [frame_wkt(frame)] * len(geoms)
    out = gpd.GeoDataFrame(data, geometry=list(geoms) if len(geoms) else gpd.GeoSeries([]))
    out.attrs[Key.uns.spatialpath] = dict(meta or {})
    return out


def region_meta(regions) -> dict[str, Any]:
    """The ``attrs["spatialpath"]`` record of a regions table (empty dict when absent)."""
    return dict(getattr(regions, "attrs", {}).get(Key.uns.spatialpath, {}) or {})


def union_of(regions, compartment: str, image: str | None = None) -> Any:
    """Union of a compartment's rows (of one image when ``image`` is given); empty Polygon if none."""
    rows = regions[regions[Key.obs.compartment].astype(str) == str(compartment)]
    if image is not None and Key.obs.image_id in rows.columns:
        rows = rows[rows[Key.obs.image_id].astype(str) == str(image)]
    if not len(rows):
        return shapely.Polygon()
    return shapely.union_all(np.asarray(rows.geometry))


def image_ids(regions) -> list[str | None]:
    """The images of a regions table (``[None]`` without an ``image_id`` column)."""
    if Key.obs.image_id not in regions.columns:
        return [None]
    return [str(i) for i in dict.fromkeys(regions[Key.obs.image_id].astype(str))]
