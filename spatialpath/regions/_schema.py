"""Compartment names, building a regions table, and the metadata it carries in ``attrs``.

A regions table is a :class:`geopandas.GeoDataFrame` with one row per (image, compartment):
``image_id`` (optional for a single image), ``compartment`` and ``geometry`` (Polygon or
MultiPolygon in µm, the cells' frame; see :mod:`spatialpath.regions._membership`). How a table was
made (pixel size, parameters, the image frame) is recorded in ``regions.attrs["spatialpath"]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import geopandas as gpd
import numpy as np
import shapely

from spatialpath.keys import Key

__all__ = [
    "MARGIN",
    "MARGIN_INNER",
    "MARGIN_OUTER",
    "OUTSIDE",
    "STROMA",
    "TISSUE",
    "TUMOUR",
    "TUMOUR_CORE",
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


def make_regions(
    compartments: Sequence[str],
    geometries: Sequence[Any],
    *,
    image_id: str | Sequence[str] | None = None,
    meta: Mapping[str, Any] | None = None,
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
