"""Apply a :class:`~spatialpath.align.Transform` to points, cells and polygons (images come later)."""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely
import xarray as xr
from anndata import AnnData

from spatialpath.align._transform import Transform
from spatialpath.keys import Key
from spatialpath.model import DataModelError

__all__ = ["apply_transform"]

#: where a transformed AnnData records the transforms applied to it, in order.
TRANSFORMS_KEY = "transforms"


def apply_transform(obj: Any, transform: Transform) -> Any:
    """Map ``obj`` from ``transform.source`` into ``transform.target``; the input is never modified.

    Parameters
    ----------
    obj
        ``(n, 2)`` points (x, y in µm); an AnnData (a copy whose ``obsm["spatial"]`` is mapped, the
        transform appended to ``uns["spatialpath"]["transforms"]``); a shapely geometry; or a
        GeoDataFrame/GeoSeries (polygons of :mod:`spatialpath.regions`); or a µm image / label mask
        ``xarray.DataArray``, which is *resampled* (pull-back through ``T⁻¹``, lazily, by
        :func:`~spatialpath.align.warp_image` with its defaults) while everything else is
        mapped forward by ``T``.
    transform
        The map (affine, or non-rigid with a displacement field: polygon vertices are mapped one by
        one, so densify long edges first when the field bends over their length).

    Examples
    --------
    >>> import shapely
    >>> t = Transform.from_params(scale=2.0, source="he", target="global")
    >>> apply_transform(shapely.box(0, 0, 1, 1), t).area
    4.0
    """
    if not isinstance(transform, Transform):
        raise DataModelError(
            f"transform must be a spatialpath.align.Transform, got {type(transform).__name__}"
        )
    a, b, d, e, xoff, yoff = (
        transform.matrix[0, 0],
        transform.matrix[0, 1],
        transform.matrix[1, 0],
        transform.matrix[1, 1],
        transform.matrix[0, 2],
        transform.matrix[1, 2],
    )
    if isinstance(obj, AnnData):
        out = obj.copy()
        out.obsm[Key.obsm.spatial] = transform.apply_points(np.asarray(obj.obsm[Key.obsm.spatial])[:, :2])
        meta = dict(out.uns.get(Key.uns.spatialpath, {}))
        meta[TRANSFORMS_KEY] = [*list(meta.get(TRANSFORMS_KEY, [])), transform.to_json()]
        out.uns[Key.uns.spatialpath] = meta
        return out
    if isinstance(obj, shapely.Geometry):
        return shapely.transform(obj, transform.apply_points)
    if hasattr(obj, "affine_transform") and hasattr(obj, "geometry"):  # GeoDataFrame / GeoSeries
        out = obj.copy()
        if transform.displacement is None:
            geoms = out.geometry.affine_transform([a, b, d, e, xoff, yoff])
        else:  # non-rigid: every vertex mapped (edges stay straight between vertices)
            geoms = out.geometry.apply(lambda g: shapely.transform(g, transform.apply_points))
        out = out.set_geometry(geoms) if hasattr(out, "set_geometry") else geoms
        out.attrs = {**obj.attrs, TRANSFORMS_KEY: [*obj.attrs.get(TRANSFORMS_KEY, []), transform.to_dict()]}
        return out
    if isinstance(obj, xr.DataArray):  # images and label masks: resampled, not mapped forward
        from spatialpath.align._resample import warp_image  # (that module imports this one)

        return warp_image(obj, transform)
    arr = np.asarray(obj)
    if arr.dtype.kind in "fiu":
        return transform.apply_points(arr)
    raise DataModelError(
        f"cannot apply a transform to {type(obj).__name__}: expected (n, 2) points, an AnnData, a shapely "
        "geometry or a GeoDataFrame"
    )
