"""Checking a regions table against the cells: geometry, empty compartments, and units (pixels vs µm)."""

from __future__ import annotations

import numpy as np
import shapely
from anndata import AnnData

from spatialpath.keys import Key
from spatialpath.model import DataModelError
from spatialpath.regions._membership import check_regions
from spatialpath.regions._schema import image_ids

__all__ = ["validate_regions"]

#: a regions extent this many times larger or smaller than the cells' is a unit error.
EXTENT_RATIO = 1.5
#: at least this fraction of the cells must lie within the regions' bounding box.
MIN_CELLS_IN_BOUNDS = 0.5


def _extent(bounds) -> float:
    x0, y0, x1, y1 = bounds
    return float(max(x1 - x0, y1 - y0))


def validate_regions(
    regions,
    adata: AnnData | None = None,
    *,
    library_key: str = Key.obs.image_id,
    max_ratio: float = EXTENT_RATIO,
) -> None:
    """Refuse a regions table that cannot be right: bad schema, invalid or empty polygons, wrong units.

    Checks, in order: the columns and geometry types (:func:`check_regions`); that every geometry is
    valid and has a positive area (a zero-area compartment is an error: drop the row instead); and,
    with ``adata``, per image, that the regions' extent matches the cells' extent (µm,
    ``obsm["spatial"]``) within a factor ``max_ratio`` (default :data:`EXTENT_RATIO`) and that at
    least half of the cells lie in the regions' bounding box. Polygons exported by QuPath are in
    pixels: an extent a pixel-size factor away from the cells' is reported with the factor and the
    fix.

    Parameters
    ----------
    regions
        A regions GeoDataFrame (``compartment``, ``geometry`` in µm, optionally ``image_id``).
    adata
        The cells the regions belong to, for the extent checks; ``None`` skips them.
    library_key
        Image column of ``adata.obs``, matched to the regions' ``image_id``.
    max_ratio
        Largest accepted ratio between the regions' extent and the cells' extent.

    Raises
    ------
    DataModelError
        Naming the row, the image and the likely cause.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> from anndata import AnnData
    >>> a = AnnData(np.zeros((2, 1)))
    >>> a.obsm["spatial"] = np.array([[10.0, 10.0], [490.0, 390.0]])
    >>> px = gpd.GeoDataFrame({"compartment": ["tumour"]}, geometry=[shapely.box(0, 0, 1000, 800)])
    >>> validate_regions(px, a)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    spatialpath.model._validate.DataModelError: regions extent 1000 is 2.08 x the cells' extent 480 µm...
    """
    check_regions(regions)
    geoms = np.asarray(regions.geometry)
    for i, (comp, g) in enumerate(zip(regions[Key.obs.compartment], geoms, strict=True)):
        if g is None or g.is_empty or g.area <= 0:
            raise DataModelError(
                f"regions row {i} ({comp!r}) has zero area; drop empty compartments "
                "(regions[regions.area > 0]) or check that the mask/annotation was read correctly"
            )
        if not g.is_valid:
            raise DataModelError(
                f"regions row {i} ({comp!r}) is an invalid polygon ({shapely.is_valid_reason(g)}); "
                "repair it with regions.make_valid() or shapely.make_valid"
            )
    if adata is None:
        return
    xy = np.asarray(adata.obsm[Key.obsm.spatial], float)[:, :2]
    has_lib = library_key in adata.obs and Key.obs.image_id in regions.columns
    for image in image_ids(regions):
        sub = regions if image is None else regions[regions[Key.obs.image_id].astype(str) == image]
        cells = xy if not has_lib else xy[adata.obs[library_key].astype(str).to_numpy() == image]
        where = "" if image is None else f" of image {image!r}"
        if len(cells) < 2:
            continue
        reg_bounds = shapely.union_all(np.asarray(sub.geometry)).bounds
        cell_bounds = (*cells.min(0), *cells.max(0))
        ratio = _extent(reg_bounds) / max(_extent(cell_bounds), 1e-12)
        x0, y0, x1, y1 = reg_bounds
        in_x, in_y = (cells[:, 0] >= x0) & (cells[:, 0] <= x1), (cells[:, 1] >= y0) & (cells[:, 1] <= y1)
        inside = np.mean(in_x & in_y)
        if ratio > max_ratio or ratio < 1 / max_ratio or inside < MIN_CELLS_IN_BOUNDS:
            raise DataModelError(
                f"regions extent {_extent(reg_bounds):.4g} is {ratio:.3g} x the cells' extent "
                f"{_extent(cell_bounds):.4g} µm{where}, and {inside:.0%} of the cells lie in the regions' "
                "bounding box: the regions are probably in pixels (QuPath exports pixels) while cells are "
                "in µm. Read them with read_geojson(path, pixel_size_um=<µm per pixel>) (or scale them by "
                "the pixel size); if the cells are in pixels, convert obsm['spatial'] to µm instead"
            )
