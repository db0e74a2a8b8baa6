"""Regions from and to napari Shapes layers, as plain numpy (napari is never imported).

A Shapes layer holds a list of ``(N, 2)`` vertex arrays in **(row, column)** order in data
coordinates; world coordinates are ``data · scale + translate``. spatialpath regions are (x, y) µm,
so a layer drawn over a spatialpath image (whose ``scale`` is the pixel size and ``translate`` the
origin) converts with ``(y, x) = data · scale + translate``. napari shapes have no holes: holes are
exported as extra shapes flagged ``hole=True`` in the properties and subtracted on the way back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely

from spatialpath.keys import Key
from spatialpath.model import DataModelError
from spatialpath.regions._membership import check_regions
from spatialpath.regions._schema import make_regions

__all__ = ["from_napari_shapes", "to_napari_shapes"]

_KINDS = {"polygon", "rectangle", "ellipse"}
#: vertices of an ellipse turned into a polygon.
ELLIPSE_VERTICES = 256


def _as_list(value: Any, n: int, what: str) -> list:
    if isinstance(value, str) or value is None or np.isscalar(value):
        return [value] * n
    out = list(value)
    if len(out) != n:
        raise DataModelError(f"{what} has {len(out)} entries for {n} shapes; pass one per shape or one")
    return out


def _shape(xy: np.ndarray, kind: str) -> Any:
    if kind == "ellipse":  # napari stores the 4 corners of the bounding box
        (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
        t = np.linspace(0, 2 * np.pi, ELLIPSE_VERTICES, endpoint=False)
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        return shapely.Polygon(np.column_stack([cx + rx * np.cos(t), cy + ry * np.sin(t)]))
    return shapely.make_valid(shapely.Polygon(xy))


def from_napari_shapes(
    data: Sequence[np.ndarray],
    shape_type: str | Sequence[str] = "polygon",
    *,
    scale: Sequence[float] = (1.0, 1.0),
    translate: Sequence[float] = (0.0, 0.0),
    names: str | Sequence[str] = "tissue",
    holes: Sequence[bool] | None = None,
    image_id: str | None = None,
):
    """Regions (µm) from the ``data`` of a napari Shapes layer.

    Parameters
    ----------
    data
        ``layer.data``: one ``(N, 2)`` array of (row, column) vertices per shape (for ``(N, D)``
        arrays the last two columns are used).
    shape_type
        ``layer.shape_type``: one for all or one per shape; ``"polygon"``, ``"rectangle"`` or
        ``"ellipse"`` (paths and lines enclose no area and are refused).
    scale, translate
        ``layer.scale`` and ``layer.translate`` (last two entries, (y, x) order): µm per data unit
        and µm offset.
    names
        Compartment of each shape (one for all, or e.g. ``layer.properties["compartment"]``).
    holes
        Shapes to subtract from their compartment (``layer.properties["hole"]``).
    image_id
        Adds an ``image_id`` column.

    Examples
    --------
    >>> square = np.array([[0, 0], [0, 10], [10, 10], [10, 0]])  # (row, col) pixels
    >>> r = from_napari_shapes([square], "rectangle", scale=(0.5, 0.5), translate=(100, 0), names="tumour")
    >>> r.total_bounds.tolist(), r.area.tolist()
    ([0.0, 100.0, 5.0, 105.0], [25.0])
    """
    n = len(data)
    if n == 0:
        raise DataModelError("the Shapes layer has no shapes: draw at least one polygon")
    kinds = [str(k) for k in _as_list(shape_type, n, "shape_type")]
    bad = sorted(set(kinds) - _KINDS)
    if bad:
        raise DataModelError(f"shape types {bad} enclose no area; use polygons, rectangles or ellipses")
    comps = [str(c) for c in _as_list(names, n, "names")]
    is_hole = [bool(h) for h in _as_list(holes if holes is not None else False, n, "holes")]
    sy, sx = (float(v) for v in list(scale)[-2:])
    ty, tx = (float(v) for v in list(translate)[-2:])
    shells: dict[str, list] = {}
    cut: dict[str, list] = {}
    for verts, kind, comp, hole in zip(data, kinds, comps, is_hole, strict=True):
        rc = np.asarray(verts, float)[:, -2:]
        xy = np.column_stack([rc[:, 1] * sx + tx, rc[:, 0] * sy + ty])
        (cut if hole else shells).setdefault(comp, []).append(_shape(xy, kind))
    geoms = [
        shapely.difference(shapely.union_all(g), shapely.union_all(cut.get(c, []))) for c, g in shells.items()
    ]
    meta = {"source": "napari", "scale": [sy, sx], "translate": [ty, tx]}
    return make_regions(list(shells), geoms, image_id=image_id, meta=meta)


def to_napari_shapes(regions, *, image_id: str | None = None) -> dict[str, Any]:
    """What a napari Shapes layer needs to show the regions (µm world coordinates, scale 1).

    Parameters
    ----------
    regions
        A regions GeoDataFrame in µm.
    image_id
        Show only this image's rows (regions with an ``image_id`` column); default all rows.

    Returns
    -------
    dict with ``data`` (list of ``(N, 2)`` (y, x) µm arrays, one per polygon ring), ``shape_type``
    (``"polygon"``), ``properties`` (``compartment`` and ``hole`` per shape), ``scale`` ``(1, 1)``
    and ``translate`` ``(0, 0)``: ``viewer.add_shapes(**to_napari_shapes(regions))``.

    Examples
    --------
    >>> import shapely
    >>> from spatialpath.regions import make_regions
    >>> ring = shapely.box(0, 0, 10, 10).difference(shapely.box(2, 2, 4, 4))
    >>> s = to_napari_shapes(make_regions(["tumour"], [ring]))
    >>> len(s["data"]), s["properties"]["hole"], s["data"][0].shape
    (2, [False, True], (4, 2))
    """
    check_regions(regions)
    if image_id is not None and Key.obs.image_id in regions.columns:
        regions = regions[regions[Key.obs.image_id].astype(str) == str(image_id)]
    data, comps, holes = [], [], []
    for comp, geom in zip(regions[Key.obs.compartment].astype(str), regions.geometry, strict=True):
        for poly in shapely.get_parts(geom):
            for k, ring in enumerate([poly.exterior, *poly.interiors]):
                xy = shapely.get_coordinates(ring)[:-1]  # napari does not repeat the first vertex
                data.append(xy[:, ::-1].copy())
                comps.append(comp)
                holes.append(k > 0)
    return {
        "data": data,
        "shape_type": "polygon",
        "properties": {Key.obs.compartment: comps, "hole": holes},
        "scale": (1.0, 1.0),
        "translate": (0.0, 0.0),
    }
