"""Compartment polygons from a class mask: exact pixel-edge polygons (union of pixel squares).

Each class becomes one (Multi)Polygon whose edges follow the pixel edges, so its area is exactly
the pixel count × the pixel area (no marching-squares smoothing, which would cut corners and lose
about half a pixel along the whole border). Pixel ``(row, col)`` covers
``[origin + (col - ½)·h, origin + (col + ½)·h] × [origin + (row - ½)·h, origin + (row + ½)·h]``
in µm: its centre is at ``origin + index·h`` as everywhere in spatialpath.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import shapely
import xarray as xr

from spatialpath.keys import Key
from spatialpath.model import DataModelError
from spatialpath.regions._schema import make_regions

__all__ = ["from_mask", "pixel_edge_polygon"]


def pixel_edge_polygon(
    mask: np.ndarray, *, pixel_size_um: float = 1.0, origin_um: tuple[float, float] = (0.0, 0.0)
) -> Any:
    """The union of the pixel squares of a boolean mask, in µm (Polygon, MultiPolygon or empty).

    Row runs of ``True`` pixels become rectangles, united exactly on the integer pixel grid, then
    collinear vertices are removed and the result is scaled to µm.

    Parameters
    ----------
    mask
        ``(rows, cols)`` bool array.
    pixel_size_um
        Pixel edge length in µm.
    origin_um
        ``(x, y)`` in µm of the centre of pixel ``(0, 0)``; its square spans ± half a pixel.

    Examples
    --------
    >>> m = np.ones((4, 4), bool)
    >>> m[1:3, 1:3] = False  # a hole
    >>> g = pixel_edge_polygon(m, pixel_size_um=0.5)
    >>> bool(g.area == m.sum() * 0.25), len(g.interiors), g.bounds
    (True, 1, (-0.25, -0.25, 1.75, 1.75))
    """
    m = np.asarray(mask, bool)
    if m.ndim != 2:
        raise DataModelError(f"a mask must be 2-D (rows, columns), got shape {m.shape}")
    if not m.any():
        return shapely.Polygon()
    diff = np.diff(np.pad(m, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    r0, c0 = np.nonzero(diff == 1)  # run starts, in row-major order
    _, c1 = np.nonzero(diff == -1)  # run ends (exclusive), same order
    boxes = shapely.box(c0, r0, c1, r0 + 1)
    geom = shapely.simplify(shapely.union_all(boxes), 0.0)  # tolerance 0: only collinear points go
    h = float(pixel_size_um)
    ox, oy = origin_um[0] - 0.5 * h, origin_um[1] - 0.5 * h
    return shapely.transform(geom, lambda xy: xy * h + np.array([ox, oy]))


def _names(categories: Sequence[str] | Mapping[int, str] | None) -> dict[int, str]:
    if categories is None:
        return {}
    if isinstance(categories, Mapping):
        return {int(k): str(v) for k, v in categories.items()}
    return {k: str(v) for k, v in enumerate(categories)}


def from_mask(
    mask: Any,
    *,
    pixel_size_um: float | None = None,
    origin_um: tuple[float, float] | None = None,
    categories: Sequence[str] | Mapping[int, str] | None = None,
    image_id: str | None = None,
    background: int | Sequence[int] | None = 0,
):
    """Compartment polygons (µm) from a class mask: one pixel-edge (Multi)Polygon per class.

    Parameters
    ----------
    mask
        Integer class mask ``(rows, columns)``: a numpy array, or a labels DataArray from
        :func:`spatialpath.model.make_labels` (its ``attrs`` and coordinates give the pixel size,
        origin, categories and image id unless passed here).
    pixel_size_um
        Pixel edge length (µm); required for a numpy mask.
    origin_um
        ``(x, y)`` µm of the centre of pixel ``(0, 0)``; default ``(0, 0)``.
    categories
        Class names: ``categories[k]`` (sequence) or ``categories[k]`` (mapping) names value ``k``;
        unnamed values are named by their number.
    image_id
        Adds an ``image_id`` column (for cells of several images).
    background
        Value(s) not turned into a compartment (default 0; None keeps every value). In an inForm
        tissue map 0 is the first tissue category, so pass the value of "Background" instead.

    Returns
    -------
    GeoDataFrame with ``compartment``, ``frame`` and ``geometry`` (+ ``image_id``), rows in
    increasing class value. ``frame`` is the mask's extent (WKT polygon, µm) on every row, used by
    :func:`signed_distance` and :func:`margin_bands` so that the image edge is not taken for a
    tumour border; being a column it survives ``pd.concat`` of the tables of several images.
    ``attrs["spatialpath"]`` records the source, pixel size, origin, mask shape, pixel counts and
    the frame (``frame_um``; ``attrs`` are lost by ``pd.concat``).

    Examples
    --------
    >>> m = np.array([[1, 1, 2], [0, 2, 2]])
    >>> r = from_mask(m, pixel_size_um=2.0, categories={1: "tumour", 2: "stroma"})
    >>> r.compartment.tolist(), r.area.tolist()
    (['tumour', 'stroma'], [8.0, 12.0])
    """
    names = _names(categories)
    if isinstance(mask, xr.DataArray):
        if mask.ndim != 2 or set(mask.dims) != set(Key.labels_dims):
            raise DataModelError(f"a mask DataArray must have dims ('y', 'x'), got {mask.dims}")
        mask = mask.transpose(*Key.labels_dims)
        if pixel_size_um is None:
            pixel_size_um = mask.attrs.get(Key.attrs.pixel_size_um)
        if origin_um is None:
            origin_um = (float(mask["x"][0]), float(mask["y"][0]))
        if not names:
            names = _names(mask.attrs.get(Key.attrs.categories))
        image_id = image_id if image_id is not None else mask.attrs.get(Key.attrs.image_id)
        mask = mask.data
    arr = np.asarray(mask)
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise DataModelError(
            f"mask must be a 2-D integer class mask (rows, columns), got shape {arr.shape} and dtype "
            f"{arr.dtype}; convert with mask.astype(np.int32) if the values are whole numbers"
        )
    if pixel_size_um is None or not np.isfinite(float(pixel_size_um)) or float(pixel_size_um) <= 0:
        raise DataModelError(
            f"from_mask needs pixel_size_um=<µm per pixel> (a positive number), got {pixel_size_um!r}; "
            "spatialpath never guesses a pixel size"
        )
    h = float(pixel_size_um)
    origin = (0.0, 0.0) if origin_um is None else (float(origin_um[0]), float(origin_um[1]))
    skip = set() if background is None else {int(b) for b in np.atleast_1d(background)}
    arr = arr.astype(np.int64) if arr.dtype == bool else arr
    values, counts = np.unique(arr, return_counts=True)
    keep = [(int(v), int(n)) for v, n in zip(values, counts, strict=True) if int(v) not in skip]
    comps = [names.get(v, str(v)) for v, _ in keep]
    geoms = [pixel_edge_polygon(arr == v, pixel_size_um=h, origin_um=origin) for v, _ in keep]
    frame = [origin[0] - h / 2, origin[1] - h / 2, origin[0] + (arr.shape[1] - 0.5) * h]
    frame.append(origin[1] + (arr.shape[0] - 0.5) * h)
    meta = {
        "source": "from_mask",
        "pixel_size_um": h,
        "origin_um": list(origin),
        "shape_px": list(arr.shape),
        "pixel_counts": dict(zip(comps, [n for _, n in keep], strict=True)),
        "frame_um": {str(image_id) if image_id is not None else "": frame},
    }
    return make_regions(comps, geoms, image_id=image_id, meta=meta, frame=frame)
