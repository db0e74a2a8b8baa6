"""Which cells lie in which compartment polygon, and the compartments' areas.

Regions are a :class:`geopandas.GeoDataFrame` with one row per (image, compartment): columns
``image_id`` (matching the cells' ``obs["image_id"]``; absent for a single image), ``compartment``
(e.g. ``"tissue"``, ``"tumour"``, ``"stroma"``, margin bands) and ``geometry`` (Polygon or
MultiPolygon in µm, the cells' frame). Compartments may overlap (a margin band overlaps tumour and
stroma), so membership is a cells × compartments boolean table, not one label per cell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely
from anndata import AnnData

from spatialpath.keys import Key
from spatialpath.model import DataModelError

__all__ = ["REGION_COLUMNS", "cell_membership", "check_regions", "compartment_areas"]

#: required columns of a regions GeoDataFrame (``image_id`` only when there are several images).
REGION_COLUMNS = (Key.obs.compartment, "geometry")


def check_regions(regions, *, need_image: bool = False) -> None:
    """Refuse a regions table without the required columns or with non-polygon geometries.

    Parameters
    ----------
    regions
        A :class:`geopandas.GeoDataFrame` with ``compartment`` and ``geometry`` (µm).
    need_image
        Also require an ``image_id`` column (several images).

    Raises
    ------
    DataModelError
        Naming the missing columns or the geometry types found.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> reg = gpd.GeoDataFrame({"compartment": ["tumour"]}, geometry=[shapely.box(0, 0, 2, 2)])
    >>> check_regions(reg)
    >>> check_regions(reg, need_image=True)
    Traceback (most recent call last):
    ...
    spatialpath.model._validate.DataModelError: regions lacks column(s) ['image_id'];
    expected ['compartment', 'geometry'] (+ 'image_id')
    """
    if not hasattr(regions, "geometry"):
        raise DataModelError(f"regions must be a geopandas.GeoDataFrame, got {type(regions).__name__}")
    missing = [c for c in REGION_COLUMNS if c not in regions.columns]
    if need_image and Key.obs.image_id not in regions.columns:
        missing.append(Key.obs.image_id)
    if missing:
        raise DataModelError(
            f"regions lacks column(s) {missing}; expected {list(REGION_COLUMNS)} (+ 'image_id')"
        )
    kinds = set(regions.geometry.geom_type.dropna())
    if not kinds <= {"Polygon", "MultiPolygon"}:
        raise DataModelError(f"regions geometries must be Polygon/MultiPolygon in µm, got {sorted(kinds)}")


def _image_rows(adata: AnnData, regions, library_key: str | None):
    if library_key is None or Key.obs.image_id not in regions.columns:
        yield None, np.arange(adata.n_obs), regions
        return
    images = adata.obs[library_key].astype(str).to_numpy()
    for image in pd.unique(images):
        yield image, np.flatnonzero(images == image), regions[regions[Key.obs.image_id].astype(str) == image]


def cell_membership(adata: AnnData, regions, *, library_key: str | None = Key.obs.image_id) -> pd.DataFrame:
    """Cells × compartments boolean table: whether each cell lies in (or on) each compartment.

    Cells are matched to the regions of their own image (``obs[library_key]`` against the regions'
    ``image_id``); with no ``image_id`` column in ``regions`` all cells use all rows.

    Parameters
    ----------
    adata
        Cells with ``obsm["spatial"]`` in µm.
    regions
        A regions GeoDataFrame (``compartment``, ``geometry``, optionally ``image_id``).
    library_key
        Image column of ``adata.obs``; ``None`` (or absent) matches every cell to every row.

    Returns
    -------
    pandas.DataFrame
        Bool, indexed by ``obs_names``, one column per compartment (in order of appearance).

    Examples
    --------
    >>> import geopandas as gpd, numpy as np, shapely
    >>> from anndata import AnnData
    >>> a = AnnData(np.zeros((3, 1)))
    >>> a.obsm["spatial"] = np.array([[1.0, 1.0], [5.0, 5.0], [20.0, 20.0]])
    >>> reg = gpd.GeoDataFrame({"compartment": ["tumour", "tissue"]},
    ...                        geometry=[shapely.box(0, 0, 2, 2), shapely.box(0, 0, 10, 10)])  # fmt: skip
    >>> cell_membership(a, reg, library_key=None).sum().to_dict()
    {'tumour': 1, 'tissue': 2}
    """
    check_regions(regions)
    library_key = library_key if library_key is not None and library_key in adata.obs else None
    xy = np.asarray(adata.obsm[Key.obsm.spatial], float)[:, :2]
    names = list(dict.fromkeys(regions[Key.obs.compartment].astype(str)))
    out = np.zeros((adata.n_obs, len(names)), bool)
    for _, rows, sub in _image_rows(adata, regions, library_key):
        for comp, geoms in sub.groupby(sub[Key.obs.compartment].astype(str), sort=False).geometry:
            geom = shapely.union_all(np.asarray(geoms))
            shapely.prepare(geom)
            x, y = xy[rows, 0], xy[rows, 1]
            out[rows, names.index(comp)] = shapely.contains_xy(geom, x, y) | shapely.intersects_xy(
                geom.boundary, x, y
            )
    return pd.DataFrame(out, index=adata.obs_names, columns=names)


def compartment_areas(regions) -> pd.Series:
    """Area (mm²) of each (image, compartment): overlapping rows of one compartment counted once.

    Parameters
    ----------
    regions
        A regions GeoDataFrame in µm (``compartment``, ``geometry``, optionally ``image_id``).

    Returns
    -------
    pandas.Series
        ``area_mm2`` indexed by ``(image_id, compartment)``, or by ``compartment`` alone when
        ``regions`` has no ``image_id`` column.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> boxes = [shapely.box(0, 0, 1000, 500), shapely.box(500, 0, 1500, 500), shapely.box(0, 0, 2000, 1000)]
    >>> reg = gpd.GeoDataFrame({"compartment": ["tumour", "tumour", "tissue"]}, geometry=boxes)
    >>> compartment_areas(reg).to_dict()  # the two tumour boxes overlap by 0.25 mm²
    {'tumour': 0.75, 'tissue': 2.0}
    """
    check_regions(regions)
    keys = (
        [Key.obs.image_id, Key.obs.compartment]
        if Key.obs.image_id in regions.columns
        else [Key.obs.compartment]
    )
    areas = regions.groupby(keys, sort=False).geometry.apply(
        lambda g: shapely.union_all(np.asarray(g)).area / 1e6
    )
    areas.name = "area_mm2"
    return areas
