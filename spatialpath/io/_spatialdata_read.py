"""SpatialData → spatialpath: µm images and masks, compartments and cell tables in one coordinate system."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import xarray as xr
from anndata import AnnData

from spatialpath.align._apply import TRANSFORMS_KEY, apply_transform
from spatialpath.align._transform import Transform
from spatialpath.io._spatialdata import (
    SDATA_ATTRS_KEY,
    TABLE_UNS_KEY,
    SpatialPathElements,
    check_coordinate_system,
    grid_matrix,
    grid_of,
    import_spatialdata,
    xy_matrix,
)
from spatialpath.keys import Key
from spatialpath.model import DataModelError, make_image, make_labels

__all__ = ["from_spatialdata"]

_IDENTITY_ATOL = 1e-12


def from_spatialdata(sdata: Any, *, coordinate_system: str = "global") -> SpatialPathElements:
    """Read the elements of a SpatialData object (or a ``.zarr`` path) that live in one µm coordinate system.

    Needs the ``spatialdata`` extra (spatialdata 0.7). The coordinate system must be in micrometres (as
    written by :func:`~spatialpath.io.to_spatialdata`, or spatialdata-io's Xenium/MERSCOPE ``global``).
    Pixels are never resampled and ``sdata`` is not modified.

    Parameters
    ----------
    sdata
        A :class:`spatialdata.SpatialData`, or the path of a SpatialData ``.zarr`` store.
    coordinate_system
        The coordinate system to read in; elements without a transformation to it are left out.

    Returns
    -------
    :class:`~spatialpath.io._spatialdata.SpatialPathElements`: images and labels as µm DataArrays (in
    the coordinate system when their transformation is a pixel grid, i.e. scale and shift; else in their own
    frame, with the :class:`~spatialpath.align.Transform` into the coordinate system in ``transforms``);
    shapes as GeoDataFrames mapped into the coordinate system; tables with ``obsm["spatial"]`` taken
    from the circles they annotate, in the coordinate system. Circles that :func:`to_spatialdata` made
    for a table are not repeated in ``shapes``. Points elements are not read.

    Raises
    ------
    ImportError
        If spatialdata is not installed.
    DataModelError
        If ``coordinate_system`` is not one of ``sdata``'s, or an image is 3-D.

    Examples
    --------
    >>> import numpy as np
    >>> from spatialpath.io import to_spatialdata
    >>> from spatialpath.model import make_image
    >>> img = make_image(np.ones((1, 2, 3)), channels=["DAPI"], pixel_size_um=0.5, origin_um=(10, 0))
    >>> back = from_spatialdata(to_spatialdata(images={"dapi": img}))
    >>> back.images["dapi"].x.values.tolist()
    [10.0, 10.5, 11.0]
    """
    sd = import_spatialdata()
    from spatialdata.transformations import get_transformation

    if isinstance(sdata, str | os.PathLike):
        sdata = sd.read_zarr(sdata)
    if not isinstance(sdata, sd.SpatialData):
        raise DataModelError(
            f"sdata must be a spatialdata.SpatialData or a .zarr path, got {type(sdata).__name__}"
        )
    cs = check_coordinate_system(coordinate_system)
    systems = list(sdata.coordinate_systems)
    if cs not in systems:
        raise DataModelError(
            f"coordinate system {cs!r} is not in this SpatialData object, which has {systems}; "
            "pass coordinate_system= one of them"
        )
    record = dict(sdata.attrs.get(SDATA_ATTRS_KEY) or {})
    recorded_attrs = {n: dict(e.get("attrs") or {}) for n, e in (record.get("elements") or {}).items()}
    out = SpatialPathElements(coordinate_system=cs)
    for kind in ("images", "labels"):
        for name, element in getattr(sdata, kind).items():
            transformations = get_transformation(element, get_all=True)
            if cs not in transformations:
                continue
            arr, t = _raster(name, element, kind, transformations, cs, recorded_attrs.get(name, {}))
            getattr(out, kind)[name] = arr
            if t is not None:
                out.transforms[name] = t
    own_circles = {
        str(table.uns[TABLE_UNS_KEY]["circles"])
        for table in sdata.tables.values()
        if TABLE_UNS_KEY in table.uns
    }
    for name, gdf in sdata.shapes.items():
        transformations = get_transformation(gdf, get_all=True)
        if name in own_circles or cs not in transformations:
            continue
        local = gdf.copy()
        local.attrs = {k: v for k, v in gdf.attrs.items() if k != "transform"}
        t = _vector_transform(name, transformations, cs)
        out.shapes[name] = local if t is None else apply_transform(local, t)
    for name, table in sdata.tables.items():
        out.tables[name] = _table(sdata, table, cs)
    return out


def _element_array(element: Any) -> xr.DataArray:
    """The full-resolution DataArray of a (possibly multiscale) raster element."""
    if isinstance(element, xr.DataArray):
        return element
    scale0 = element["scale0"]
    return next(iter(scale0.ds.data_vars.values()))


def _raster(
    name: str, element: Any, kind: str, transformations: dict[str, Any], cs: str, attrs: dict[str, Any]
) -> tuple[xr.DataArray, Transform | None]:
    arr = _element_array(element)
    dims = Key.image_dims if kind == "images" else Key.labels_dims
    if tuple(arr.dims) != dims:
        raise DataModelError(
            f"{kind} element {name!r} has dims {arr.dims}; spatialpath reads 2-D {dims} elements only"
        )
    m = xy_matrix(transformations[cs])
    t = None
    grid = grid_of(m)
    if grid is None:
        # the element's own frame: a grid coordinate system next to cs (to_spatialdata writes one), else
        # a grid of the element's mean pixel size at the origin
        for other, tr in transformations.items():
            g = xy_matrix(tr)
            if other != cs and grid_of(g) is not None:
                grid, t = grid_of(g), Transform(m @ np.linalg.inv(g), other, cs)
                break
        else:
            s = float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))
            grid = (s, (0.0, 0.0))
            t = Transform(m @ np.linalg.inv(grid_matrix(s, (0.0, 0.0))), name, cs)
    ps, origin = grid
    keep = {k: v for k, v in attrs.items() if k not in (Key.attrs.pixel_size_um, Key.attrs.units)}
    if kind == "images":
        out = make_image(
            arr.data, channels=[str(c) for c in arr["c"].values], pixel_size_um=ps, origin_um=origin
        )
    else:
        out = make_labels(arr.data, pixel_size_um=ps, origin_um=origin)
    out.attrs.update(keep)
    return out, t


def _own_frame(name: str, transformations: dict[str, Any], cs: str) -> str:
    """Name of the identity coordinate system of a vector element (its own frame), else its name."""
    for other, tr in transformations.items():
        if other != cs and np.allclose(xy_matrix(tr), np.eye(3), rtol=0, atol=_IDENTITY_ATOL):
            return other
    return name


def _vector_transform(name: str, transformations: dict[str, Any], cs: str) -> Transform | None:
    m = xy_matrix(transformations[cs])
    if np.allclose(m, np.eye(3), rtol=0, atol=_IDENTITY_ATOL):
        return None
    return Transform(m, _own_frame(name, transformations, cs), cs)


def _table(sdata: Any, table: AnnData, cs: str) -> AnnData:
    """A copy without the annotation keys to_spatialdata added, positions from the circles in ``cs``."""
    from shapely import get_coordinates
    from spatialdata.models import TableModel
    from spatialdata.transformations import get_transformation

    out = table.copy()
    attrs = dict(out.uns.get(TableModel.ATTRS_KEY) or {})
    region_key, instance_key = attrs.get(TableModel.REGION_KEY_KEY), attrs.get(TableModel.INSTANCE_KEY)
    regions = attrs.get(TableModel.REGION_KEY) or []
    regions = [regions] if isinstance(regions, str) else list(regions)
    xy, applied = None, []
    for region in regions:
        gdf = sdata.shapes.get(region)
        if gdf is None or not len(gdf) or gdf.geometry.iloc[0].geom_type != "Point":
            continue  # only circles carry positions
        transformations = get_transformation(gdf, get_all=True)
        if cs not in transformations:
            continue
        rows = np.flatnonzero((out.obs[region_key].astype(str) == region).to_numpy())
        ids = out.obs[instance_key].to_numpy()[rows]
        pts = get_coordinates(gdf.geometry.reindex(ids).to_numpy())
        if len(pts) != len(rows):
            raise DataModelError(
                f"table rows of region {region!r} name instances missing from its circles; cannot place them"
            )
        t = _vector_transform(region, transformations, cs)
        if t is not None:
            pts, applied = t.apply_points(pts), [*applied, t]
        if xy is None:
            old = out.obsm.get(Key.obsm.spatial)
            xy = np.asarray(old, float)[:, :2].copy() if old is not None else np.full((out.n_obs, 2), np.nan)
        xy[rows] = pts
    if xy is not None:
        out.obsm[Key.obsm.spatial] = xy
    if applied:
        meta = dict(out.uns.get(Key.uns.spatialpath, {}))
        meta[TRANSFORMS_KEY] = [*list(meta.get(TRANSFORMS_KEY, [])), *(t.to_json() for t in applied)]
        out.uns[Key.uns.spatialpath] = meta
    added = out.uns.pop(TABLE_UNS_KEY, None)
    if added is not None:  # undo what to_spatialdata added
        out.uns.pop(TableModel.ATTRS_KEY, None)
        out.obs = out.obs.drop(columns=[c for c in added.get("added_obs", []) if c in out.obs])
    return out
